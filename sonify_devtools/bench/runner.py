"""`python -m sonify bench`: the whole benchmark, its plans (quick / default / full), and its output."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import av

from . import fast_paths, file_path, report, saves, uplinks
from .clips import clip
from .jobs import PACK_ROOT, emulated, in_child
from .long_clips import LONG_CLIP_SLOTS
from .plans import MEMORY_FPS, MEMORY_SIZE, PLANS, TWO_NODES_CLIP, ClipSpec, Plan
from .waits import batch, batch_command, fal_detection, wavespeed_detection, webhook_detection


def run(args: argparse.Namespace) -> int:
    """Runs the plan, prints the tables and the verdict on each target; 0 even when a target is missed
    (the numbers are the result)."""
    plan = PLANS[args.plan]
    if args.model_seconds is not None:
        plan = Plan(**(asdict(plan) | {"model_seconds": args.model_seconds}))
    logging.getLogger("sonify").setLevel(logging.WARNING)
    work = args.work or Path(tempfile.mkdtemp(prefix="sonify-bench-"))
    try:
        record = measure(plan, work.resolve(), args.plan, args)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(render(record))
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return 0


def measure(plan: Plan, work: Path, name: str, args: argparse.Namespace | None = None) -> dict[str, Any]:
    clips_dir = work / "clips"
    for old in (p for p in work.glob("*") if p != clips_dir):  # a kept work folder: only its clips are reused
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    record: dict[str, Any] = {"plan": name, "machine": _machine(), "settings": asdict(plan)}
    record["clips"] = [in_child("clip", {"clip": str(clip(spec, clips_dir)), "model_seconds": plan.model_seconds,
                                       "work": str(work / spec.name), "reference": spec.size == "1080p"})
                       | {"name": spec.name} for spec in plan.clips]
    record["lipsync"] = [in_child("lipsync", {"clip": str(clip(spec, clips_dir)), "model_seconds": plan.model_seconds,
                                            "work": str(work / f"lipsync-{spec.name}")}) | {"name": spec.name}
                         for spec in plan.lipsync]
    record |= _waits(plan, work, clip(plan.detection_clip, clips_dir))
    with emulated(plan.model_seconds, work / "uplink-state") as emulator:
        record["uplink_clip"] = plan.uplink_clip.name
        record["uplinks"] = uplinks.compare(emulator, clip(plan.uplink_clip, clips_dir), work, plan.uplinks)
        record["file_path"] = file_path.compare(emulator, clip(plan.uplink_clip, clips_dir), work,
                                                (None,) if name == "quick" else
                                                tuple(r for r in plan.uplinks if r is None or r <= 20),
                                                plan.model_seconds if name == "quick" else file_path.MODEL_SECONDS)
    record["frames"] = [in_child("frames", {"clip": asdict(spec), "way": way, "uplink_mbps": mbps,
                                            "model_seconds": plan.model_seconds, "work": str(work / "frames")})
                        for spec in plan.frames_clips for mbps in plan.uplinks for way in fast_paths.WAYS]
    record["saves"] = saves.measure(name, work, getattr(args, "comfy", None), getattr(args, "comfy_python", None))
    record["two_nodes"] = in_child("two_nodes", {"clip": str(clip(TWO_NODES_CLIP, clips_dir)),
                                                 "model_seconds": plan.two_nodes_seconds, "work": str(work / "two")})
    record["long_clip"] = in_child("long_clip", {"clip": str(clip(plan.long_clip, clips_dir)),
                                                 "model_seconds": plan.model_seconds, "work": str(work / "long")})
    record["long_clip"]["clip"] = plan.long_clip.name
    record["long_clip_memory"] = _long_clip_memory(plan, work)
    record["startup"] = report.summarize_startup([in_child("startup", {"pack": str(PACK_ROOT)})
                                                  for _ in range(plan.startup_runs)])
    record["targets"] = report.targets(record) + file_path.targets(record["file_path"]) + saves.targets(record["saves"])
    return record


def _waits(plan: Plan, work: Path, detection_clip: Path) -> dict[str, Any]:
    out = work / "waits-out"
    with emulated(plan.model_seconds, work / "waits-state") as emulator:
        found = {
            "fal": fal_detection(emulator, detection_clip, list(plan.fal_seconds), out),
            "fal_fallback": fal_detection(emulator, detection_clip, [plan.fal_seconds[0]], out, stream_fails=True),
            "wavespeed": wavespeed_detection(emulator, detection_clip, list(plan.wavespeed_seconds), out),
            "webhooks": webhook_detection(emulator, detection_clip, list(plan.fal_seconds), work),
            "batch": batch(emulator, clip(plan.clips[0], work / "clips"), work, jobs=plan.batch_jobs,
                           concurrency=plan.batch_concurrency, seconds=plan.batch_seconds),
        }
        if plan.batch_command:
            found["batch_command"] = batch_command(emulator, clip(plan.clips[0], work / "clips"), work,
                                                   jobs=plan.batch_jobs, concurrency=plan.batch_concurrency)
    return found


def _long_clip_memory(plan: Plan, work: Path) -> list[dict[str, Any]]:
    """Each length's run in a fresh process; the emulator here, so that its memory is not the run's."""
    records = []
    with emulated(plan.model_seconds, work / "memory-state") as emulator:
        emulator.concurrency["wavespeed"] = LONG_CLIP_SLOTS
        for minutes in plan.memory_minutes:
            spec = ClipSpec(60 * minutes, MEMORY_SIZE, MEMORY_FPS)
            records.append(in_child("long_clip_memory", {"clip": str(clip(spec, work / "clips")), "minutes": minutes,
                                                         "work": str(work / f"memory-{minutes}")}) | {"clip": spec.name})
    return records


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "pyav": av.__version__,
            "ffmpeg": str(getattr(av, "ffmpeg_version_info", "")),
            "platform": platform.platform()}


def render(record: dict[str, Any]) -> str:
    m = record["machine"]
    head = (f"Sonify benchmark ({record['plan']} plan) — emulator on 127.0.0.1, {m['cpus']} CPUs, "
            f"Python {m['python']}, PyAV {m['pyav']}; seconds per stage")
    parts = [head, report.clip_table(record["clips"]),
             "Upload proxy vs the same clip at full resolution (same encoder settings):",
             report.proxy_table(record["clips"]),
             "Detection latency (client saw the end − emulator set it):",
             report.detection_table(record), report.other_table(record),
             (f"The quickest upload: {record['uplink_clip']} through {uplinks.MODEL.title}, Sonify against the naive "
              "upload (the original as it is) at emulated uplinks; each job in a new process, the second deciding "
              "from the first's measurements:"),
             report.uplink_table(record["uplinks"]), report.uplink_summary(record["uplinks"]),
             *file_path.render(record["file_path"]),
             ("Frames from a video node (float32 IMAGE) to MMAudio, Sonify (the proxy made from the frames, the frames "
              "returned) against the naive way (the frames encoded at full resolution, that file uploaded); each run in "
              "a new process:"),
             report.frames_table(record["frames"]),
             *saves.render(record["saves"]),
             "Two remote nodes on one clip (MMAudio and Kling), as coroutines together against one after the other:",
             report.two_nodes_table(record["two_nodes"]),
             (f"A long clip ({record['long_clip']['clip']}) through MMAudio in windows, at once within "
              f"{record['long_clip']['slots']} provider slots against one after another:"),
             report.long_clip_table(record["long_clip"]),
             (f"A long clip's memory against its length ({MEMORY_SIZE} at {MEMORY_FPS} fps through MMAudio in windows; "
              "each run in a new process, the emulator outside it):"),
             report.memory_table(record["long_clip_memory"]),
             "Targets:", report.targets_table(record["targets"])]
    return "\n\n".join(parts)
