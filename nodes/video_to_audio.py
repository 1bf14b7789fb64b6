"""Video-to-audio nodes: a silent clip in, its new sound (AUDIO) and the clip with it (VIDEO) out."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from ..sonify.errors import Cancelled, ValidationError
from ..sonify.models import ModelSpec
from . import comfy
from .inputs import param_inputs, source_inputs

log = logging.getLogger("sonify")


def engine_source(video: Any, images: Any, fps: float, workdir: Path) -> Any:
    """The node's `video` or `images` + `fps` as the engine's VideoSource."""
    from ..sonify import media  # PyAV loads when a node runs, not when ComfyUI starts

    if (video is None) == (images is None):
        raise ValidationError("video", "connect exactly one of `video` or `images` (+ `fps`)")
    if video is not None:
        return media.VideoSource(**comfy.video_source(video, workdir))
    # the rate's range is checked with the frames, in pipeline.validate_source
    return media.VideoSource(frames=images.detach().cpu().numpy(), fps=media.exact_fps(fps))


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


def make_video_to_audio_node(spec: ModelSpec) -> type:
    extra_outputs = ("prompt",) if spec.provider == "fal" else ()

    class VideoToAudioNode:
        DESCRIPTION = " ".join(filter(None, (spec.description, spec.licence_note, f"Price: {spec.price_text}.")))
        CATEGORY = "Sonify/video to audio"
        FUNCTION = "run"
        RETURN_TYPES = ("AUDIO", "VIDEO") + ("STRING",) * len(extra_outputs) + ("STRING",)
        RETURN_NAMES = ("audio", "video") + extra_outputs + ("job",)
        OUTPUT_TOOLTIPS = (
            "The generated sound, trimmed or padded to the clip's exact length.",
            "The source picture (not re-encoded) with the new sound.",
        ) + (("The prompt the provider used.",) if extra_outputs else ()) + (
            "Job info (JSON): provider, model, task id, status, cost estimate, seconds per stage.",
        )

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": param_inputs(spec), "optional": source_inputs(spec), "hidden": {"unique_id": "UNIQUE_ID"}}

        def run(self, video: Any = None, images: Any = None, fps: float = 24.0, unique_id: Any = None,
                **params: Any) -> tuple:
            result = run_node(spec, unique_id, video, images, fps, params)
            prompt = (result.extra.get("prompt", ""),) if extra_outputs else ()
            return (comfy.to_audio(result.audio, result.sample_rate), comfy.make_video(result.video_path), *prompt,
                    json.dumps(result.info))

    VideoToAudioNode.__name__ = VideoToAudioNode.__qualname__ = "Sonify" + spec.key.title().replace("-", "")
    return VideoToAudioNode
