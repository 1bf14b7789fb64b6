"""Benchmark sections about waiting, run in the benchmark's own process against one emulator:
detection latency on fal (status stream, and polling when the stream fails) and on WaveSpeed (polling
on the learned schedule), and a batch of jobs at a fixed concurrency."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..emulator import Emulator
from ..models import KLING_V2A, MMAUDIO_V2, THINKSOUND_FAL, THINKSOUND_WAVESPEED, ModelSpec
from ..providers.schedule import HISTORY
from . import clips
from .jobs import job_record, params_for, poll_times, run_job, wavespeed_polls

WAVESPEED_LANES = (MMAUDIO_V2, THINKSOUND_WAVESPEED, KLING_V2A)  # one model per lane: each learns its own times


def fal_detection(emulator: Emulator, clip: Path, durations: list[float], out: Path, *,
                  stream_fails: bool = False) -> list[dict[str, Any]]:
    """ThinkSound on fal, one job per model time; with `stream_fails` the status stream answers 500
    and the client must fall back to polling."""
    rows = []
    for seconds in durations:
        emulator.per_model_seconds[THINKSOUND_FAL.model_id] = seconds
        if stream_fails:
            emulator.inject("GET", r"/status/stream$", 500)
        result, wall = run_job(THINKSOUND_FAL, clip, out)
        row = job_record(result, emulator, wall)
        base = _fal_status_path(emulator, row["task_id"])
        row |= {"model_seconds": seconds, "stream_requests": len(poll_times(emulator, row["task_id"], base + "/stream")),
                "status_polls": len(poll_times(emulator, row["task_id"], base))}
        rows.append(row)
    return rows


def _fal_status_path(emulator: Emulator, task_id: str) -> str:
    path = next(r.path for r in emulator.requests if r.path.endswith(f"/requests/{task_id}/status/stream")
                or r.path.endswith(f"/requests/{task_id}/status"))
    return path.removesuffix("/stream")


def wavespeed_detection(emulator: Emulator, clip: Path, durations: list[float], out: Path) -> list[dict[str, Any]]:
    """For each model time: a first job (the schedule knows only other times, or none) and a repeat (it
    has learned this one). Lanes of different models run side by side; each lane's jobs one by one."""
    HISTORY.clear()
    lanes: list[list[float]] = [[] for _ in WAVESPEED_LANES]
    for seconds in sorted(durations, reverse=True):  # longest first, each to the least busy lane
        min(lanes, key=sum).append(seconds)
    with ThreadPoolExecutor(len(lanes)) as pool:
        done = pool.map(lambda lane: _lane(emulator, lane[0], lane[1], clip, out), zip(WAVESPEED_LANES, lanes))
        return sorted((row for rows in done for row in rows), key=lambda r: (r["model_seconds"], r["attempt"]))


def _lane(emulator: Emulator, spec: ModelSpec, durations: list[float], clip: Path, out: Path) -> list[dict[str, Any]]:
    rows = []
    for seconds in durations:
        emulator.per_model_seconds[spec.model_id] = seconds
        for attempt in ("first", "repeat"):
            result, wall = run_job(spec, clip, out)
            row = job_record(result, emulator, wall)
            rows.append(row | wavespeed_polls(emulator, row["task_id"])
                        | {"model": spec.key, "model_seconds": seconds, "attempt": attempt})
    return rows


def batch(emulator: Emulator, clip: Path, work: Path, *, jobs: int, concurrency: int,
          seconds: float) -> dict[str, Any]:
    """`jobs` MMAudio jobs on distinct clips (same picture, other bytes) on `concurrency` threads over
    pipeline.run, as the batch command runs them; first one job alone, for one job's overhead. The
    schedule starts cold: the batch learns the model time from its own first jobs."""
    emulator.model_seconds = seconds
    emulator.per_model_seconds.clear()
    sources = [clips.variant(clip, i, work / "batch-clips") for i in range(jobs + 1)]
    _, solo = run_job(MMAUDIO_V2, sources[-1], work / "batch-out")
    HISTORY.clear()
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda source: run_job(MMAUDIO_V2, source, work / "batch-out"), sources[:jobs]))
    wall = time.perf_counter() - start
    ideal = jobs / concurrency * seconds
    return {"jobs": jobs, "concurrency": concurrency, "model_seconds": seconds, "wall_seconds": round(wall, 3),
            "ideal_seconds": ideal, "one_job_overhead_seconds": round(solo - seconds, 3),
            "bound_seconds": round(1.3 * ideal + solo - seconds, 3), "met": wall <= 1.3 * ideal + solo - seconds}


def batch_command(emulator: Emulator, clip: Path, work: Path, *, jobs: int, concurrency: int) -> dict[str, Any] | None:
    """The same batch through `python -m sonify batch` (a subprocess on this emulator); None when this
    Sonify has no batch command."""
    folder = work / "batch-cli-clips"
    for i in range(jobs):
        clips.variant(clip, 100 + i, folder)
    out = work / "batch-cli-out"
    command = [sys.executable, "-m", "sonify", "batch", MMAUDIO_V2.key, str(folder), "-o", str(out),
               "--concurrency", str(concurrency), *(f"--{k}={v}" for k, v in params_for(MMAUDIO_V2).items())]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": _package_root()},
                          check=False)
    wall = time.perf_counter() - start
    if done.returncode == 2 and "invalid choice" in done.stderr:
        return None
    return {"jobs": jobs, "concurrency": concurrency, "exit_code": done.returncode, "wall_seconds": round(wall, 3),
            "error": done.stderr.strip().splitlines()[-1] if done.returncode else None}


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2]) + os.pathsep + os.environ.get("PYTHONPATH", "")


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 4) if known else None
