#!/usr/bin/env bash
# Set up a virtual environment (first run only) and run the demo: the local emulator and the
# MMAudio pipeline on a generated clip. Prints the path of the MP4 with sound it made.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt numpy av
.venv/bin/python -m sonify demo "$@"
