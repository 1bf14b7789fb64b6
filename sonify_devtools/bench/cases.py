"""Benchmark cases that each run in a fresh process (see child.py), so that the peak resident memory
reported is the case's own: one clip through MMAudio, and one lipsync job with its frames decoded."""

from __future__ import annotations

import dataclasses
import filecmp
import gc
import math
import os
import tracemalloc
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2, MODELS, SYNC_LIPSYNC, ProxyRule

from .jobs import emulated, job_record, run_job, uploaded_file
from .measure import MB, PeakRss, audio_copied, peak_rss_bytes, picture_packets, timed


def clip_case(config: dict[str, Any]) -> dict[str, Any]:
    """One MMAudio job on a file source: stages, bytes, detection, copies, peak memory; with
    `reference`, the proxy against a full-resolution encode with the same settings."""
    clip, work = Path(config["clip"]), Path(config["work"])
    with emulated(config["model_seconds"], work / "state") as emulator:
        ran = run_job(MMAUDIO_V2, clip, work / "out")
        result, record = ran.result, job_record(ran, emulator)
        record["peak_rss_bytes"] = peak_rss_bytes()
        sent = uploaded_file(emulator, MMAUDIO_V2, record["task_id"])
        record |= {
            "source_bytes": clip.stat().st_size,
            "uploaded_unchanged": filecmp.cmp(sent, clip, shallow=False),
            "frames": _frames_kept(clip, sent),
            "picture_copied": picture_packets(clip) == picture_packets(result.video_path),
            "audio_packets_copied": audio_copied(result.info["result_file"], result.video_path),
        }
    if config.get("reference"):
        record["reference"] = _reference(clip, work)
    return record


def _frames_kept(source: Path, sent: Path) -> dict[str, Any]:
    """Frame counts and durations of the source and of what was uploaded (the proxy, or the source)."""
    a, b = media.probe(source), media.probe(sent)
    return {"source": a.frames, "uploaded": b.frames, "source_seconds": float(a.duration),
            "uploaded_seconds": float(b.duration), "within_one_frame": abs(a.duration - b.duration) <= 1 / b.fps}


def _reference(clip: Path, work: Path) -> dict[str, Any]:
    """The upload proxy, and the same clip encoded at full resolution with the proxy's settings (same
    encoder options, same rate): bytes, seconds and frames of each, made one after the other."""
    info = media.probe(clip)
    (proxy, _), proxy_seconds = timed(media.prepare_upload, clip, MMAUDIO_V2.proxy, work)
    full = work / f"{clip.stem}-full-resolution.mp4"
    rule = ProxyRule(short_side=min(info.width, info.height), max_fps=math.ceil(info.fps))
    _, full_seconds = timed(media._encode_proxy, clip, info, rule, str(full), info.fps, media._H264_PROXY)
    return {"proxy_bytes": Path(proxy).stat().st_size, "proxy_seconds": round(proxy_seconds, 4),
            "proxy_frames": media.probe(proxy).frames,
            "full_bytes": full.stat().st_size, "full_seconds": round(full_seconds, 4)}


def lipsync_case(config: dict[str, Any]) -> dict[str, Any]:
    """A lipsync job, then its frames decoded as the node does: peak memory while decoding against the
    final [N, H, W, 3] float32 array (the peak resident memory, measure.PeakRss, and numpy's allocations via tracemalloc)."""
    clip, work = Path(config["clip"]), Path(config["work"])
    seconds = float(media.probe(clip).duration)
    rate = 48000
    voice = 0.3 * np.sin(2 * np.pi * 220 * np.arange(round(seconds * rate)) / rate, dtype=np.float64)
    with emulated(config["model_seconds"], work / "state") as emulator:
        ran = run_job(SYNC_LIPSYNC, clip, work / "out",
                      audio=pipeline.AudioInput(np.stack([voice, voice]).astype(np.float32), rate))
        result, record = ran.result, job_record(ran, emulator)
    torch = _torch()
    gc.collect()
    tracemalloc.start()
    with PeakRss() as rss:
        frames, fps = media.decode_frames(result.video_path)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = frames.nbytes
    shared = None if torch is None else torch.from_numpy(frames).data_ptr() == frames.ctypes.data
    return record | {
        "frames_shape": list(frames.shape), "fps": str(Fraction(fps)), "tensor_bytes": size,
        "decode_rss_growth_bytes": rss.growth, "decode_rss_ratio": round(rss.growth / size, 3),
        "decode_traced_peak_bytes": traced_peak, "decode_traced_ratio": round(traced_peak / size, 3),
        "torch_shares_memory": shared, "peak_rss_bytes": peak_rss_bytes(),
        "tensor_mb": round(size / MB, 1),
    }


def _torch() -> Any:
    """torch, imported before the measurement (its own import is not the decoder's memory), or None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def job_case(config: dict[str, Any]) -> dict[str, Any]:
    """One job against the parent's emulator (its environment; `state`: another state folder): when this
    process saw the job end, for the parent to set against the emulator's record, and the job's stages and
    upload. `naive`: the file uploaded as it is, never a proxy (the model's rule without one)."""
    if config.get("state"):
        os.environ["SONIFY_STATE_DIR"] = config["state"]
    spec = MODELS[config["model"]]
    ran = run_job(dataclasses.replace(spec, proxy=None) if config.get("naive") else spec, Path(config["clip"]),
                  Path(config["out"]))
    info = ran.result.info
    return {"task_id": info["task_id"], "final_seen_monotonic": ran.final_seen, "wall_seconds": round(ran.wall, 4),
            "seconds": info["seconds"], "uploaded_bytes": info["uploaded_bytes"], "proxy": info["proxy"],
            "upload_choice": info["upload_choice"]}
