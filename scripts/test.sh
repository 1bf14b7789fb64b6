#!/usr/bin/env bash
# Set up a virtual environment (first run only) and run the linter and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/ruff check .
# The frontend extension's logic (web/*.js) and the native price badge's JSONata rules under Node's own test runner
# (Node >= 20), against the price catalog as the pack serves it; the reference `jsonata` package from the npm
# registry, as pinned in tests/js/package-lock.json.
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
catalog="$(mktemp)"
trap 'rm -f "$catalog"' EXIT
.venv/bin/python tests/js/print_catalog.py > "$catalog"
SONIFY_PRICES="$catalog" node --test tests/js/
.venv/bin/python -m pytest tests "$@"
