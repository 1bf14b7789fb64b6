"""Fetch Result: a job's result from its task id, so that a paid result is never stranded."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..sonify.catalog import MODELS, PROVIDERS, find, on_provider
from ..sonify.errors import Cancelled, ValidationError
from . import comfy
from .run import node_function


def fetch(is_cancelled: Callable[[], bool], provider: str, model: str, task_id: str, video: Any = None,
          unique_id: Any = None) -> tuple:
    """The node's body: the job's result by its task id (pipeline.fetch), as node outputs."""
    from ..sonify import media, pipeline

    if find(provider, model) is None:
        choices = ", ".join(k for k, m in MODELS.items() if on_provider(m, provider) is not None)
        raise ValidationError("model", f"{model!r} is not a {provider} model (one of {choices})")
    comfy.use_comfy_state_dir()
    with tempfile.TemporaryDirectory(prefix="sonify-in-") as tmp:
        source = media.VideoSource(**comfy.video_source(video, Path(tmp))) if video is not None else None
        try:
            result = pipeline.fetch(
                provider, task_id, out_dir=comfy.temp_dir(), model=model, video=source,
                on_progress=comfy.progress(unique_id), is_cancelled=is_cancelled,
            )
        except Cancelled:
            comfy.raise_interrupted()
            raise
    if result.video_path is None:
        raise ValidationError(
            "video", f"task {task_id.strip()}'s result is sound only and its source clip is not known: connect "
                     "the clip to `video` (the result is kept, so fetching again costs nothing)")
    return (comfy.to_audio(result.audio, result.sample_rate), comfy.make_video(result.video_path),
            json.dumps(result.info))


def make_fetch_result_node(coroutine: bool | None = None) -> type:
    """The Fetch Result node class; its FUNCTION a coroutine if `coroutine` (default: if the host runs them)."""

    class SonifyFetchResult:
        DESCRIPTION = (
            "Gets the result of a Sonify job from its task id: after a timeout, a Cancel (WaveSpeed jobs run on "
            "at the provider) or a crash. The task id is in a model node's `job` output, in every timeout, cancel "
            "and failure message, and in `python -m sonify jobs`. A result Sonify already downloaded is reused "
            "without any request; otherwise the provider is asked, and waited for while the job still runs. "
            "Fetching costs nothing."
        )
        CATEGORY = "Sonify/utility"
        FUNCTION = "run"
        RETURN_TYPES = ("AUDIO", "VIDEO", "STRING")
        RETURN_NAMES = ("audio", "video", "job")
        OUTPUT_TOOLTIPS = (
            "The job's sound (for a video-to-audio model with a known source: fitted to the clip's exact length).",
            ("Video-to-audio: the source clip with the sound (from `video`, else the file the job was run on, else "
             "the provider's own video). Lipsync: the lip-synced video."),
            "Job info (JSON): provider, model, task id, status, where the result file is kept.",
        )

        @classmethod
        def INPUT_TYPES(cls) -> dict[str, Any]:
            return {
                "required": {
                    "provider": (list(PROVIDERS), {
                        "default": "wavespeed",
                        "tooltip": "The provider that ran the job (the `provider` in its job info). "
                                   "Default: wavespeed.",
                    }),
                    "model": (list(MODELS), {
                        "default": "mmaudio-v2",
                        "tooltip": "The model the job ran. Sonify's journal remembers it for its own jobs; fal needs "
                                   "it to find a task the journal does not know. Default: mmaudio-v2.",
                    }),
                    "task_id": ("STRING", {
                        "default": "", "tooltip": "The job's task id (`task_id` in its job info, or from an error "
                                                  "message or `python -m sonify jobs`).",
                    }),
                },
                "optional": {
                    "video": ("VIDEO", {
                        "tooltip": "The source clip to put the sound on (optional: by default, the file the job was "
                                   "run on if it still exists).",
                    }),
                },
                "hidden": {"unique_id": "UNIQUE_ID"},
            }

        run = node_function(fetch, coroutine)

    return SonifyFetchResult


SonifyFetchResult = make_fetch_result_node()
