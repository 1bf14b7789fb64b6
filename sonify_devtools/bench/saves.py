"""Frames → a model node → Save Video, as a ComfyUI graph runs them: the returned VIDEO's picture encoded by the save
after the node (today's way, and still Sonify's where no node of the graph wants the file), against the picture
encoded during the model's wait (nodes/frames_ahead.py) and only remuxed by the save. Each way in its own
interpreter, on the same frames. Then whether that background encode slows what runs beside it: a CPU stand-in for
a GPU node (torch matrix products) and a second Sonify node's own work, each alone and beside a picture being
encoded in the background.

With `comfy` (a ComfyUI folder, run by an interpreter with its requirements) the host's own VIDEO classes and
encoder are used, as in a real graph; without, the pack's stand-in frames VIDEO and its encoder."""

from __future__ import annotations

import importlib
import statistics
import sys
import time
import types
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from . import report
from .fast_paths import _load_pack, frames
from .jobs import emulated, in_child
from .plans import ClipSpec

WAYS = ("the save encodes", "made during the wait")
NODE_ID = "1"
SLACK = 0.5  # seconds: frames → node → save within the work before the wait + max(wait, the encode) + this
BESIDE_MAX = 1.1  # a neighbour's time beside the background encode over its time alone


@dataclass(frozen=True)
class SavePlan:
    clips: tuple[ClipSpec, ...]  # frames → node → save, each way
    model_seconds: float
    picture: ClipSpec  # the picture encoded in the background while the neighbours run...
    neighbour: ClipSpec  # ...and the second Sonify node's frames
    products: int  # the GPU node's stand-in: this many 768×768 matrix products
    repeats: int  # runs of each neighbour's work, alone and beside the encode (medians)


SAVE_PLANS = {
    "quick": SavePlan((ClipSpec(1, "240p", 24),), 0.2, ClipSpec(2, "240p", 24), ClipSpec(1, "240p", 24), 20, 1),
    "default": SavePlan((ClipSpec(10, "1080p", 30), ClipSpec(5, "wan", 16, extra_frames=1)), 3.0,
                        ClipSpec(10, "1080p", 30), ClipSpec(5, "wan", 16, extra_frames=1), 300, 3),
}
SAVE_PLANS["full"] = SAVE_PLANS["default"]


def measure(plan: str, work: Path, comfy: Path | None, python: str | None) -> dict[str, Any]:
    """Every frames → node → save run (the ways taking turns on each clip), then the neighbours case."""
    chosen = SAVE_PLANS[plan]
    host = {"comfy": str(comfy.resolve())} if comfy is not None else {}
    runs = [in_child("frames_save", {"clip": asdict(spec), "way": way, "model_seconds": chosen.model_seconds,
                                     "work": str(work / "saves")} | host, python)
            for spec in chosen.clips for way in WAYS]
    beside = in_child("neighbours", {"clip": asdict(chosen.picture), "neighbour": asdict(chosen.neighbour),
                                     "products": chosen.products, "repeats": chosen.repeats, "model_seconds": 0.5,
                                     "work": str(work / "neighbours")} | host, python)
    return {"model_seconds": chosen.model_seconds, "runs": runs, "neighbours": beside}


def render(record: dict[str, Any]) -> list[str]:
    runs, beside = record["runs"], record["neighbours"]
    host = runs[0]["host"] if runs else "-"
    rows = [[r["clip"], r["way"], r["before_wait_seconds"], r["stages"].get("wait", 0.0), r["after_wait_seconds"],
             r["node_seconds"], r["background_seconds"], r["save_seconds"], r["total_seconds"]] for r in runs]
    ratios = [[clip, f"{ahead['total_seconds'] / today['total_seconds']:.3f}", today["save_seconds"],
               f"{_bound(today, ahead):.2f}"] for clip, today, ahead in _pairs(runs)]
    return [(f"Frames → MMAudio node → Save Video (model {record['model_seconds']:g} s; {host}): the returned VIDEO's "
             "picture encoded by the save (today's way) against encoded during the wait; each run in a new process:"),
            report.grid(["clip", "way", "before wait s", "wait s", "after wait s", "node s", "background encode s",
                         "save s", "total s"], rows),
            report.grid(["clip", "total: during the wait / by the save", "the picture's encode s",
                         "bound: before wait + max(wait, encode) + 0.5 s"], ratios),
            (f"Beside a picture encoded in the background ({beside['clip']}, {beside['host']}): a CPU stand-in for a GPU "
             f"node (torch matrix products) and a second Sonify node's own work ({beside['neighbour']}, outside its "
             f"wait), medians of {beside['repeats']}:"),
            report.grid(["work", "alone s", "beside the encode s", "ratio", "encode ran throughout"],
                        [[name, beside[f"{key}_alone_seconds"], beside[f"{key}_beside_seconds"],
                          f"{beside[f'{key}_beside_seconds'] / beside[f'{key}_alone_seconds']:.3f}",
                          beside["encode_ran_throughout"]]
                         for key, name in (("gpu", "GPU node stand-in"), ("sonify", "second Sonify node"))])]


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for clip, today, ahead in _pairs(record["runs"]):
        bound = _bound(today, ahead)
        found.append({"target": f"frames → node → save {clip} (model {record['model_seconds']:g} s): total ≤ the work "
                                f"before the wait + max(wait, the picture's encode) + {SLACK:g} s",
                      "measured": f"{ahead['total_seconds']:.2f} s vs {bound:.2f} s (the save encoding: "
                                  f"{today['total_seconds']:.2f} s)",
                      "met": ahead["total_seconds"] <= bound})
    beside = record["neighbours"]
    ratios = {key: beside[f"{key}_beside_seconds"] / beside[f"{key}_alone_seconds"] for key in ("gpu", "sonify")}
    found.append({"target": f"beside the background encode: a GPU node's stand-in and a second Sonify node ≤ "
                            f"{BESIDE_MAX:g}× their time alone",
                  "measured": f"{ratios['gpu']:.3f}× and {ratios['sonify']:.3f}×",
                  "met": all(r <= BESIDE_MAX for r in ratios.values()) and beside["encode_ran_throughout"]})
    return found


def _pairs(runs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(clip, the save encoding, made during the wait) of each clip."""
    found = {(r["clip"], r["way"]): r for r in runs}
    return [(clip, found[(clip, WAYS[0])], found[(clip, WAYS[1])]) for clip, way in found if way == WAYS[0]]


def _bound(today: dict[str, Any], ahead: dict[str, Any]) -> float:
    """The target for the picture made during the wait: its run's work before the wait, then the longer of its
    wait and the picture's encode (the save's seconds when it encodes), then SLACK."""
    return ahead["before_wait_seconds"] + max(ahead["stages"].get("wait", 0.0), today["save_seconds"]) + SLACK


def frames_save_case(config: dict[str, Any]) -> dict[str, Any]:
    """One frames → MMAudio node → save run (config: clip, way, model_seconds, work, comfy): seconds of the node
    (its stages), of the save, and of the picture made in the background."""
    spec = ClipSpec(**config["clip"])
    pack, torch = _host_pack(config.get("comfy")), _torch()
    images = torch.from_numpy(frames(spec))
    wanted = config["way"] == WAYS[1]
    _running_graph({NODE_ID: {"class_type": "SonifyMMAudioV2", "inputs": {}},
                    "2": {"class_type": "SaveVideo" if wanted else "GetVideoComponents",
                          "inputs": {"video": [NODE_ID, 1]}}})
    node = _node(pack)
    work = Path(config["work"])
    with emulated(config["model_seconds"], work / "state"):
        start = time.perf_counter()
        answer = node.run(images=images, fps=float(spec.fps), prompt="rain on a tin roof", seed=-1, unique_id=NODE_ID)
        node_seconds = time.perf_counter() - start
    _, video, job = answer["result"]
    saved = work / f"saved-{spec.name}-{'ahead' if wanted else 'today'}.mp4"
    start = time.perf_counter()
    video.save_to(str(saved), **_save_video_arguments(video))
    save_seconds = time.perf_counter() - start
    ahead = getattr(video, "_sonify_ahead", None)
    stages = _stages(job)
    return {"clip": spec.name, "way": config["way"], "host": _host_name(config.get("comfy")),
            "node_seconds": round(node_seconds, 3), "save_seconds": round(save_seconds, 3),
            "total_seconds": round(node_seconds + save_seconds, 3), "stages": stages,
            "before_wait_seconds": round(sum(s for k, s in stages.items() if k in BEFORE_WAIT), 3),
            "after_wait_seconds": round(sum(s for k, s in stages.items() if k in AFTER_WAIT), 3),
            "background_seconds": None if ahead is None or ahead.seconds is None else round(ahead.seconds, 3),
            "saved_bytes": saved.stat().st_size}


BEFORE_WAIT = ("prepare", "encode", "upload", "submit", "slot")
AFTER_WAIT = ("download", "decode", "align")


def neighbours_case(config: dict[str, Any]) -> dict[str, Any]:
    """What runs beside a picture being encoded in the background (config: clip (its frames are the picture),
    neighbour (the second node's frames), model_seconds, work, comfy): a CPU stand-in for a GPU node and a second
    Sonify node's own work (outside its wait), `repeats` times alone and as many beside the encode."""
    spec, other = ClipSpec(**config["clip"]), ClipSpec(**config["neighbour"])
    pack, torch = _host_pack(config.get("comfy")), _torch()
    images = torch.from_numpy(frames(spec))
    their_frames = torch.from_numpy(frames(other))
    _running_graph({NODE_ID: {"class_type": "SonifyMMAudioV2", "inputs": {}}})  # its VIDEO goes nowhere
    node = _node(pack)
    a, b = torch.rand(768, 768), torch.rand(768, 768)

    def gpu_node() -> float:
        start = time.perf_counter()
        for _ in range(config["products"]):
            a @ b  # the work measured
        return time.perf_counter() - start

    runs = iter(range(1, 1000))

    def sonify_node() -> float:
        their_frames[0, 0, 0, 0] = next(runs) / 1000  # other frames each time: nothing is reused, all is done anew
        start = time.perf_counter()
        answer = node.run(images=their_frames, fps=float(other.fps), prompt="rain", seed=-1, unique_id=NODE_ID)
        wall = time.perf_counter() - start
        return wall - _stages(answer["result"][-1]).get("wait", 0.0)

    with emulated(config["model_seconds"], Path(config["work"]) / "state"):
        sonify_node()  # warm: imports, the journal, the emulator's first synthesis
        repeats = config["repeats"]
        alone = {"gpu": [gpu_node() for _ in range(repeats)], "sonify": [sonify_node() for _ in range(repeats)]}
        picture = pack.nodes.frames_ahead.start_when_waiting(images, Fraction(spec.fps))
        picture.start()
        beside = {"gpu": [gpu_node() for _ in range(repeats)], "sonify": [sonify_node() for _ in range(repeats)]}
        overlapped = picture.running
        picture.cancel()
        picture.result()
    return {"clip": spec.name, "neighbour": other.name, "host": _host_name(config.get("comfy")), "repeats": repeats,
            "encode_ran_throughout": overlapped,
            **{f"{name}_alone_seconds": round(statistics.median(alone[name]), 3) for name in alone},
            **{f"{name}_beside_seconds": round(statistics.median(beside[name]), 3) for name in beside}}


def _host_pack(comfy: str | None) -> Any:
    """The pack as ComfyUI loads it; with `comfy`, that ComfyUI's comfy_api importable (its VIDEO classes), its
    devices set up as `main.py --cpu` does. Before it: the graph's stand-in (the host's server is not running)."""
    _running_graph({})
    if comfy:
        sys.path.insert(0, comfy)
        from comfy.cli_args import args

        args.cpu = True
    pack = _load_pack()
    for name in ("sonify.pipeline", "sonify.media", "sonify.providers.wavespeed"):  # loaded when a host runs nodes
        importlib.import_module(f"{pack.__name__}.{name}")
    pack.nodes.comfy.progress(None)  # in ComfyUI: its progress bar's modules
    return pack


def _host_name(comfy: str | None) -> str:
    if not comfy:
        return "stand-in"
    version = Path(comfy) / "comfyui_version.py"
    text = version.read_text() if version.is_file() else ""
    found = [line.split("=", 1)[1].strip().strip("\"'") for line in text.splitlines() if line.startswith("__version__")]
    return f"ComfyUI {found[0]}" if found else "ComfyUI"


def _torch() -> Any:
    import torch

    return torch


def _node(pack: Any) -> Any:
    """MMAudio's node, blocking (the save follows it, as ComfyUI's executor runs one after the other)."""
    spec = sys.modules[f"{pack.__name__}.sonify.catalog"].MMAUDIO_V2
    return pack.nodes.video_to_audio.make_video_to_audio_node(spec, coroutine=False)()


def _running_graph(prompt: dict[str, Any]) -> None:
    """ComfyUI's prompt queue as the node reads it (comfy.video_file_wanted): `prompt` running."""

    class Queue:
        def get_current_queue_volatile(self) -> tuple[list, list]:
            return [(0, "bench", prompt, {}, [])], []

    server = types.ModuleType("server")
    server.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(prompt_queue=Queue()))
    sys.modules["server"] = server


def _save_video_arguments(video: Any) -> dict[str, Any]:
    """What core's Save Video passes with its defaults (auto, auto; 0.33 also crf and colour space), with a prompt
    and workflow as metadata."""
    import inspect

    metadata = {"prompt": {NODE_ID: {"class_type": "SonifyMMAudioV2"}}, "workflow": {"nodes": [1, 2]}}
    names = inspect.signature(type(video).save_to).parameters
    arguments = {"format": "auto", "codec": "auto", "metadata": metadata}
    try:
        from comfy_api.util import VideoCodec, VideoContainer

        arguments |= {"format": VideoContainer.AUTO, "codec": VideoCodec.AUTO}
    except ImportError:
        pass
    return arguments | {name: None for name in ("crf", "color_space") if name in names}


def _stages(job: str) -> dict[str, float]:
    import json

    return json.loads(job)["seconds"]
