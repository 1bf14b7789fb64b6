"""What every remote node shares: its FUNCTION (a coroutine where the host runs them), its inputs turned
into the engine's, one pipeline run, ComfyUI's Cancel."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..sonify.catalog import ModelSpec
from ..sonify.errors import Cancelled, SonifyError, ValidationError
from . import comfy, messages

log = logging.getLogger("sonify")


# A node's blocking body: body(is_cancelled, **inputs) -> the node's outputs.
Body = Callable[..., tuple]


def node_function(body: Body, coroutine: bool | None = None) -> Callable[..., Any]:
    """A remote node's FUNCTION (a method) around its blocking body. A coroutine if `coroutine` (default:
    if the host runs them, comfy.runs_coroutines()): it runs the body in a worker thread, so the graph goes
    on — other remote jobs, local GPU nodes — while the job waits. Else the body itself, run where the host
    runs every node (ComfyUI before July 2025)."""
    if coroutine is None:
        coroutine = comfy.runs_coroutines()
    if coroutine:
        async def run_async(self: Any, **inputs: Any) -> tuple:
            return await in_worker(body, inputs)

        return run_async

    def run(self: Any, **inputs: Any) -> tuple:
        return body(comfy.is_cancelled, **inputs)

    return run


async def in_worker(body: Body, inputs: dict[str, Any]) -> tuple:
    """body(is_cancelled, **inputs) in a worker thread, awaited. asyncio.to_thread gives the thread a copy
    of this task's contextvars: ComfyUI's progress bar finds the executing node through one.

    is_cancelled is ComfyUI's Cancel, or this coroutine's own cancellation: ComfyUI cancels the nodes
    still pending when a graph stops (an interrupt or an error elsewhere). The worker is then told to
    stop — the engine looks at least every Waiter.SLICE — and waited for, so the journal has recorded the
    cancel (and fal's remote job is cancelled) before the CancelledError goes on."""
    stop = threading.Event()

    def is_cancelled() -> bool:
        return stop.is_set() or comfy.is_cancelled()

    worker = asyncio.ensure_future(asyncio.to_thread(body, is_cancelled, **inputs))
    try:
        return await asyncio.shield(worker)  # a cancel here leaves the worker running: it is ours to stop
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([worker])  # the error it ends with (its interrupt) is the shield's to drop
        raise


def engine_source(video: Any, images: Any, fps: float, workdir: Path) -> Any:
    """The node's `video` or `images` + `fps` as the engine's VideoSource."""
    from ..sonify import media  # PyAV loads when a node runs, not when ComfyUI starts

    if (video is None) == (images is None):
        raise ValidationError("video", "connect exactly one of `video` or `images` (+ `fps`)")
    if video is not None:
        return media.VideoSource(**comfy.video_source(video, workdir))
    # the rate's range is checked with the frames, in media.validate_source
    return media.VideoSource(frames=comfy.frames_array(images), fps=media.exact_fps(fps))


def source_picture(video: Any, images: Any, fps: float) -> tuple[Any, Any]:
    """The frames a node was given (its `images`, or a frames VIDEO's) and their exact rate."""
    from ..sonify import media

    if images is not None:
        return images, media.exact_fps(fps)
    components = video.get_components()
    return components.images, media.exact_fps(components.frame_rate)


def run_node(spec: ModelSpec, unique_id: Any, video: Any, images: Any, fps: float, params: dict[str, Any],
             is_cancelled: Callable[[], bool], audio: Any = None, variations: int = 1, picture: bool = False,
             loudness: Any = None, observe: Any = None) -> Any:
    """Shared body of every model node: adapt inputs, run the pipeline on the provider its `provider` input picks
    (failover.py; auto for a model on one provider), map Cancel to ComfyUI's. `picture`: the result's frames too
    (lipsync's IMAGE output: Result.picture); `loudness`: the sound's target (None: as generated); `observe`: the
    jobs' events (pipeline.run)."""
    from ..sonify import pipeline
    from ..sonify.pipeline import failover
    from ..sonify.pipeline.messages import summary

    params = dict(params)
    provider = params.pop("provider", "auto")
    comfy.use_comfy_state_dir()
    report = comfy.progress(unique_id)
    with said_on_node(report), tempfile.TemporaryDirectory(prefix="sonify-in-") as tmp:
        source = engine_source(video, images, fps, Path(tmp))
        voice = pipeline.AudioInput(*comfy.from_audio(audio)) if audio is not None else None
        result = failover.run(
            spec, params, source, provider=provider, audio=voice, out_dir=comfy.temp_dir(),
            on_progress=report, is_cancelled=is_cancelled, variations=variations, picture=picture,
            loudness=loudness, run_id=comfy.prompt_id(), observe=observe,
        )
    report(summary(result.info, result.extra.get("prompt")), None)
    return result


@contextmanager
def said_on_node(report: Callable[[str, float | None], None]) -> Iterator[None]:
    """A failure or a cancel in the block, said in ComfyUI's terms (messages.for_comfyui) in the error and on the
    node. A cancel becomes ComfyUI's own interrupt, which it shows without a message: the task id is on the node
    and in the log."""
    try:
        yield
    except SonifyError as exc:
        exc.args = (messages.for_comfyui(str(exc)),)
        report(str(exc), None)
        if isinstance(exc, Cancelled):
            log.warning("%s", exc)
            comfy.raise_interrupted()
        raise
