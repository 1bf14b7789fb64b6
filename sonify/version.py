"""Sonify's version, written once: in pyproject.toml, which pip and the Comfy Registry read. A clone (the pack in
ComfyUI's custom_nodes, a checkout run with `python -m sonify`) reads it there; an installed copy, from the
metadata pip wrote."""

from __future__ import annotations

import re
from pathlib import Path

DIST = "sonify"  # pyproject's [project] name


def version() -> str:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        found = project_version(pyproject.read_text(encoding="utf-8"))
        if found is not None:
            return found
    from importlib import metadata  # an installed copy only: a ComfyUI start does not pay for the import

    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "unknown"


def project_version(pyproject: str) -> str | None:
    """The version in the [project] table of this distribution's pyproject.toml text, or None."""
    table = re.search(r"^\[project\][ \t]*$(.*?)(?=^\[|\Z)", pyproject, re.MULTILINE | re.DOTALL)
    if table is None or not re.search(rf'^name\s*=\s*"{DIST}"\s*$', table[1], re.MULTILINE):
        return None
    found = re.search(r'^version\s*=\s*"([^"]+)"\s*$', table[1], re.MULTILINE)
    return found[1] if found else None


VERSION = version()
