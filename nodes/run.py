"""What every model node shares: its inputs turned into the engine's, one pipeline run, ComfyUI's Cancel."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from ..sonify.errors import Cancelled, ValidationError
from ..sonify.models import ModelSpec
from . import comfy

log = logging.getLogger("sonify")


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
             audio: Any = None) -> Any:
    """Shared body of every model node: adapt inputs, run the pipeline, map Cancel to ComfyUI's."""
    from ..sonify import pipeline

    comfy.use_comfy_state_dir()
    report = comfy.progress(unique_id)
    with tempfile.TemporaryDirectory(prefix="sonify-in-") as tmp:
        source = engine_source(video, images, fps, Path(tmp))
        voice = pipeline.AudioInput(*comfy.from_audio(audio)) if audio is not None else None
        try:
            return pipeline.run(
                spec, params, source, audio=voice, out_dir=comfy.temp_dir(),
                on_progress=report, is_cancelled=comfy.is_cancelled,
            )
        except Cancelled as exc:
            # ComfyUI shows an interrupt without a message: the task id goes on the node and in the log.
            report(str(exc), None)
            log.warning("%s", exc)
            comfy.raise_interrupted()
            raise
