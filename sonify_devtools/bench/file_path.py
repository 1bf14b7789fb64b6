"""A file through MMAudio on WaveSpeed as a graph's first job of the model (a new state folder: nothing learned,
nothing reused), mux included, at emulated uplinks: Sonify's run against what no client can go below, the model's
time plus the upload of the file as it is (the naive upload's own stage, measured beside it in the same run). Each
job in a new process against this process's emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sonify.catalog import MMAUDIO_V2

from ..emulator import Emulator
from . import clips, report
from .jobs import STAGES, in_child
from .uplinks import label

MODEL = MMAUDIO_V2
MODEL_SECONDS = 3.0  # the model's time in the default and full plans (the measure)
WAYS = ("naive", "Sonify")  # the file as it is, never a proxy; Sonify's way
SLACK = 0.5  # the target: Sonify's total within the model's time + the upload + this, at loopback


def compare(emulator: Emulator, clip: Path, work: Path, rates: tuple[float | None, ...],
            model_seconds: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    emulator.per_model_seconds[MODEL.model_id] = model_seconds
    try:
        for mbps in rates:
            emulator.uplink_mbps = mbps
            for way in WAYS:
                tag = f"{label(mbps).replace(' ', '').replace('/', '')}-{way}"
                source = clips.variant(clip, 300 + len(rows), work / "file-path-clips")
                row = in_child("job", {"model": MODEL.key, "clip": str(source), "out": str(work / "file-path-out"),
                                       "state": str(work / f"file-path-{tag}"), "naive": way == "naive"})
                completed = emulator.task_completed_at(row["task_id"])
                seen = row.pop("final_seen_monotonic")
                rows.append(row | {"uplink_mbps": mbps, "way": way,
                                   "detection_seconds": None if completed is None or seen is None
                                   else round(seen - completed, 4)})
    finally:
        emulator.uplink_mbps = None
        emulator.per_model_seconds.pop(MODEL.model_id, None)
    return {"model_seconds": model_seconds, "clip": clip.stem.removeprefix("bench-"), "rows": rows}


def render(record: dict[str, Any]) -> list[str]:
    rows = [[label(r["uplink_mbps"]), r["way"], *(r["seconds"].get(s, 0.0) for s in STAGES), r["detection_seconds"],
             r["wall_seconds"], f"{_bound(record, r):.2f}"] for r in record["rows"]]
    return [(f"A file ({record['clip']}) through {MODEL.title} as the model's first job (model "
             f"{record['model_seconds']:g} s), mux included: the naive way (the file as it is) and Sonify's; the bound "
             f"is the model's time + the naive upload + {SLACK:g} s:"),
            report.grid(["uplink", "way", *STAGES, "detect s", "total s", "bound s"], rows)]


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    ours = [r for r in record["rows"] if r["way"] == "Sonify" and r["uplink_mbps"] is None]
    return [{"target": f"{record['clip']} at loopback, model {record['model_seconds']:g} s: total ≤ the model's time + "
                       f"the upload + {SLACK:g} s, mux included",
             "measured": f"{r['wall_seconds']:.2f} s vs {_bound(record, r):.2f} s",
             "met": r["wall_seconds"] <= _bound(record, r)} for r in ours]


def _bound(record: dict[str, Any], row: dict[str, Any]) -> float:
    naive = next(r for r in record["rows"] if r["way"] == "naive" and r["uplink_mbps"] == row["uplink_mbps"])
    return record["model_seconds"] + naive["seconds"].get("upload", 0.0) + SLACK
