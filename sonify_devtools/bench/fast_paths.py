"""The main paths side by side, each way in its own interpreter on the same clip: frames from a video node
through Sonify (the proxy made straight from the frames, the frames returned) against the naive way (the
frames encoded at full resolution, that file uploaded as it is), at several emulator uplinks; and two
remote nodes on one clip, run as ComfyUI runs coroutine nodes, against the same nodes one after another."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sonify import media, pipeline
from sonify.catalog import KLING_V2A, MMAUDIO_V2

from .clips import _pictures
from .jobs import PACK_ROOT, PARAMS, emulated
from .measure import PeakRss
from .plans import SIZES, ClipSpec

WAYS = ("sonify", "naive")


def frames(spec: ClipSpec) -> np.ndarray:
    """The clip as a video node hands it on: float32 [N, H, W, 3] in 0..1 (10 s of 1080p30: 7.5 GB)."""
    width, height = SIZES[spec.size]
    out = np.empty((spec.frames, height, width, 3), np.float32)
    for i, picture in enumerate(_pictures(spec.frames, width, height)):
        np.multiply(picture, np.float32(1 / 255), out=out[i], casting="unsafe")
    return out


def frames_case(config: dict[str, Any]) -> dict[str, Any]:
    """One frames run (config: clip, way, uplink_mbps, model_seconds, work): seconds outside the provider's
    wait, total, bytes uploaded and the memory it took over the frame tensor."""
    spec = ClipSpec(**config["clip"])
    picture = frames(spec)
    work = Path(config["work"])
    with emulated(config["model_seconds"], work / "state") as emulator:
        emulator.uplink_mbps = config["uplink_mbps"]
        with PeakRss() as rss:
            start = time.perf_counter()
            if config["way"] == "sonify":
                result = pipeline.run(MMAUDIO_V2, PARAMS, media.VideoSource(frames=picture, fps=Fraction(spec.fps)),
                                      out_dir=work / "out")
            else:  # what a pack without a frames path does: the whole picture encoded, then uploaded as it is
                full = work / "full-resolution.mp4"
                media.frames_to_mp4(picture, Fraction(spec.fps), full)
                result = pipeline.run(dataclasses.replace(MMAUDIO_V2, proxy=None), PARAMS,
                                      media.VideoSource(path=str(full)), out_dir=work / "out")
            wall = time.perf_counter() - start
    wait = result.info["seconds"].get("wait", 0.0)
    return {"clip": spec.name, "way": config["way"], "uplink_mbps": config["uplink_mbps"],
            "outside_wait_seconds": round(wall - wait, 3), "total_seconds": round(wall, 3),
            "uploaded_bytes": result.info["uploaded_bytes"], "frames_bytes": picture.nbytes,
            "memory_over_frames": round(rss.growth / picture.nbytes, 4)}


def two_nodes_case(config: dict[str, Any]) -> dict[str, Any]:
    """MMAudio (foley) and Kling (music) on one clip (config: clip path, model_seconds, work): one job
    alone, the two as coroutine nodes started together, the two as blocking nodes one after the other."""
    nodes = _load_pack().nodes
    source = nodes.comfy.FileVideo(config["clip"])
    pack_models = sys.modules[f"{_PACK}.sonify.catalog"]
    specs = (pack_models.MODELS[MMAUDIO_V2.key], pack_models.MODELS[KLING_V2A.key])
    inputs = ({"prompt": "footsteps on gravel", "seed": -1}, {"sound_effect_prompt": "footsteps", "bgm_prompt": "calm"})
    with emulated(config["model_seconds"], Path(config["work"]) / "state") as emulator:
        def run(coroutine: bool, count: int) -> tuple[float, list[str]]:
            made = [nodes.video_to_audio.make_video_to_audio_node(spec, coroutine=coroutine)() for spec in specs[:count]]
            start = time.perf_counter()
            if coroutine:
                async def together() -> list[tuple]:
                    return await asyncio.gather(*(n.run(video=source, **i) for n, i in zip(made, inputs)))
                outputs = asyncio.run(together())
            else:
                outputs = [n.run(video=source, **i) for n, i in zip(made, inputs)]
            return time.perf_counter() - start, [_task_id(out["result"][-1]) for out in outputs]  # {ui, result}

        run(True, 1)  # warm: imports, the journal, the emulator's first synthesis
        one, _ = run(True, 1)
        together, tasks = run(True, 2)
        spans = [(emulator.tasks.get(t).submitted, emulator.tasks.get(t).completed_at) for t in tasks]
        overlap = max(0.0, min(b for _, b in spans) - max(a for a, _ in spans)) / max(b - a for a, b in spans)
        in_turn, _ = run(False, 2)
    return {"one_job_seconds": round(one, 3), "together_seconds": round(together, 3),
            "one_after_another_seconds": round(in_turn, 3), "task_overlap": round(overlap, 4)}


_PACK = "bench_fast_paths_pack"


def _load_pack() -> Any:
    """The pack as ComfyUI loads it (by file location, a package named by its folder)."""
    if _PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(_PACK, PACK_ROOT / "__init__.py",
                                                      submodule_search_locations=[str(PACK_ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[_PACK] = module
        spec.loader.exec_module(module)
    return sys.modules[_PACK]


def _task_id(job: str) -> str:
    import json

    return json.loads(job)["task_id"]
