"""Video-to-audio nodes: a silent clip in, its new sound (AUDIO) and the clip with it (VIDEO) out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from ..sonify import loudness_target
from ..sonify.catalog import ModelSpec
from . import comfy, frames_ahead, ids, v1
from .declaration import Node, Output
from .ids import DEPRECATED, MODEL_NODES
from .inputs import category, loudness_inputs, param_inputs, provider_input, source_inputs, variations_input
from .price_badge import badge
from .run import run_node, source_picture


def declare_video_to_audio(node_id: str, spec: ModelSpec) -> Node:
    """The node of a video-to-audio model: its catalog parameters, then the source, `variations`, the loudness
    and, for a model on both providers, `provider` (each appended after the ones before)."""

    def body(is_cancelled: Callable[[], bool], video: Any = None, images: Any = None, fps: float = 24.0,
             unique_id: Any = None, variations: int = 1, loudness: str = loudness_target.AS_GENERATED,
             loudness_lufs: float = loudness_target.DEFAULT_LUFS,
             true_peak_dbtp: float = loudness_target.DEFAULT_CEILING, **params: Any) -> dict[str, Any]:
        goal = loudness_target.target(loudness, loudness_lufs, true_peak_dbtp)
        ahead = picture_ahead(spec, unique_id, video, images, fps)
        try:
            result = run_node(spec, unique_id, video, images, fps, params, is_cancelled, variations=variations,
                              loudness=goal, observe=frames_ahead.observer(ahead) if ahead is not None else None)
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

    seeded = any(p.seed for p in spec.params)
    replaced = (f"Deprecated: use {MODEL_NODES[DEPRECATED[node_id]].node_title}, which runs on either provider."
                if node_id in DEPRECATED else "")
    return Node(
        node_id=node_id,
        display_name=spec.node_title,
        category=category(spec),
        description=" ".join(filter(None, (replaced, spec.description, spec.licence_note, f"Price: {spec.price_text}."))),
        inputs=(*param_inputs(spec), *source_inputs(spec), variations_input(spec), *loudness_inputs(),
                *provider_input(spec)),
        outputs=(
            Output("audio", "AUDIO", "The generated sound, trimmed or padded to the clip's exact length, the "
                                     "model's samples untouched but for `loudness`: a batch of `variations` takes, "
                                     "flagged takes (silent, clipped, cut short) last (of those that came, if one "
                                     "failed: `job` names it, with its seed and task id)."),
            Output("video", "VIDEO", "The source picture (not re-encoded) with the new sound (the first take in "
                                     "`audio`) as AAC: the provider's own packets when the sound is as generated, "
                                     "else encoded once at 96 kbit/s a channel (SONIFY_AAC_KBPS)."),
            *(Output(name, "STRING", f"The {name} the provider used.") for name in spec.extra_outputs),
            Output("job", "STRING", "Job info (JSON): provider, model, task id, status, cost estimate, seconds per "
                                    "stage; each take's sound measured (loudness, true peak, silent share, clipped "
                                    "samples, length), its flags and its place."),
        ),
        body=body,
        remote=True,
        api_node=True,
        price_badge=badge(spec, takes=True),
        not_idempotent=True,
        fingerprint=changed_by_seed if seeded else None,
        search_aliases=("video to audio", "foley", "sound effects", "add sound to video", spec.key),
        deprecated=node_id in DEPRECATED,
    )


def picture_ahead(spec: ModelSpec, unique_id: Any, video: Any, images: Any, fps: float) -> Any:
    """Frames whose result is a frames VIDEO (the model sees a proxy) that the graph will want as a file: their
    picture, to be encoded while the job waits (frames_ahead.py). None otherwise."""
    frames = images is not None or (video is not None and not comfy.is_file_backed(video))
    if not frames or spec.proxy is None or not comfy.video_file_wanted(unique_id, VIDEO_OUTPUT):
        return None
    return frames_ahead.start_when_waiting(*source_picture(video, images, fps), like=video)


VIDEO_OUTPUT = 1  # the index of `video` among the node's outputs


def changed_by_seed(seed: Any = None, **_: Any) -> str:
    """ComfyUI runs a node again when this answer changes. Seed -1 asks for a new take on every queue, so it
    answers something new each time; a fixed seed answers the same, and ComfyUI's cache (and behind it Sonify's
    result store) keeps the take. A seed fed by a link arrives as None here: its value is in ComfyUI's own
    input signature already."""
    return uuid.uuid4().hex if seed == -1 else f"seed {seed}"


def make_video_to_audio_node(spec: ModelSpec, coroutine: bool | None = None) -> type:
    """The node of `spec` as a classic class; its FUNCTION a coroutine if `coroutine` (default: if the host runs
    them)."""
    return v1.render(declare_video_to_audio(ids.node_id(spec), spec), coroutine)
