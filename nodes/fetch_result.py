"""Fetch Result: a job's result from its task id, so that a paid result is never stranded."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..sonify.catalog import BY_MODEL_ID, MODELS, PROVIDERS
from ..sonify.errors import ValidationError
from . import comfy, v1
from .declaration import Input, Node, Output
from .run import said_on_node


def fetch(is_cancelled: Callable[[], bool], provider: str, model: str, task_id: str, video: Any = None,
          unique_id: Any = None) -> tuple:
    """The node's body: the job's result by its task id, or by a receipt pasted there (pipeline.fetch), as node
    outputs."""
    from ..sonify import media, pipeline
    from ..sonify.pipeline import receipts

    pasted = receipts.parse(task_id)
    if pasted is not None:  # its provider, model and task win over the widgets'
        provider, task_id = pasted["provider"], pasted["task_id"]
        named = BY_MODEL_ID.get((provider, pasted.get("model")))
        model = named.key if named is not None else model
    spec = MODELS.get(model)
    if spec is None or spec.provider != provider:
        choices = ", ".join(k for k, m in MODELS.items() if m.provider == provider)
        raise ValidationError("model", f"{model!r} is not a {provider} model (one of {choices})")
    comfy.use_comfy_state_dir()
    report = comfy.progress(unique_id)
    with said_on_node(report), tempfile.TemporaryDirectory(prefix="sonify-in-") as tmp:
        source = media.VideoSource(**comfy.video_source(video, Path(tmp))) if video is not None else None
        result = pipeline.fetch(provider, task_id, out_dir=comfy.temp_dir(), model=model, video=source,
                                on_progress=report, is_cancelled=is_cancelled)
    if result.video_path is None:
        raise ValidationError(
            "video", f"task {task_id.strip()}'s result is sound only and its source clip is not known: connect "
                     "the clip to `video` (the result is kept, so fetching again costs nothing)")
    return (comfy.to_audio(result.audio, result.sample_rate), comfy.make_video(result.video_path),
            json.dumps(result.info))


def declare_fetch_result() -> Node:
    """The Fetch Result node: a provider, a model and a task id (and optionally the clip) in, the job's result out."""
    return Node(
        node_id="SonifyFetchResult",
        display_name="Fetch Result by Task ID · Sonify",
        category="Sonify/utility",
        description=(
            "Gets the result of a Sonify job from its task id: after a timeout, a Cancel (WaveSpeed jobs run on "
            "at the provider) or a crash. The task id is in a model node's `job` output and in every timeout, "
            "cancel and failure message the node shows. A result Sonify already downloaded is reused without any "
            "request; otherwise the provider is asked, and waited for while the job still runs. Fetching costs "
            "nothing."
        ),
        inputs=(
            Input("provider", "COMBO", "The provider that ran the job (the `provider` in its job info). Default: "
                                       "wavespeed.", default="wavespeed", choices=PROVIDERS),
            Input("model", "COMBO", "The model the job ran. Sonify's journal remembers it for its own jobs; fal needs "
                                    "it to find a task the journal does not know. Default: mmaudio-v2.",
                  default="mmaudio-v2", choices=tuple(MODELS)),
            Input("task_id", "STRING", "The job's task id (`task_id` in its job info, or from the message a model "
                                       "node showed), or a receipt pasted as it is (the `sonify` tag in a file "
                                       "Sonify wrote, or `receipt` in its --json or batch sidecar): its provider, "
                                       "model and task are used.", default=""),
            Input("video", "VIDEO", "The source clip to put the sound on (optional: by default, the file the job was "
                                    "run on if it still exists).", optional=True),
        ),
        outputs=(
            Output("audio", "AUDIO", "The job's sound (for a video-to-audio model with a known source: fitted to the "
                                     "clip's exact length)."),
            Output("video", "VIDEO", "Video-to-audio: the source clip with the sound (from `video`, else the file the "
                                     "job was run on, else the provider's own video). Lipsync: the lip-synced video."),
            Output("job", "STRING", "Job info (JSON): provider, model, task id, status, where the result file is "
                                    "kept."),
        ),
        body=fetch,
        remote=True,
        search_aliases=("task id", "recover result", "fetch job"),
    )


def make_fetch_result_node(coroutine: bool | None = None) -> type:
    """The Fetch Result node as a classic class; its FUNCTION a coroutine if `coroutine` (default: if the host
    runs them)."""
    return v1.render(declare_fetch_result(), coroutine)
