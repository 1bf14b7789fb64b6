"""docs/providers.md keeps its promise: every fact row names a public source or says it has none."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "providers.md"
MARKERS = ("**guess**", "**seen**", "**inference**", "no page found")
# A page address (host/path), or one of the SDKs the document names at its top.
SOURCE = re.compile(r"[a-z0-9-]+\.[a-z]{2,}/\S|WS-SDK|FAL-PY|FAL-JS")


def fact_rows() -> list[tuple[int, str]]:
    """(line number, Source cell) of every row of every table whose header has a Source column."""
    rows, source_at = [], None
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("|"):
            source_at = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if source_at is None:
            source_at = cells.index("Source") if "Source" in cells else -1
        elif source_at >= 0 and not set(line) <= set("|-: "):
            rows.append((number, cells[source_at]))
    return rows


def test_every_fact_names_a_source_or_says_it_has_none():
    rows = fact_rows()
    assert len(rows) > 100  # the tables were found
    unsourced = [n for n, cell in rows if not (SOURCE.search(cell) or any(m in cell for m in MARKERS))]
    assert unsourced == [], f"rows without a source or a marker at lines {unsourced}"


def test_readme_links_the_document():
    assert "(docs/providers.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
