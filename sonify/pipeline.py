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
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from . import config, frames, jobs, long_clip, media, providers, takes, uplink, windows
from .early_mux import EarlyMux
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
    Sent,
    StageTimer,
    Upload,
    UploadChoice,
    attach_task,
    check_budget,
    output_name,
    with_cost,
)
from .waiter import Slots, Waiter

__all__ = ["AudioInput", "Result", "check_picture_size", "fetch", "output_name", "run", "validate_source"]

log = logging.getLogger("sonify")
T = TypeVar("T")


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
    # variations > 1: every take's own result, in order (the first is this one's sound and video)
    takes: list[Result] = field(default_factory=list)
    # run(picture=True), lipsync: the result's frames [N, H, W, 3] float32 and their exact rate
    picture: tuple[np.ndarray, Fraction] | None = None
    # variations > 1: the takes that failed (takes.failure: take, seed, task id, status, error); `takes` then holds
    # the others, and info["failed"] lists these
    failed: list[dict[str, Any]] = field(default_factory=list)


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
    variations: int = 1,
    picture: bool = False,
) -> Result:
    """Run one job of `spec` on `video` (and `audio` for lipsync) and return its result.

    The journal decides first: a stored result (fixed seed, same fingerprint) is reused with no
    request; a submitted-but-undelivered identical job is resumed; otherwise it is a new job.

    `slots` (a batch's): a new job holds one from its submit until it is seen finished, so runs sharing
    them keep that many jobs at the provider while others prepare, upload or mux. Every job also keeps within
    the account's limits (providers.pacer), shared with every other run of the process. `observe`: called
    with the job's events (the benchmark's view). `variations`: that many takes (takes.py), each its own
    job, at once; Result.takes has every one delivered, the Result itself is the first of them with the info of
    all; a take that failed is in Result.failed (raised only when no take came). `picture`
    (lipsync): its result's frames too (Result.picture), decoded and bounded before the job counts as delivered, so
    a picture that cannot be decoded leaves the task to the next run, never a second job."""
    report = _labelled(on_progress or (lambda text, fraction: None))
    checked = spec.validate(params)
    takes.check_count(spec, variations)
    validate_source(video)
    audio = _checked_voice(spec, audio)
    timer = StageTimer()
    with timer("prepare"):  # frames: every value checked in the pass that hashes them
        picture_hash = frames.fingerprint(video.frames, video.fps) if video.frames is not None else None
    client = providers.client(spec.provider)  # a missing key fails here, before any request
    pacer = providers.pacer(client)  # so does a bad account setting

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sonify-") as tmp:
        ctx = RunContext(Waiter(is_cancelled), report, timer, Path(tmp), slots, observe, pacer=pacer,
                         picture=picture)
        with timer("prepare"):
            report("preparing video", 0.02)
            job = _prepare(spec, checked, variations, video, picture_hash, audio, client, ctx)
        if variations > 1 or len(job.parts) > 1:
            return _run_many(spec, client, ctx, job, out_dir)
        info = job.takes[0][0]
        result = _run_take(spec, client, ctx, job, info, out_dir)
    report(_done_text(info), 1.0)
    return result


def _run_take(spec: ModelSpec, client: Provider, ctx: RunContext, job: _Prepared, info: JobInfo,
              out_dir: Path) -> Result:
    """One job for the whole clip, from its journal claim to its sound on the picture (put there while the result is
    checked: early_mux.py)."""
    part = job.parts[0]
    early = EarlyMux(job.source, job.clip.duration, out_dir) if job.source is not None and spec.output == "audio" else None

    def fit_and_mux(delivery: Delivery) -> Result:
        samples, final_video = deliver(spec, delivery, job.source, job.clip.duration, info, ctx.timer, out_dir, early)
        return Result(samples, delivery.sample_rate, final_video, {}, delivery.extra, picture=delivery.picture)

    try:
        result, _ = _remote(spec, client, replace(ctx, downloaded=early.start) if early else ctx, job, part, info,
                            fit_and_mux)
    finally:
        if early is not None:
            early.discard()
    result.info = info.as_dict()
    return result


def _run_window(spec: ModelSpec, client: Provider, ctx: RunContext, job: _Prepared, part: _Part,
                info: JobInfo) -> tuple[Delivery, jobs.Ticket]:
    """One window's job: its verified sound, and its ticket, which the caller marks delivered once the take's
    windows are joined onto the picture (until then a re-run resumes or reuses it, never pays for it again)."""
    return _remote(spec, client, ctx, job, part, info, lambda delivery: delivery, final=False)


def _remote(spec: ModelSpec, client: Provider, ctx: RunContext, job: _Prepared, part: _Part, info: JobInfo,
            finish: Callable[[Delivery], T], final: bool = True) -> tuple[T, jobs.Ticket]:
    """One remote job under its journal ticket; `finish` (fit, mux) before the row is marked delivered (when
    `final`; else the caller marks it)."""
    wait_text = with_cost("waiting for an identical job in progress", info.cost_usd_estimate)
    source_path = job.source_path if part.span is None else None  # a window's sound is not the clip's
    meta = _job_meta(spec, client.http.base_url, info, part.hashes, source_path)
    info.emulator = info.emulator or config.emulator is not None
    with jobs.ticket(meta, ctx.waiter, lambda: ctx.report(wait_text, 0.05)) as ticket:
        try:
            done = finish(RemoteJob(spec, client, ctx, info, part.bounds).run(ticket, part.uploads))
        except SonifyError as exc:
            attach_task(exc, spec, info)
            raise
        if final:
            ticket.record(delivered=1)
    info.seconds = ctx.timer.seconds
    return done, ticket


def _run_many(spec: ModelSpec, client: Provider, ctx: RunContext, job: _Prepared, out_dir: Path) -> Result:
    """Every job of the run — each take's, and for a long clip each window's — at once, within the account's
    limits (its pacer's) and a batch's slots. The budget is checked for their sum before any is claimed. The
    first job to upload a file uploads it; the others reuse it. A long clip's windows are joined per take."""
    count, parts = len(job.takes), len(job.parts)
    grid = [(k, p) for k in range(count) for p in range(parts)]
    check_budget(takes.total_cost([job.takes[k][p].cost_usd_estimate for k, p in grid]),
                 f"the limit applies to a node run's sum: its {takes.what(count, parts)} are together")
    progress = takes.Progress(ctx.report, [takes.label(k, count, p, parts) for k, p in grid])
    upload_locks = [threading.Lock() for _ in job.parts]  # the takes of a part send the same files

    def call(index: int) -> Callable[[], Any]:
        k, p = grid[index]
        own = RunContext(ctx.waiter, progress.of(index), StageTimer(), ctx.work, ctx.slots, ctx.observe, upload_locks[p],
                         ctx.pacer)
        if parts == 1:
            return lambda: _run_take(spec, client, own, job, job.takes[k][0], out_dir)
        return lambda: _run_window(spec, client, own, job, job.parts[p], job.takes[k][p])

    with ctx.timer("jobs"):
        outcomes = takes.run_each([call(i) for i in range(len(grid))])
    results: dict[int, Result] = {}
    errors: list[SonifyError] = []
    failed: list[dict[str, Any]] = []
    for k in range(count):  # a take is delivered when all its windows are, then joined
        mine = outcomes[k * parts:(k + 1) * parts]
        error = next((p for p, o in enumerate(mine) if isinstance(o, SonifyError)), None)
        try:
            if error is not None:
                raise mine[error]
            results[k] = mine[0] if parts == 1 else _joined(spec, job, job.takes[k], mine, ctx.timer, out_dir)
        except SonifyError as exc:
            part = error if error is not None else 0
            errors.append(exc)
            failed.append(takes.failure(spec, k, job.takes[k][part].as_dict(), exc, part if parts > 1 else None))
    if not results:
        raise errors[0]  # nothing came: the first error, as a single job's (each is in the log)
    if not failed and job.run is not None:
        jobs.forget_seeds(job.run)  # every take delivered: the next run draws anew
    if count == 1:
        results[0].info["seconds"] = ctx.timer.seconds
        ctx.report(takes.done_text(results[0].info), 1.0)
        return results[0]
    for k, result in results.items():
        result.info["take"] = k + 1
    delivered = list(results.values())
    first = delivered[0]
    info = takes.joined_info(spec, [r.info for r in delivered], ctx.timer.seconds, failed)
    ctx.report(takes.done_text(info), 1.0)
    return Result(first.audio, first.sample_rate, first.video_path, info, first.extra, takes=delivered, failed=failed)


def _joined(spec: ModelSpec, job: _Prepared, infos: list[JobInfo], windows_done: list[tuple[Delivery, jobs.Ticket]],
            timer: StageTimer, out_dir: Path) -> Result:
    """One take of a long clip: its windows' sounds joined (windows.join), put on the source picture (its
    packets copied; the joined sound encoded as AAC); then its windows' rows are marked delivered."""
    deliveries = [delivery for delivery, _ in windows_done]
    try:
        result = _join_and_mux(spec, job, infos, deliveries, timer, out_dir)
    except SonifyError as exc:
        attach_task(exc, spec, infos[0])
        raise
    for _, ticket in windows_done:
        ticket.record(delivered=1)
    return result


def _join_and_mux(spec: ModelSpec, job: _Prepared, infos: list[JobInfo], deliveries: list[Delivery],
                  timer: StageTimer, out_dir: Path) -> Result:
    rate = deliveries[0].sample_rate
    with timer("align"):
        sounds = [d.samples if d.sample_rate == rate else media.resample(d.samples, d.sample_rate, rate)
                  for d in deliveries]
        samples = windows.join(sounds, [part.span for part in job.parts], job.fps, rate, job.clip.duration)
    info = long_clip.take_info(infos, [part.span for part in job.parts], job.fps, job.clip.duration)
    final_video = None
    if job.source is not None:
        final_video = out_dir / f"{output_name(spec, infos[0].task_id or '')}-joined.mp4"
        with timer("mux"):
            label = {"title": config.EMULATOR_TITLE} if info.get("emulator") else None
            write_atomically(final_video, lambda path: media.mux(job.source, samples, rate, path, metadata=label))
    return Result(samples, rate, final_video, info, deliveries[0].extra)


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
class _Part:
    """What one remote job is sent: the whole clip, or one window of a long clip (`span`, in frames of the
    picture the model sees), with what its result may be."""

    span: windows.Span | None
    hashes: dict[str, str]
    uploads: dict[str, Upload | UploadChoice]
    bounds: ResultBounds


@dataclass
class _Prepared:
    """A new run, ready for its remote jobs: the source (a file; None for frames the model sees only as a
    proxy), its parts (the whole clip, or its windows, at `fps`), and each take's JobInfo per part (its
    parameters and cost)."""

    source: Path | None
    clip: media.VideoInfo
    fps: Fraction
    parts: list[_Part]
    takes: list[list[JobInfo]]
    source_path: str | None
    run: str | None = None  # several takes: the run's own fingerprint, its drawn seeds' key (takes.run_key)


def _prepare(spec: ModelSpec, checked: dict[str, Any], variations: int, video: media.VideoSource,
             picture_hash: str | None, audio: AudioInput | None, client: Provider, ctx: RunContext,
             one_job: bool = False) -> _Prepared:
    """Frames going to a model that sees a proxy are never encoded at full resolution: the proxy is made
    from them (only if it must be uploaded) and the node puts the sound on the frames themselves. A clip
    longer than one job takes is cut into windows here (long_clip.py), each its own upload. The takes' seeds
    are drawn (and journaled) here, once the media is known, before anything is sent."""
    hashed = None
    if video.frames is not None and spec.proxy is not None:
        source, clip = None, media.frames_info(video.frames, video.fps)
    else:
        source = Path(media.source_to_file(video, ctx.work))  # lipsync's frames: its full-resolution upload
        with ThreadPoolExecutor(1, thread_name_prefix="sonify-hash") as pool:  # the hash read beside the probe
            hashed = pool.submit(jobs.hash_file, source) if picture_hash is None else None
            clip = media.probe(source)
    check_picture_size(clip.width, clip.height, "video")
    if clip.frames < 2:  # as for frames: no motion for a model to follow, and it would still be billed
        raise ValidationError("video", f"needs at least 2 frames, got {clip.frames}")
    seconds = float(clip.duration)
    spec.check_duration(seconds)
    hashes = {"video": picture_hash or hashed.result()}
    source_path = str(Path(video.path).resolve()) if video.path else None
    run = takes.run_key(spec, client.http.base_url, checked, variations, hashes["video"]) if variations > 1 else None
    params = takes.take_params(spec, checked, variations, run)
    if spec.output == "audio" and windows.is_long(spec.window, seconds):
        if one_job:
            raise ValidationError("video", f"{spec.title} takes at most {spec.window.longest:g} s in one job, got "
                                           f"{seconds:.3f} s: a longer clip is done in windows by the node, `python "
                                           "-m sonify run` and `batch`, not yet by a Temporal batch")
        fps, pieces = long_clip.cut(spec, video, source, ctx)
        parts = [_window_part(spec, hashes["video"], span, path) for span, path in pieces]
        lengths = [float(span.end - span.start) / float(fps) for span, _ in pieces]
        infos = [[_info(spec, take, length) for length in lengths] for take in params]
        return _Prepared(source, clip, fps, parts, infos, source_path, run)
    infos = [[_info(spec, take, seconds)] for take in params]
    if audio is not None:
        hashes["audio"] = jobs.hash_array(audio.samples, audio.sample_rate)
    uploads = {"video": _video_upload(spec, video, source, hashes["video"], infos[0][0].cost_usd_estimate, clip)}
    if audio is not None:
        uploads["audio"] = (jobs.digest_of("upload", hashes["audio"], "wav"), lambda: _write_audio(audio, ctx.work))
    sent = infos[0][0].params
    voice = audio.samples.shape[1] / audio.sample_rate if audio is not None else 0.0
    longest = max(spec.result_seconds(sent, seconds), voice)  # lipsync may loop the picture to the voice
    bounds = (ResultBounds.expected(longest) if spec.output == "audio"
              else ResultBounds.expected(longest, (clip.width, clip.height), clip.fps))
    return _Prepared(source, clip, clip.fps, [_Part(None, hashes, uploads, bounds)], infos, source_path, run)


def _info(spec: ModelSpec, checked: dict[str, Any], seconds: float) -> JobInfo:
    sent = spec.resolve(checked, seconds)
    cost = spec.price(sent, seconds)
    return JobInfo(spec.provider, spec.model_id, cost_usd_estimate=None if cost is None else round(cost, 6),
                   video_seconds=round(seconds, 6), params=sent)


def _window_part(spec: ModelSpec, clip_hash: str, span: windows.Span, path: Path) -> _Part:
    """A window's job: its media is the clip's content and the window's frames (a stable fingerprint, so a
    re-run resumes or reuses each window), its upload the window's proxy file."""
    hashes = {"video": jobs.digest_of("window", clip_hash, span.start, span.end)}
    key = jobs.digest_of("upload", hashes["video"], repr(spec.proxy))

    def send(client: Provider, run: RunContext) -> Sent:
        return Sent(key, client.upload(path, run.waiter), path.stat().st_size, proxy=True)

    # A window's job asks for no more than the model's longest (MMAudio: its duration's range).
    return _Part(span, hashes, {"video": UploadChoice((key,), frozenset({key}), send)},
                 ResultBounds.expected(spec.window.longest))


@dataclass
class Prepared:
    """One job for the whole clip, ready to go (a Temporal batch's prepare activity): the source, what is sent
    and what it costs."""

    source: Path | None
    clip: media.VideoInfo
    info: JobInfo
    meta: jobs.JobMeta
    uploads: dict[str, Upload | UploadChoice]
    bounds: ResultBounds


def prepare(spec: ModelSpec, checked: dict[str, Any], video: media.VideoSource, picture_hash: str | None,
            audio: AudioInput | None, client: Provider, ctx: RunContext) -> Prepared:
    """`run`'s preparation of one take as one job (see _prepare); a clip that needs windows is refused."""
    job = _prepare(spec, checked, 1, video, picture_hash, audio, client, ctx, one_job=True)
    (part,), (info,) = job.parts, job.takes[0]
    meta = _job_meta(spec, client.http.base_url, info, part.hashes, job.source_path)
    return Prepared(job.source, job.clip, info, meta, part.uploads, part.bounds)


def deliver(spec: ModelSpec, delivery: Delivery, source: Path | None, seconds: Fraction, info: JobInfo,
            timer: StageTimer, out_dir: Path, early: EarlyMux | None = None) -> tuple[np.ndarray, Path | None]:
    """The result in the output folder: v2a sound fitted to the clip (`source`, `seconds` long) and put on its
    picture (frames: no file, the caller puts it on the frames); lipsync's video as the provider made it. `early`:
    the same file, made while the result was checked, taken when it was."""
    final_video = out_dir / f"{output_name(spec, info.task_id or '')}.mp4"
    if spec.output != "audio":
        write_atomically(final_video, lambda path: shutil.copyfile(delivery.path, path))
        return delivery.samples, final_video
    with timer("align"):
        samples = media.fit_length(delivery.samples, delivery.sample_rate, seconds)
    if source is None:
        return samples, None
    with timer("mux"):
        if early is not None and early.emulator == info.emulator and _taken(early, final_video):
            info.audio_copied = True
        else:
            label = {"title": config.EMULATOR_TITLE} if info.emulator else None
            info.audio_copied = _mux_sound(source, delivery.path, samples, delivery.sample_rate, seconds, final_video,
                                           label)
    return samples, final_video


def _taken(early: EarlyMux, target: Path) -> bool:
    try:
        return early.take(target)
    except OSError as exc:  # a full disk, a read-only folder: a message (with the task, via attach_task)
        raise ConfigurationError(f"cannot write {target} ({exc.strerror or exc})") from None


def _job_meta(spec: ModelSpec, endpoint: str, info: JobInfo, hashes: dict[str, str],
              source_path: str | None) -> jobs.JobMeta:
    sent = info.params or {}
    body = spec.request_body(sent)
    return jobs.JobMeta(
        provider=spec.provider, model=spec.model_id,
        fingerprint=jobs.fingerprint(spec.provider, endpoint, spec.model_id, spec.proxy, body, hashes),
        cacheable=spec.cacheable(sent),
        params=body, cost_usd=info.cost_usd_estimate,
        source_path=source_path,
    )


def file_fingerprint(spec: ModelSpec, params: dict[str, Any], path: Path) -> str:
    """The journal's fingerprint of a run of `spec` on the file `path`, as `prepare` makes it, without a key or
    a request: a Temporal batch names each clip's workflow after it (temporal_batch.py)."""
    checked = spec.validate(params)
    seconds = float(media.probe(path).duration)
    spec.check_duration(seconds)
    info = JobInfo(spec.provider, spec.model_id, params=spec.resolve(checked, seconds))
    source_path = str(Path(path).resolve())
    return _job_meta(spec, providers.endpoint(spec.provider), info, {"video": jobs.hash_file(path)}, source_path).fingerprint


def _video_upload(spec: ModelSpec, video: media.VideoSource, source: Path | None, content_hash: str,
                  cost: float | None, clip: media.VideoInfo) -> UploadChoice:
    """Frames: their proxy, made straight from them only if no earlier upload of it can be reused. A file:
    the picture as it is or its proxy, whichever is up sooner (uplink.py); nothing is made or sent when an
    earlier upload of either can be reused. `clip`: the source's probe."""
    if source is not None:
        return uplink.video_choice(source, spec.proxy, content_hash, cost, clip)
    key = jobs.digest_of("upload", content_hash, repr(spec.proxy))

    def send(client: Provider, run: RunContext) -> Sent:
        with run.timer("encode"):
            path = Path(media.frames_to_proxy(video.frames, video.fps, spec.proxy, run.work))
        return Sent(key, client.upload(path, run.waiter), path.stat().st_size, proxy=True)

    return UploadChoice((key,), frozenset({key}), send)


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
            record = jobs.FetchedTask(provider, spec.model_id, task_id, row)
            delivery = job.fetch(record)
            source = Path(media.source_to_file(video, ctx.work)) if video is not None else _known_source(row)
            samples, video_path = _fetched_video(spec, task_id, delivery, source, out_dir)
            info.source = str(source) if source is not None and spec.output == "audio" else None
            record.record(delivered=1)  # only now: a result refused above leaves a run's row resumable
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
    write_atomically(target, lambda path: shutil.copyfile(result_file, path))
    return samples, target


def write_atomically(target: Path, write: Callable[[Path], Any]) -> None:
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

    write_atomically(target, write)
    return copied


def _done_text(info: JobInfo) -> str:
    """The last progress line: how long, where the time went (stages of 0.05 s or more), what it cost."""
    stages = ", ".join(f"{stage} {s:.1f} s" for stage, s in info.seconds.items() if s >= 0.05)
    text = f"done in {sum(info.seconds.values()):.1f} s" + (f" ({stages})" if stages else "")
    if info.cached:
        return f"{text} · the stored result of task {info.task_id}, no new cost"
    return with_cost(text, info.cost_usd_estimate)
