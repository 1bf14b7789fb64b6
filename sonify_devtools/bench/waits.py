"""Benchmark sections about waiting, run in the benchmark's own process against one emulator:
detection latency on fal (status stream, and polling when the stream fails), on WaveSpeed (polling
on the learned schedule), and on both woken by webhook deliveries; and a batch of jobs at a fixed concurrency."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sonify.catalog import KLING_V2A, MMAUDIO_V2, THINKSOUND_FAL, THINKSOUND_WAVESPEED, ModelSpec
from sonify.cli import webhook_listener
from sonify.pipeline import batch as batch_engine
from sonify.pipeline.job import run_times

from ..emulator import Emulator
from . import clips
from .jobs import detection, in_child, job_record, params_for, poll_times, python_path, run_job, wavespeed_polls

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
        row = job_record(run_job(THINKSOUND_FAL, clip, out), emulator)
        base = _fal_status_path(emulator, row["task_id"])
        row |= {"model_seconds": seconds, "stream_requests": len(poll_times(emulator, row["task_id"], base + "/stream")),
                "status_polls": len(poll_times(emulator, row["task_id"], base))}
        rows.append(row)
    return rows


def _fal_status_path(emulator: Emulator, task_id: str) -> str:
    path = next(r.path for r in emulator.requests if r.path.endswith(f"/requests/{task_id}/status/stream")
                or r.path.endswith(f"/requests/{task_id}/status"))
    return path.removesuffix("/stream")


ATTEMPTS = ("first", "repeat", "new process")


def wavespeed_detection(emulator: Emulator, clip: Path, durations: list[float], out: Path) -> list[dict[str, Any]]:
    """For each model time: a first job (the schedule knows only other times, or none), a repeat (it has
    learned this one) and a job in a new process (which knows it only from the journal). Lanes of
    different models run side by side; each lane's jobs one by one."""
    run_times().clear()
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
        for attempt in ATTEMPTS:
            if attempt == "new process":
                row = in_child("job", {"model": spec.key, "clip": str(clip), "out": str(out)})
                row["detection_seconds"] = detection(emulator, row["task_id"], row.pop("final_seen_monotonic"))
            else:
                row = job_record(run_job(spec, clip, out), emulator)
            rows.append(row | wavespeed_polls(emulator, row["task_id"])
                        | {"model": spec.key, "model_seconds": seconds, "attempt": attempt})
    return rows


def webhook_detection(emulator: Emulator, clip: Path, durations: list[float], work: Path) -> list[dict[str, Any]]:
    """With webhooks (the command line's listener, SONIFY_PUBLIC_URL pointing at it): for each model time, a
    model's first job (a new state folder: nothing learned) on WaveSpeed and on fal with its status stream
    failing — both polling, so what is measured is the wake-up, not the stream."""
    listener = webhook_listener.Listener(("127.0.0.1", 0))
    before = {name: os.environ.get(name) for name in ("SONIFY_PUBLIC_URL", "SONIFY_FAL_JWKS_URL", "SONIFY_STATE_DIR")}
    os.environ.update(SONIFY_PUBLIC_URL=listener.url, SONIFY_FAL_JWKS_URL=f"{emulator.url}/.well-known/jwks.json")
    rows = []
    try:
        for seconds in durations:
            for spec in (MMAUDIO_V2, THINKSOUND_FAL):
                os.environ["SONIFY_STATE_DIR"] = str(work / f"webhook-state-{spec.provider}-{seconds:g}")
                emulator.per_model_seconds[spec.model_id] = seconds
                if spec.provider == "fal":
                    emulator.inject("GET", r"/status/stream$", 500)
                sent = len(emulator.deliveries)
                row = job_record(run_job(spec, clip, work / "webhook-out"), emulator)
                emulator.webhooks.join(5.0)
                rows.append({"provider": spec.provider, "model_seconds": seconds, "task_id": row["task_id"],
                             "detection_seconds": row["detection_seconds"],
                             "deliveries": [d.status for d in emulator.deliveries[sent:]]})
    finally:
        listener.close()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return rows


def batch(emulator: Emulator, clip: Path, work: Path, *, jobs: int, concurrency: int,
          seconds: float) -> dict[str, Any]:
    """`jobs` MMAudio jobs on distinct clips (same picture, other bytes) through the batch command's
    engine (`batch.Batch`) at `concurrency`; first one job alone, for one job's overhead. See _cold."""
    emulator.model_seconds = seconds
    emulator.per_model_seconds.clear()
    sources = [clips.variant(clip, i, work / "batch-clips") for i in range(jobs + 1)]
    out = work / "batch-out"
    with _cold(emulator, work / "batch-solo-state", concurrency):
        solo = run_job(MMAUDIO_V2, sources[-1], out).wall
    params = params_for(MMAUDIO_V2)
    items = batch_engine.plan(MMAUDIO_V2, params, sources[:jobs], out)
    with _cold(emulator, work / "batch-state", concurrency):
        engine = batch_engine.Batch(MMAUDIO_V2, params, items, out, concurrency=concurrency)
        engine.run(lambda: None)
        wall = engine.elapsed()
    ideal = jobs / concurrency * seconds
    bound = 1.3 * ideal + solo - seconds
    done = engine.counts()["done"]
    return {"jobs": jobs, "concurrency": concurrency, "model_seconds": seconds, "wall_seconds": round(wall, 3),
            "done": done, "ideal_seconds": ideal, "one_job_overhead_seconds": round(solo - seconds, 3),
            "bound_seconds": round(bound, 3), "met": wall <= bound and done == jobs}


def batch_command(emulator: Emulator, clip: Path, work: Path, *, jobs: int, concurrency: int) -> dict[str, Any] | None:
    """The same batch through `python -m sonify batch` (a subprocess on this emulator); None when this
    Sonify has no batch command."""
    folder = work / "batch-cli-clips"
    for i in range(jobs):
        clips.variant(clip, 100 + i, folder)
    out = work / "batch-cli-out"
    command = [sys.executable, "-m", "sonify", "batch", MMAUDIO_V2.key, str(folder), "-o", str(out),
               "--concurrency", str(concurrency), *(f"--{k}={v}" for k, v in params_for(MMAUDIO_V2).items())]
    with _cold(emulator, work / "batch-cli-state", concurrency):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": python_path()},
                              check=False)
        wall = time.perf_counter() - start
    if done.returncode == 2 and "invalid choice" in done.stderr:
        return None
    return {"jobs": jobs, "concurrency": concurrency, "exit_code": done.returncode, "wall_seconds": round(wall, 3),
            "error": done.stderr.strip().splitlines()[-1] if done.returncode else None}


@contextlib.contextmanager
def _cold(emulator: Emulator, state: Path, concurrency: int) -> Iterator[None]:
    """A batch as a first-time user runs it: a new state folder (no learned run times, no uploads, no
    results) and nothing learned in this process; the emulator runs at most `concurrency` tasks at once,
    like an account limit."""
    before = os.environ["SONIFY_STATE_DIR"]
    os.environ["SONIFY_STATE_DIR"] = str(state)  # and so run times of its own: remote_job.run_times()
    emulator.concurrency[MMAUDIO_V2.provider] = concurrency
    try:
        yield
    finally:
        emulator.concurrency.pop(MMAUDIO_V2.provider)
        os.environ["SONIFY_STATE_DIR"] = before


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 4) if known else None
