"""Video-to-audio nodes: a silent clip in, its new sound (AUDIO) and the clip with it (VIDEO) out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from ..sonify.models import ModelSpec
from . import comfy, frames_ahead
from .inputs import param_inputs, source_inputs, variations_input
from .run import node_function, run_node, source_picture

VIDEO_OUTPUT = 1  # the index of `video` among the node's outputs


def make_video_to_audio_node(spec: ModelSpec, coroutine: bool | None = None) -> type:
    """The node class for `spec`; its FUNCTION a coroutine if `coroutine` (default: if the host runs them)."""

    def body(is_cancelled: Callable[[], bool], video: Any = None, images: Any = None, fps: float = 24.0,
             unique_id: Any = None, variations: int = 1, **params: Any) -> tuple:
        ahead = picture_ahead(spec, unique_id, video, images, fps)
        try:
            result = run_node(spec, unique_id, video, images, fps, params, is_cancelled, variations=variations,
                              observe=frames_ahead.observer(ahead) if ahead is not None else None)
        except BaseException:
            if ahead is not None:
                ahead.cancel()
            raise
        sound = comfy.to_audio_batch([take.audio for take in result.takes or [result]], result.sample_rate)
        if result.video_path is not None:
            if ahead is not None:
                ahead.cancel()
            picture = comfy.make_video(result.video_path)
        else:  # frames in: the frames themselves with the new sound (the first take), encoded only if asked
            picture = comfy.frames_video(*source_picture(video, images, fps),
                                         comfy.to_audio(result.audio, result.sample_rate), like=video, ahead=ahead)
        extra = tuple(result.extra.get(name, "") for name in spec.extra_outputs)
        outputs = (sound, picture, *extra, json.dumps(result.info))
        return {"ui": {"audio": [comfy.preview_file(result.video_path, result.audio, result.sample_rate)]},
                "result": outputs}

    class VideoToAudioNode:
        DESCRIPTION = " ".join(filter(None, (spec.description, spec.licence_note, f"Price: {spec.price_text}.")))
        CATEGORY = "Sonify/video to audio"
        FUNCTION = "run"
        RETURN_TYPES = ("AUDIO", "VIDEO") + ("STRING",) * len(spec.extra_outputs) + ("STRING",)
        RETURN_NAMES = ("audio", "video") + spec.extra_outputs + ("job",)
        OUTPUT_TOOLTIPS = (
            ("The generated sound, trimmed or padded to the clip's exact length: a batch of `variations` takes (of "
             "those that came, if one failed: `job` names it, with its seed and task id)."),
            "The source picture (not re-encoded) with the new sound (the first take that came).",
        ) + tuple(f"The {name} the provider used." for name in spec.extra_outputs) + (
            "Job info (JSON): provider, model, task id, status, cost estimate, seconds per stage.",
        )

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {"required": param_inputs(spec), "optional": {**source_inputs(spec), **variations_input(spec)},
                    "hidden": {"unique_id": "UNIQUE_ID"}}

        run = node_function(body, coroutine)

    if any(p.seed for p in spec.params):
        VideoToAudioNode.IS_CHANGED = classmethod(_changed_by_seed)

    VideoToAudioNode.__name__ = VideoToAudioNode.__qualname__ = "Sonify" + spec.key.title().replace("-", "")
    return VideoToAudioNode


def picture_ahead(spec: ModelSpec, unique_id: Any, video: Any, images: Any, fps: float) -> Any:
    """Frames whose result is a frames VIDEO (the model sees a proxy) that the graph will want as a file: their
    picture, to be encoded while the job waits (frames_ahead.py). None otherwise."""
    frames = images is not None or (video is not None and not comfy.is_file_backed(video))
    if not frames or spec.proxy is None or not comfy.video_file_wanted(unique_id, VIDEO_OUTPUT):
        return None
    return frames_ahead.start_when_waiting(*source_picture(video, images, fps), like=video)


def _changed_by_seed(cls: type, seed: Any = None, **_: Any) -> str:
    """ComfyUI runs a node again when this answer changes. Seed -1 asks for a new take on every queue, so it
    answers something new each time; a fixed seed answers the same, and ComfyUI's cache (and behind it Sonify's
    result store) keeps the take. A seed fed by a link arrives as None here: its value is in ComfyUI's own
    input signature already."""
    return uuid.uuid4().hex if seed == -1 else f"seed {seed}"
