"""A long clip through MMAudio, done in windows: the windows at once within LONG_CLIP_SLOTS provider slots,
against the same windows one after another (one slot). Each way in its own state folder, so nothing is
reused between them; the emulator runs LONG_CLIP_SLOTS WaveSpeed tasks at once, as an account would.

And a long clip's memory against its length: small clips of a few minutes, each run in a fresh process while
the emulator runs in the benchmark's own, so the peak resident memory is the run's alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import av

from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2

from .jobs import emulated, params_for
from .measure import peak_rss_bytes, picture_packets, rss_bytes

LONG_CLIP_SLOTS = 4
LOCAL_STAGES = ("prepare", "encode", "align", "check", "mux")  # the run's own work, before and after the windows' jobs
WAYS = {"parallel": LONG_CLIP_SLOTS, "one after another": 1}


def long_clip_case(config: dict[str, Any]) -> dict[str, Any]:
    clip, work = Path(config["clip"]), Path(config["work"])
    record: dict[str, Any] = {"slots": LONG_CLIP_SLOTS, "model_seconds": config["model_seconds"],
                              "decode_pass_seconds": round(decode_pass(clip), 3)}
    for way, slots in WAYS.items():
        with emulated(config["model_seconds"], work / f"state-{slots}") as emulator:
            emulator.concurrency["wavespeed"] = LONG_CLIP_SLOTS
            submits: list[float] = []
            start = time.perf_counter()
            result = pipeline.run(MMAUDIO_V2, params_for(MMAUDIO_V2), media.VideoSource(path=str(clip)),
                                  out_dir=work / f"out-{slots}", slots=threading.Semaphore(slots),
                                  observe=_submits_into(submits))
            wall = time.perf_counter() - start
        info = result.info
        jobs = [sum(s for stage, s in w["seconds"].items() if stage != "slot") for w in info["windows"]]
        record[way] = {
            "wall_seconds": round(wall, 3), "windows": len(jobs), "slowest_job_seconds": round(max(jobs), 3),
            # the first window cut, uploaded and submitted: its preparation (the windows go as they are cut)
            "first_submit_seconds": round(min(submits) - start, 3) if submits else None,
            "local_seconds": round(sum(info["seconds"].get(stage, 0.0) for stage in LOCAL_STAGES), 3),
            "seconds": info["seconds"], "cost_usd_estimate": info["cost_usd_estimate"],
            "spans": [[w["start"], w["end"]] for w in info["windows"]],
            "picture_copied": picture_packets(clip) == picture_packets(result.video_path),
            "samples_exact": result.audio.shape[1] == round(media.probe(clip).duration * result.sample_rate),
        }
    return record


def _submits_into(times: list[float]) -> Any:
    """A pipeline observer noting when each job was submitted (time.perf_counter)."""

    def observe(event: str, _info: Any) -> None:
        if event == "submitted":
            times.append(time.perf_counter())

    return observe


def decode_pass(clip: Path) -> float:
    """Seconds to decode every frame of the clip once (the decoder's threads, nothing else done): the floor of a
    long clip's local work, which must read it."""
    start = time.perf_counter()
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass
    return time.perf_counter() - start


def memory_case(config: dict[str, Any]) -> dict[str, Any]:
    """One long clip through MMAudio in this process (the emulator is the parent's: its environment points here):
    the peak resident memory, and how far it rose above the memory before the run (the imports done)."""
    clip, work = Path(config["clip"]), Path(config["work"])
    before = rss_bytes()
    start = time.perf_counter()
    result = pipeline.run(MMAUDIO_V2, params_for(MMAUDIO_V2), media.VideoSource(path=str(clip)), out_dir=work / "out",
                          slots=threading.Semaphore(LONG_CLIP_SLOTS))
    wall = time.perf_counter() - start
    peak = peak_rss_bytes()
    return {"minutes": config["minutes"], "windows": len(result.info["windows"]), "wall_seconds": round(wall, 3),
            "rss_before_bytes": before, "peak_rss_bytes": peak, "growth_bytes": peak - before}
