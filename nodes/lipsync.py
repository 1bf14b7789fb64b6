"""The lipsync node: a video and a voice in, a lip-synced video (and its frames) out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..sonify.catalog import ModelSpec
from . import comfy
from .inputs import param_inputs, provider_input, source_inputs
from .run import node_function, run_node
from .video_to_audio import _changed_by_seed


def make_lipsync_node(spec: ModelSpec, coroutine: bool | None = None) -> type:
    """The lipsync node class; its FUNCTION a coroutine if `coroutine` (default: if the host runs them)."""

    def body(is_cancelled: Callable[[], bool], audio: Any, video: Any = None, images: Any = None, fps: float = 24.0,
             unique_id: Any = None, **params: Any) -> tuple:
        import torch

        result = run_node(spec, unique_id, video, images, fps, params, is_cancelled, audio=audio, picture=True)
        frames, rate = result.picture  # decoded and bounded as part of the result's check (remote_job._verify)
        return (comfy.make_video(result.video_path), torch.from_numpy(frames),
                comfy.to_audio(result.audio, result.sample_rate), float(rate), json.dumps(result.info))

    class LipsyncNode:
        DESCRIPTION = (f"{spec.description} The video is uploaded at full resolution; the voice "
                       + ("losslessly at its own rate and channels" if spec.voice.suffix == ".wav" else
                          f"as AAC ({spec.voice.suffix}: the model caps the file's size)")
                       + f". Price: {spec.price_text}.")
        CATEGORY = "Sonify/lipsync"
        FUNCTION = "run"
        RETURN_TYPES = ("VIDEO", "IMAGE", "AUDIO", "FLOAT", "STRING")
        RETURN_NAMES = ("video", "images", "audio", "fps", "job")
        OUTPUT_TOOLTIPS = (
            "The lip-synced video as the provider returned it.",
            "Its frames, float32 [N, H, W, 3].",
            "Its sound.",
            "Its frame rate.",
            "Job info (JSON): provider, model, task id, status, cost estimate, seconds per stage.",
        )

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            voice = {"audio": ("AUDIO", {"tooltip": "The voice to lip-sync to (any rate, any channels)."})}
            return {"required": {**voice, **param_inputs(spec)}, "optional": {**source_inputs(spec), **provider_input(spec)},
                    "hidden": {"unique_id": "UNIQUE_ID"}}

        run = node_function(body, coroutine)

    if any(p.seed for p in spec.params):  # LatentSync: seed -1 a new take each queue, a fixed seed the stored one
        LipsyncNode.IS_CHANGED = classmethod(_changed_by_seed)
    LipsyncNode.__name__ = LipsyncNode.__qualname__ = "Sonify" + spec.key.title().replace("-", "")
    return LipsyncNode
