"""The one path every job takes:

validate → prepare media → the remote job (journal claim: stored result? resume? else upload →
submit → wait → download → verify) → fit the sound to the picture → mux → result.

Everything that can be checked is checked before the first request, so a mistake costs nothing.
The remote job (remote_job.py) journals each step before the next, so a result that was paid for is
never lost and an identical job is never paid for twice; `fetch` gets any task's result. Progress
and cancellation come in as two small callables, so ComfyUI and the command line each plug in their
own.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import config, frames, jobs, media, providers, uplink
from .errors import ConfigurationError, SonifyError, ValidationError
from .media import check_picture_size, validate_source
from .models import BY_MODEL_ID, MODELS, PROVIDERS, ModelSpec
from .providers.base import Provider, given_task_id
from .remote_job import (
    FETCH_SECONDS,
    AudioInput,
    Delivery,
    JobInfo,
    Observer,
    ProgressFn,
    RemoteJob,
    ResultBounds,
    RunContext,
    StageTimer,
    Upload,
    UploadChoice,
    attach_task,
    output_name,
    with_cost,
)
from .waiter import Slots, Waiter

__all__ = ["AudioInput", "Result", "check_picture_size", "fetch", "output_name", "run", "validate_source"]

log = logging.getLogger("sonify")


@dataclass
class Result:
    audio: np.ndarray  # float32 [C, T]
    sample_rate: int
    # v2a: the source picture with the new sound; lipsync: the provider's video. None for frames sent to a
    # v2a model (no file is made of them: the caller puts `audio` on its frames), and from fetch() for a
    # sound-only result whose source is not known.
    video_path: Path | None
    info: dict[str, Any]  # the job's JobInfo, serialised: provider, model, task id, status, cost, seconds
    extra: dict[str, Any] = field(default_factory=dict)  # other result fields (fal's prompt)


def run(
    spec: ModelSpec,
    params: dict[str, Any],
    video: media.VideoSource,
    *,
    out_dir: Path,
    audio: AudioInput | None = None,
    on_progress: ProgressFn | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    slots: Slots | None = None,
    observe: Observer | None = None,
) -> Result:
    """Run one job of `spec` on `video` (and `audio` for lipsync) and return its result.

    The journal decides first: a stored result (fixed seed, same fingerprint) is reused with no
    request; a submitted-but-undelivered identical job is resumed; otherwise it is a new job.

    `slots` (a batch's): a new job holds one from its submit until it is seen finished, so runs sharing
    them keep that many jobs at the provider while others prepare, upload or mux. `observe`: called
    with the job's events (the benchmark's view)."""
    report = _labelled(on_progress or (lambda text, fraction: None))
    checked = spec.validate(params)
    validate_source(video)
    audio = _checked_voice(spec, audio)
    timer = StageTimer()
    with timer("prepare"):  # frames: every value checked in the pass that hashes them
        picture_hash = frames.fingerprint(video.frames, video.fps) if video.frames is not None else None
    client = providers.client(spec.provider)  # a missing key fails here, before any request

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sonify-") as tmp:
        ctx = RunContext(Waiter(is_cancelled), report, timer, Path(tmp), slots, observe)
        with timer("prepare"):
            report("preparing video", 0.02)
            job = prepare(spec, checked, video, picture_hash, audio, client, ctx)
        info = job.info
        info.emulator = config.emulator is not None
        wait_text = with_cost("waiting for an identical job in progress", info.cost_usd_estimate)
        with jobs.ticket(job.meta, ctx.waiter, lambda: report(wait_text, 0.05)) as ticket:
            try:
                delivery = RemoteJob(spec, client, ctx, info, job.bounds).run(ticket, job.uploads)
                samples, final_video = deliver(spec, delivery, job.source, job.clip.duration, info, timer, out_dir)
            except SonifyError as exc:
                attach_task(exc, spec, info)
                raise
            ticket.record(delivered=1)

    info.seconds = timer.seconds
    report(_done_text(info), 1.0)
    return Result(samples, delivery.sample_rate, final_video, info.as_dict(), delivery.extra)


def _labelled(report: ProgressFn) -> ProgressFn:
    """In emulator mode every line the user sees says the sound is the emulator's."""
    if config.emulator is None:
        return report
    return lambda text, fraction: report(f"emulator (synthetic sound) · {text}", fraction)


def _checked_voice(spec: ModelSpec, audio: AudioInput | None) -> AudioInput | None:
    """The voice: required where the model takes one (lipsync), checked (any rate, 1–8 channels) when given."""
    if spec.audio_field and audio is None:
        raise ValidationError("audio", f"{spec.title} needs an audio input")
    if audio is None:
        return None
    return AudioInput(media.check_audio(audio.samples, audio.sample_rate), int(audio.sample_rate))


@dataclass
class Prepared:
    """A new run, ready for its remote job: the source (a file; None for frames the model sees only as a
    proxy), what is sent and what it costs."""

    source: Path | None
    clip: media.VideoInfo
    info: JobInfo
    meta: jobs.JobMeta
    uploads: dict[str, Upload | UploadChoice]
    bounds: ResultBounds


def prepare(spec: ModelSpec, checked: dict[str, Any], video: media.VideoSource, picture_hash: str | None,
            audio: AudioInput | None, client: Provider, ctx: RunContext) -> Prepared:
    """Frames going to a model that sees a proxy are never encoded at full resolution: the proxy is made
    from them (only if it must be uploaded) and the node puts the sound on the frames themselves."""
    if video.frames is not None and spec.proxy is not None:
        source, clip = None, media.frames_info(video.frames, video.fps)
    else:
        source = Path(media.source_to_file(video, ctx.work))  # lipsync's frames: its full-resolution upload
        clip = media.probe(source)
    check_picture_size(clip.width, clip.height, "video")
    if clip.frames < 2:  # as for frames: no motion for a model to follow, and it would still be billed
        raise ValidationError("video", f"needs at least 2 frames, got {clip.frames}")
    seconds = float(clip.duration)
    spec.check_duration(seconds)
    sent = spec.resolve(checked, seconds)
    cost = spec.price(sent, seconds)
    hashes = {"video": picture_hash or jobs.hash_file(source)}
    if audio is not None:
        hashes["audio"] = jobs.hash_array(audio.samples, audio.sample_rate)
    info = JobInfo(spec.provider, spec.model_id, cost_usd_estimate=cost, video_seconds=round(seconds, 6), params=sent)
    uploads = {"video": _video_upload(spec, video, source, hashes["video"], ctx, info)}
    if audio is not None:
        uploads["audio"] = (jobs.digest_of("upload", hashes["audio"], "wav"), lambda: _write_audio(audio, ctx.work))
    voice = audio.samples.shape[1] / audio.sample_rate if audio is not None else 0.0
    longest = max(spec.result_seconds(sent, seconds), voice)  # lipsync may loop the picture to the voice
    bounds = (ResultBounds.expected(longest) if spec.output == "audio"
              else ResultBounds.expected(longest, (clip.width, clip.height), clip.fps))
    meta = _job_meta(spec, client.http.base_url, sent, cost, hashes, video)
    return Prepared(source, clip, info, meta, uploads, bounds)


def deliver(spec: ModelSpec, delivery: Delivery, source: Path | None, seconds: Fraction, info: JobInfo,
            timer: StageTimer, out_dir: Path) -> tuple[np.ndarray, Path | None]:
    """The result in the output folder: v2a sound fitted to the clip (`source`, `seconds` long) and put on its
    picture (frames: no file, the caller puts it on the frames); lipsync's video as the provider made it."""
    final_video = out_dir / f"{output_name(spec, info.task_id or '')}.mp4"
    if spec.output != "audio":
        _write_atomically(final_video, lambda path: shutil.copyfile(delivery.path, path))
        return delivery.samples, final_video
    with timer("align"):
        samples = media.fit_length(delivery.samples, delivery.sample_rate, seconds)
    if source is None:
        return samples, None
    with timer("mux"):
        label = {"title": config.EMULATOR_TITLE} if info.emulator else None
        info.audio_copied = _mux_sound(source, delivery.path, samples, delivery.sample_rate, seconds, final_video,
                                       label)
    return samples, final_video


def _job_meta(spec: ModelSpec, endpoint: str, sent: dict[str, Any], cost: float | None, hashes: dict[str, str],
              video: media.VideoSource) -> jobs.JobMeta:
    body = spec.request_body(sent)
    return jobs.JobMeta(
        provider=spec.provider, model=spec.model_id,
        fingerprint=jobs.fingerprint(spec.provider, endpoint, spec.model_id, spec.proxy, body, hashes),
        cacheable=spec.cacheable(sent),
        params=body, cost_usd=cost,
        source_path=str(Path(video.path).resolve()) if video.path else None,
    )


def file_fingerprint(spec: ModelSpec, params: dict[str, Any], path: Path) -> str:
    """The journal's fingerprint of a run of `spec` on the file `path`, as `prepare` makes it, without a key or
    a request: a Temporal batch names each clip's workflow after it (temporal_batch.py)."""
    checked = spec.validate(params)
    seconds = float(media.probe(path).duration)
    spec.check_duration(seconds)
    sent = spec.resolve(checked, seconds)
    video = media.VideoSource(path=str(path))
    meta = _job_meta(spec, providers.endpoint(spec.provider), sent, None, {"video": jobs.hash_file(path)}, video)
    return meta.fingerprint


def _video_upload(spec: ModelSpec, video: media.VideoSource, source: Path | None, content_hash: str,
                  ctx: RunContext, info: JobInfo) -> Upload | UploadChoice:
    """Frames: their proxy, made straight from them only if no earlier upload of it can be reused. A file:
    the picture as it is or its proxy, whichever is up sooner (uplink.py); nothing is made or sent when an
    earlier upload of either can be reused."""
    if source is not None:
        return uplink.video_choice(source, spec.proxy, content_hash, info.cost_usd_estimate)

    def make() -> Path:
        with ctx.timer("encode"):
            info.proxy = True
            return Path(media.frames_to_proxy(video.frames, video.fps, spec.proxy, ctx.work))

    return jobs.digest_of("upload", content_hash, repr(spec.proxy)), make


def _write_audio(audio: AudioInput, work: Path) -> Path:
    return Path(media.write_wav(audio.samples, audio.sample_rate, work / "audio.wav"))


def fetch(
    provider: str,
    task_id: str,
    *,
    out_dir: Path,
    model: str | None = None,
    video: media.VideoSource | None = None,
    on_progress: ProgressFn | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> Result:
    """A job's result from its task id, so that no paid result is stranded: from the result store
    when it is there (no request), else from the provider (waiting while it still runs).

    `model`: a catalog key or provider model id; the journal's record wins. WaveSpeed tasks name
    their model; fal needs it (from the journal or here). `video`: the source to put the sound on;
    default: the journal's source file if it still exists. Result.video_path is None for a
    sound-only result with no source known."""
    report = on_progress or (lambda text, fraction: None)
    waiter = Waiter(is_cancelled)
    if provider not in PROVIDERS:
        raise ValidationError("provider", f"must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    task_id = given_task_id(task_id)  # before any use in a URL, a path or a message
    if video is not None:
        validate_source(video)
    client = providers.client(provider)
    row = jobs.guarded("looking up the task", lambda journal: journal.find_task(provider, task_id))
    spec = _fetch_spec(provider, task_id, model, row, client, waiter)
    info = JobInfo(provider, spec.model_id, task_id=task_id, status="fetching",
                   cost_usd_estimate=row.cost_usd if row else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    with tempfile.TemporaryDirectory(prefix="sonify-fetch-") as tmp:
        ctx = RunContext(waiter, report, timer, Path(tmp))
        try:
            job = RemoteJob(spec, client, ctx, info, ResultBounds.expected(FETCH_SECONDS))
            delivery = job.fetch(jobs.FetchedTask(provider, spec.model_id, task_id, row))
            source = Path(media.source_to_file(video, ctx.work)) if video is not None else _known_source(row)
            samples, video_path = _fetched_video(spec, task_id, delivery, source, out_dir)
            info.source = str(source) if source is not None and spec.output == "audio" else None
        except SonifyError as exc:
            attach_task(exc, spec, info)
            raise
    info.seconds = timer.seconds
    report("fetched", 1.0)
    return Result(samples, delivery.sample_rate, video_path, info.as_dict(), delivery.extra)


def _fetch_spec(provider: str, task_id: str, model: str | None, row: jobs.JobRow | None, client: Provider,
                waiter: Waiter) -> ModelSpec:
    """The task's model: the journal's record, else the one given, else the task's own (WaveSpeed)."""
    named = row.model if row is not None else None
    if named is None and not model:
        named = client.task_model(task_id, waiter)
    chosen = named or model
    choices = ", ".join(k for k, m in MODELS.items() if m.provider == provider)
    if not chosen:
        raise ValidationError("model", f"is needed to find {provider} task {task_id}: one of {choices}")
    spec = MODELS.get(chosen) or BY_MODEL_ID.get((provider, chosen))
    if spec is None or spec.provider != provider:
        raise ValidationError("model", f"{chosen!r} is not a {provider} model Sonify knows (one of {choices})")
    if model and named and (MODELS.get(model) or BY_MODEL_ID.get((provider, model))) is not spec:
        log.info("task %s is a %s job (journal); using that rather than %s", task_id, spec.key, model)
    return spec


def _known_source(row: jobs.JobRow | None) -> Path | None:
    if row is not None and row.source_path and Path(row.source_path).is_file():
        return Path(row.source_path)
    return None


def _fetched_video(spec: ModelSpec, task_id: str, delivery: Delivery, source: Path | None,
                   out_dir: Path) -> tuple[np.ndarray, Path | None]:
    """Sound for a video: on the source when known (fitted to it, as a run does); else the provider's
    own video if its file has a picture; else no video."""
    target = out_dir / f"{output_name(spec, task_id)}.mp4"
    samples, rate, result_file = delivery.samples, delivery.sample_rate, delivery.path
    if spec.output == "audio" and source is not None:
        seconds = media.probe(source).duration
        samples = media.fit_length(samples, rate, seconds)
        _mux_sound(source, result_file, samples, rate, seconds, target)
        return samples, target
    try:
        media.probe(result_file)
    except ValidationError:
        return samples, None
    target = target.with_suffix(result_file.suffix)
    _write_atomically(target, lambda path: shutil.copyfile(result_file, path))
    return samples, target


def _write_atomically(target: Path, write: Callable[[Path], Any]) -> None:
    """Write next to `target`, then rename: a reader of an earlier result never sees a torn file."""
    partial = target.with_name(f".{target.stem}-{uuid.uuid4().hex[:8]}{target.suffix}")
    try:
        write(partial)
        os.replace(partial, target)
    except OSError as exc:  # a full disk, a read-only folder: a message (with the task, via attach_task)
        raise ConfigurationError(f"cannot write {target} ({exc.strerror or exc})") from None
    finally:
        partial.unlink(missing_ok=True)


def _mux_sound(source: Path, result_file: Path, samples: np.ndarray, rate: int, seconds: Fraction,
               target: Path, metadata: dict[str, str] | None = None) -> bool:
    """The source picture (copied) with the new sound: the provider's own AAC packets, copied and cut at
    the picture's end, when they reach that far; else `samples` (fitted to the picture) encoded as AAC.
    True if the sound was copied."""
    copied = False

    def write(path: Path) -> None:
        nonlocal copied
        copied = media.copy_mux(source, result_file, path, seconds, metadata)
        if not copied:
            media.mux(source, samples, rate, path, metadata=metadata)

    _write_atomically(target, write)
    return copied


def _done_text(info: JobInfo) -> str:
    """The last progress line: how long, where the time went (stages of 0.05 s or more), what it cost."""
    stages = ", ".join(f"{stage} {s:.1f} s" for stage, s in info.seconds.items() if s >= 0.05)
    text = f"done in {sum(info.seconds.values()):.1f} s" + (f" ({stages})" if stages else "")
    if info.cached:
        return f"{text} · the stored result of task {info.task_id}, no new cost"
    return with_cost(text, info.cost_usd_estimate)
