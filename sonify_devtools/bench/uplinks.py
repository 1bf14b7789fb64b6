"""Sonify's upload against the naive one (the original file uploaded as it is, never a proxy) at emulated
uplinks. For each rate, in new state folders, two jobs each way on variants of one clip (the same picture,
other files): a first job, which for Sonify races the original against the proxy, and a second, which
decides from what the first measured. Each job runs in a new process against this process's emulator, the
two ways taking turns. The model is ThinkSound on fal: its status stream shows the end at once, so the
totals differ by the upload alone (WaveSpeed's polling would add up to 0.7 s of chance to a first job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sonify.catalog import THINKSOUND_FAL

from ..emulator import Emulator
from . import clips
from .jobs import in_child

MODEL = THINKSOUND_FAL
WAYS = ("naive", "Sonify")
ATTEMPTS = ("first", "learned")
UPLOAD_SIDE = ("prepare", "encode", "upload")  # the stages before the submit


def label(mbps: float | None) -> str:
    return "loopback" if mbps is None else f"{mbps:g} Mbit/s"


def compare(emulator: Emulator, clip: Path, work: Path, rates: tuple[float | None, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for mbps in rates:
        emulator.uplink_mbps = mbps
        for attempt in ATTEMPTS:
            for way in WAYS:
                state = work / f"uplink-{label(mbps).replace(' ', '').replace('/', '')}-{way}"
                source = clips.variant(clip, 200 + len(rows), work / "uplink-clips")
                row = in_child("job", {"model": MODEL.key, "clip": str(source), "out": str(work / "uplink-out"),
                                       "state": str(state), "naive": way == "naive"})
                row.pop("final_seen_monotonic")
                rows.append(row | {"uplink_mbps": mbps, "way": way, "attempt": attempt,
                                   "source_bytes": source.stat().st_size,
                                   "upload_side_seconds": round(sum(row["seconds"].get(s, 0.0) for s in UPLOAD_SIDE), 4)})
    emulator.uplink_mbps = None
    return rows


def pairs(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(naive, Sonify) rows of the same uplink and attempt."""
    found = {(r["uplink_mbps"], r["attempt"], r["way"]): r for r in rows}
    return [(found[(m, a, "naive")], found[(m, a, "Sonify")]) for m, a, w in found if w == "naive"]
