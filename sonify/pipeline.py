"""The one path every job takes:

validate → prepare media → upload → submit → wait → download → decode/align → result.

Everything that can be checked is checked before the first request, so a mistake costs nothing.
Progress and cancellation come in as two small callables, so ComfyUI and the command line each
plug in their own.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from . import media, providers
from .errors import JobFailed, ProviderError, SonifyError, ValidationError
from .models import ModelSpec
from .providers.base import QUEUED, RUNNING, TaskState, WaitLimits, recovery_hint
from .waiter import Waiter

log = logging.getLogger("sonify")

ProgressFn = Callable[[str, float | None], None]
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".opus")
MAX_FPS = 240


@dataclass
class AudioInput:
    """Audio handed to a model (lipsync's voice): float32 [C, T] at its own rate."""

    samples: np.ndarray
    sample_rate: int


@dataclass
class Result:
    audio: np.ndarray  # float32 [C, T]
    sample_rate: int
    video_path: Path  # v2a: the source picture with the new sound; lipsync: the provider's video
    info: dict[str, Any]  # provider, model, task id, status, cost estimate, per-stage seconds
    extra: dict[str, Any] = field(default_factory=dict)  # other result fields (fal's prompt)


def max_download_bytes() -> int:
    return int(float(os.environ.get("SONIFY_MAX_DOWNLOAD_MB", "500")) * (1 << 20))


def wait_limits() -> WaitLimits:
    return WaitLimits(
        queue_seconds=float(os.environ.get("SONIFY_QUEUE_TIMEOUT", "900")),
        run_seconds=float(os.environ.get("SONIFY_RUN_TIMEOUT", "1800")),
    )


def validate_source(video: media.VideoSource) -> None:
    """Exactly one of a file or frames; frames non-empty, finite, in range, with a sane fps."""
    if (video.path is None) == (video.frames is None):
        raise ValidationError("video", "connect exactly one of `video` or `images` (+ `fps`)")
    if video.frames is None:
        return
    frames = video.frames
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValidationError("images", f"must be [frames, height, width, 3], got shape {list(frames.shape)}")
    if frames.shape[0] < 2:
        raise ValidationError("images", f"needs at least 2 frames, got {frames.shape[0]}")
    if frames.shape[1] < 16 or frames.shape[2] < 16:
        raise ValidationError("images", f"frames must be at least 16×16 pixels, got {frames.shape[2]}×{frames.shape[1]}")
    if frames.dtype != np.uint8:
        if not np.isfinite(frames).all():
            raise ValidationError("images", "contains NaN or infinite pixel values")
        if frames.min() < -1e-3 or frames.max() > 1 + 1e-3:
            raise ValidationError("images", "pixel values must be in 0..1")
    if video.fps is None or not (0 < video.fps <= MAX_FPS):
        raise ValidationError("fps", f"must be above 0 and at most {MAX_FPS}, got {video.fps}")


def run(
    spec: ModelSpec,
    params: dict[str, Any],
    video: media.VideoSource,
    *,
    out_dir: Path,
    audio: AudioInput | None = None,
    on_progress: ProgressFn | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> Result:
    """Run one job of `spec` on `video` (and `audio` for lipsync) and return its result."""
    report = on_progress or (lambda text, fraction: None)
    waiter = Waiter(is_cancelled)
    timer = _StageTimer()

    checked = spec.validate(params)
    validate_source(video)
    if spec.audio_field and audio is None:
        raise ValidationError("audio", f"{spec.title} needs an audio input")
    client = providers.client(spec.provider)  # a missing key fails here, before any request

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sonify-") as tmp:
        work = Path(tmp)
        with timer("prepare"):
            report("preparing video", 0.02)
            source = Path(media.source_to_file(video, work))
            info = media.probe(source)
            seconds = float(info.duration)
            spec.check_duration(seconds)
            sent = spec.resolve(checked, seconds)
            cost = spec.price(sent, seconds)
            _check_budget(cost)
            upload_path, proxied = media.prepare_upload(source, spec.proxy, work)
            audio_path = _write_audio(audio, work) if audio is not None else None
        job = {
            "provider": spec.provider, "model": spec.model_id, "task_id": None, "status": "preparing",
            "cost_usd_estimate": cost, "video_seconds": round(seconds, 6), "params": sent,
            "uploaded_bytes": 0, "proxy": proxied, "seconds": timer.seconds,
        }
        try:
            with timer("upload"):
                report(_with_cost("uploading", cost), 0.05)
                body = spec.request_body(sent)
                body[spec.video_field] = client.upload(Path(upload_path), waiter)
                job["uploaded_bytes"] = Path(upload_path).stat().st_size
                if audio_path is not None:
                    body[spec.audio_field] = client.upload(audio_path, waiter)
                    job["uploaded_bytes"] += audio_path.stat().st_size
            with timer("submit"):
                waiter.check()
                task_id = client.submit(spec.model_id, body, waiter)
                job.update(task_id=task_id, status="submitted")
                log.info("%s task %s submitted (%s)", spec.provider, task_id, spec.model_id)
            with timer("wait"):
                state = client.wait(task_id, waiter, _state_reporter(report, cost, job), wait_limits())
            if state.status != "completed":
                job["status"] = "failed"
                raise JobFailed(
                    f"{spec.title} task {task_id} failed: {state.error or state.raw_status}", task_id=task_id
                )
            job["status"] = "completed"
            job["outputs"] = state.outputs
            if state.inference_seconds is not None:
                job["inference_seconds"] = state.inference_seconds
            with timer("download"):
                report("downloading", 0.92)
                result_file = _download_output(client, spec, state, work, waiter, task_id)
            with timer("decode"):
                samples, rate = _decode(result_file, task_id)
            final_video = out_dir / f"sonify-{spec.key}-{_safe(task_id)}.mp4"
            if spec.output == "audio":
                with timer("align"):
                    samples = media.fit_length(samples, rate, info.duration)
                with timer("mux"):
                    media.mux(source, samples, rate, final_video)
            else:
                shutil.copyfile(result_file, final_video)
        except SonifyError as exc:
            if job["task_id"] and exc.task_id is None:
                exc.task_id = job["task_id"]
            if job["task_id"] and "python -m sonify fetch" not in str(exc):
                exc.args = (f"{exc} — {recovery_hint(spec.provider, job['task_id'])}",)
            raise
    job["seconds"] = timer.seconds
    report(f"done in {sum(timer.seconds.values()):.1f} s" + (f", ≈ ${cost:.3f}" if cost is not None else ""), 1.0)
    return Result(audio=samples, sample_rate=rate, video_path=final_video, info=job, extra=state.extra)


class _StageTimer:
    """Collects wall-clock seconds per stage for the job info."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str):
        timer = self

        class _Stage:
            def __enter__(self) -> None:
                self.start = time.perf_counter()

            def __exit__(self, *exc: object) -> None:
                timer.seconds[stage] = round(time.perf_counter() - self.start, 4)

        return _Stage()


def _with_cost(text: str, cost: float | None) -> str:
    return text if cost is None else f"{text} · est. ${cost:.3f}"


def _state_reporter(report: ProgressFn, cost: float | None, job: dict[str, Any]) -> Callable[[TaskState, float], None]:
    def on_state(state: TaskState, elapsed: float) -> None:
        job["status"] = state.raw_status or state.status
        if state.status == QUEUED:
            where = f" (position {state.queue_position + 1})" if state.queue_position is not None else ""
            text = f"queued{where} {elapsed:.0f} s"
        elif state.status == RUNNING:
            text = f"processing {elapsed:.0f} s"
        else:
            text = state.status
        # The wait has no known end: approach 0.9 asymptotically (about half-way after 30 s).
        report(_with_cost(text, cost), 0.1 + 0.8 * (1 - math.exp(-elapsed / 45)))

    return on_state


def _check_budget(cost: float | None) -> None:
    limit = os.environ.get("SONIFY_MAX_USD_PER_JOB", "").strip()
    if limit and cost is not None and cost > float(limit):
        raise ValidationError(
            "SONIFY_MAX_USD_PER_JOB", f"this job is estimated at ${cost:.3f}, above the limit of ${float(limit):.3f}"
        )


def _write_audio(audio: AudioInput, work: Path) -> Path:
    if audio.samples.ndim != 2 or audio.samples.shape[1] == 0:
        raise ValidationError("audio", "is empty")
    return Path(media.write_wav(audio.samples, audio.sample_rate, work / "audio.wav"))


def _download_output(client: Any, spec: ModelSpec, state: TaskState, work: Path, waiter: Waiter, task_id: str) -> Path:
    """Pick the output to use (for sound, a plain audio file if there is one) and download it."""
    urls = state.outputs
    if spec.output == "audio":
        urls = sorted(urls, key=lambda u: not urlsplit(u).path.lower().endswith(AUDIO_EXTENSIONS))
    url = urls[0]
    suffix = Path(urlsplit(url).path).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"
    return client.http.download(url, work / f"result{suffix}", max_bytes=max_download_bytes(), waiter=waiter, task_id=task_id)


def _decode(path: Path, task_id: str) -> tuple[np.ndarray, int]:
    """The provider's result as audio; a file that is not decodable media is the provider's fault."""
    try:
        return media.decode_audio(path)
    except ValidationError as exc:
        raise ProviderError(f"the result file is not usable audio ({exc})", task_id=task_id) from None


def _safe(task_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", task_id)[:40]


def exact_fps(value: float) -> Fraction:
    """A widget's float fps as the exact rate it stands for: 29.97 → 30000/1001, 24 → 24."""
    ntsc = value * 1.001
    if abs(ntsc - round(ntsc)) < 1e-3 and abs(value - round(value)) > 1e-3:
        return Fraction(round(ntsc) * 1000, 1001)
    return Fraction(value).limit_denominator(1001)
