"""Running benchmark jobs against an in-process emulator and reading what happened from both sides:
the job info the client wrote, and the emulator's own record (when each task completed, every poll)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonify import media, pipeline
from sonify.catalog import ModelSpec
from sonify.providers.schedule import FREE_SECONDS, WINDOW

from ..emulator import Emulator
from ..emulator.server import DEFAULT_FAL_KEYS, DEFAULT_KEYS
from .measure import max_polls_per_window

PARAMS = {"prompt": "rain on a tin roof", "seed": -1}  # where a model has them; seed -1: every job is new
STAGES = ("prepare", "encode", "upload", "submit", "wait", "download", "decode", "align", "check", "mux")
PACK_ROOT = Path(__file__).resolve().parents[2]  # the ComfyUI pack: its __init__.py, nodes/, sonify/, sonify_devtools/


def in_child(kind: str, config: dict[str, Any], python: str | None = None) -> dict[str, Any]:
    """One case in a fresh interpreter (its peak memory, its start-up, its in-memory state are its own; `python`:
    another interpreter than this one), with this process's environment; its last stdout line is the record."""
    done = subprocess.run([python or sys.executable, "-m", "sonify_devtools.bench.child", kind, json.dumps(config)],
                          capture_output=True, text=True, env=os.environ | {"PYTHONPATH": python_path()}, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark case {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def python_path() -> str:
    """PYTHONPATH for a child that imports this Sonify."""
    return str(PACK_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")


@contextlib.contextmanager
def emulated(model_seconds: float, state_dir: Path) -> Iterator[Emulator]:
    """A started emulator, with this process's environment pointing both providers at it."""
    with Emulator(model_seconds=model_seconds).start() as emulator:
        os.environ.update(
            WAVESPEED_API_KEY=DEFAULT_KEYS[0], SONIFY_WAVESPEED_URL=emulator.url,
            FAL_KEY=DEFAULT_FAL_KEYS[0], SONIFY_FAL_QUEUE_URL=emulator.url, SONIFY_FAL_REST_URL=emulator.url,
            SONIFY_FAL_API_URL=emulator.url, SONIFY_FAL_CDN_URL=emulator.files_url,
            SONIFY_STATE_DIR=str(state_dir),
        )
        yield emulator


def params_for(spec: ModelSpec) -> dict[str, Any]:
    names = {p.name for p in spec.params}
    return {name: value for name, value in PARAMS.items() if name in names}


@dataclass
class Ran:
    """One pipeline.run as the benchmark saw it: its result, its wall-clock seconds, and when the client
    saw the task's end (time.monotonic(), from the job's "final" event; None if it never waited)."""

    result: pipeline.Result
    wall: float
    final_seen: float | None


def run_job(spec: ModelSpec, clip: Path, out_dir: Path, **kwargs: Any) -> Ran:
    """One pipeline.run on a file source, observed."""
    seen: list[float] = []

    def observe(event: str, info: Any) -> None:
        if event == "final" and not seen:
            seen.append(time.monotonic())

    start = time.perf_counter()
    result = pipeline.run(spec, params_for(spec), media.VideoSource(path=str(clip)), out_dir=out_dir,
                          observe=observe, **kwargs)
    return Ran(result, time.perf_counter() - start, seen[0] if seen else None)


def job_record(ran: Ran, emulator: Emulator) -> dict[str, Any]:
    """Stages, bytes and detection latency of one finished job (detection: when the client saw the final
    status minus when the emulator set it — the same monotonic clock)."""
    info = ran.result.info
    return {
        "task_id": info["task_id"],
        "seconds": {stage: info["seconds"].get(stage, 0.0) for stage in STAGES},
        "wall_seconds": round(ran.wall, 4),
        "uploaded_bytes": info["uploaded_bytes"],
        "proxy": info["proxy"],
        "upload_choice": info.get("upload_choice"),
        "audio_copied": info.get("audio_copied"),
        "detection_seconds": detection(emulator, info["task_id"], ran.final_seen),
    }


def detection(emulator: Emulator, task_id: str, seen: float | None) -> float | None:
    """Seconds from the emulator setting the task's final status to the client seeing it (time.monotonic
    is one clock for every process of the machine)."""
    completed = emulator.task_completed_at(task_id)
    return round(seen - completed, 4) if seen is not None and completed is not None else None


def poll_times(emulator: Emulator, task_id: str, path: str) -> list[float]:
    """Seconds from the task's submit to each request for `path`."""
    task = emulator.tasks.get(task_id)
    return [round(r.at - task.submitted, 3) for r in emulator.requests if r.method == "GET" and r.path == path]


def wavespeed_polls(emulator: Emulator, task_id: str) -> dict[str, Any]:
    times = poll_times(emulator, task_id, f"/api/v3/predictions/{task_id}/result")
    return {"polls": len(times), "max_polls_per_60s_after_10s": max_polls_per_window(times, FREE_SECONDS, WINDOW)}


def uploaded_file(emulator: Emulator, spec: ModelSpec, task_id: str) -> Path:
    """The file the emulator received as the task's video."""
    return emulator.storage.resolve(emulator.tasks.get(task_id).media[spec.video_field])
