"""The lipsync node: a video and a voice in, a lip-synced video (and its frames) out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..sonify.catalog import ModelSpec
from . import comfy, v1
from .declaration import Input, Node, Output
from .inputs import category, param_inputs, source_inputs
from .price_badge import badge
from .run import run_node


def declare_lipsync(node_id: str, spec: ModelSpec) -> Node:
    """The lipsync node: the voice, the catalog's parameters, then the source."""

    def body(is_cancelled: Callable[[], bool], audio: Any, video: Any = None, images: Any = None, fps: float = 24.0,
             unique_id: Any = None, **params: Any) -> tuple:
        import torch

        result = run_node(spec, unique_id, video, images, fps, params, is_cancelled, audio=audio, picture=True)
        frames, rate = result.picture  # decoded and bounded as part of the result's check (remote_job._verify)
        return (comfy.make_video(result.video_path), torch.from_numpy(frames),
                comfy.to_audio(result.audio, result.sample_rate), float(rate), json.dumps(result.info))

    return Node(
        node_id=node_id,
        display_name=spec.title,
        category=category(spec),
        description=(f"{spec.description} The video is uploaded at full resolution; the voice losslessly at its own "
                     f"rate and channels. Price: {spec.price_text}."),
        inputs=(Input("audio", "AUDIO", "The voice to lip-sync to (any rate, any channels)."), *param_inputs(spec),
                *source_inputs(spec)),
        outputs=(
            Output("video", "VIDEO", "The lip-synced video as the provider returned it."),
            Output("images", "IMAGE", "Its frames, float32 [N, H, W, 3]."),
            Output("audio", "AUDIO", "Its sound."),
            Output("fps", "FLOAT", "Its frame rate."),
            Output("job", "STRING", "Job info (JSON): provider, model, task id, status, cost estimate, seconds per "
                                    "stage."),
        ),
        body=body,
        remote=True,
        api_node=True,
        price_badge=badge(spec, takes=False),
        not_idempotent=True,
        search_aliases=("lip sync", "lipsync", "talking head", "dub", spec.key),
    )


def make_lipsync_node(spec: ModelSpec, coroutine: bool | None = None) -> type:
    """The lipsync node as a classic class; its FUNCTION a coroutine if `coroutine` (default: if the host runs
    them)."""
    return v1.render(declare_lipsync("SonifySyncLipsync", spec), coroutine)
