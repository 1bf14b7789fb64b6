"""The one path every job takes:

validate → prepare media → journal (stored result? resume?) → upload → submit → journal → wait →
download → decode/align → result.

Everything that can be checked is checked before the first request, so a mistake costs nothing.
The journal (jobs.py) is written before the submit and right after it, so a result that was paid
for is never lost and an identical job is never paid for twice; `fetch` gets any task's result.
Progress and cancellation come in as two small callables, so ComfyUI and the command line each
plug in their own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from . import jobs, media, providers
from .errors import Cancelled, JobFailed, ProviderError, SonifyError, ValidationError
from .models import BY_MODEL_ID, MODELS, ModelSpec
from .providers.base import COMPLETED, QUEUED, RUNNING, TaskState, WaitLimits, recovery_hint
from .waiter import Waiter

log = logging.getLogger("sonify")

ProgressFn = Callable[[str, float | None], None]
Upload = tuple[str, Callable[[], Path]]  # (media key: what the file is made from, make the file)
PROVIDERS = ("wavespeed", "fal")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".opus")
MAX_FPS = 240
MIN_SIDE, MAX_SIDE = 16, 8192  # pixels; H.264's largest levels stop at 8192×4320


@dataclass
class AudioInput:
    """Audio handed to a model (lipsync's voice): float32 [C, T] at its own rate."""

    samples: np.ndarray
    sample_rate: int


@dataclass
class Result:
    audio: np.ndarray  # float32 [C, T]
    sample_rate: int
    # v2a: the source picture with the new sound; lipsync: the provider's video. None only from fetch():
    # a sound-only result whose source is not known.
    video_path: Path | None
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
    check_picture_size(frames.shape[2], frames.shape[1], "images")
    if frames.dtype != np.uint8:
        if not np.isfinite(frames).all():
            raise ValidationError("images", "contains NaN or infinite pixel values")
        if frames.min() < -1e-3 or frames.max() > 1 + 1e-3:
            raise ValidationError("images", "pixel values must be in 0..1")
    if video.fps is None or not (0 < video.fps <= MAX_FPS):
        raise ValidationError("fps", f"must be above 0 and at most {MAX_FPS}, got {video.fps}")


def check_picture_size(width: int, height: int, name: str) -> None:
    """16 px to MAX_SIDE px a side: smaller is no picture to look at, larger no encoder or model takes."""
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise ValidationError(name, f"frames must be {MIN_SIDE} to {MAX_SIDE} pixels a side, got {width}×{height}")


def run(
    spec: ModelSpec,
    params: dict[str, Any],
    video: media.VideoSource,
    *,
    out_dir: Path,
    audio: AudioInput | None = None,
    on_progress: ProgressFn | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    slots: threading.Semaphore | None = None,
) -> Result:
    """Run one job of `spec` on `video` (and `audio` for lipsync) and return its result.

    The journal decides first: a stored result (fixed seed, same fingerprint) is reused with no
    request; a submitted-but-undelivered identical job is resumed; otherwise it is a new job.

    `slots` (a batch's): a new job holds one from its submit until it is seen finished, so runs sharing
    them keep that many jobs at the provider while others prepare, upload or mux."""
    report = on_progress or (lambda text, fraction: None)
    waiter = Waiter(is_cancelled)
    timer = _StageTimer()

    checked = spec.validate(params)
    validate_source(video)
    if spec.audio_field and audio is None:
        raise ValidationError("audio", f"{spec.title} needs an audio input")
    if audio is not None:
        audio = AudioInput(media.check_audio(audio.samples, audio.sample_rate), int(audio.sample_rate))
    client = providers.client(spec.provider)  # a missing key fails here, before any request

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sonify-") as tmp:
        work = Path(tmp)
        with timer("prepare"):
            report("preparing video", 0.02)
            source = Path(media.source_to_file(video, work))
            info = media.probe(source)
            check_picture_size(info.width, info.height, "video")
            seconds = float(info.duration)
            spec.check_duration(seconds)
            sent = spec.resolve(checked, seconds)
            cost = spec.price(sent, seconds)
            hashes = _media_hashes(video, source, audio)
            meta = _job_meta(spec, client.http.base_url, sent, cost, hashes, video)
        job: dict[str, Any] = {
            "provider": spec.provider, "model": spec.model_id, "task_id": None, "status": "preparing",
            "cost_usd_estimate": cost, "video_seconds": round(seconds, 6), "params": sent,
            "uploaded_bytes": 0, "uploads_reused": 0, "proxy": False, "cached": False, "resumed": False,
            "seconds": timer.seconds,
        }
        wait_text = _with_cost("waiting for an identical job in progress", cost)
        with jobs.ticket(meta, waiter, lambda: report(wait_text, 0.05)) as ticket:
            remote = _Remote(spec, client, waiter, report, timer, job, ticket, work, slots)
            try:
                uploads = {"video": remote.video_upload(source, hashes["video"])}
                if audio is not None:
                    uploads["audio"] = remote.audio_upload(audio, hashes["audio"])
                result_file, extra = remote.result_file(uploads)
                task_id = job["task_id"]
                with timer("decode"):
                    samples, rate = _decode(result_file, task_id)
                final_video = out_dir / f"{output_name(spec, task_id)}.mp4"
                if spec.output == "audio":
                    with timer("align"):
                        samples = media.fit_length(samples, rate, info.duration)
                    with timer("mux"):
                        job["audio_copied"] = _mux_sound(source, result_file, samples, rate, info.duration, final_video)
                else:
                    _write_atomically(final_video, lambda path: shutil.copyfile(result_file, path))
            except SonifyError as exc:
                _attach_task(exc, spec, job)
                raise
            ticket.record(delivered=1)

    job["seconds"] = timer.seconds
    report(_done_text(job, timer.seconds), 1.0)
    return Result(audio=samples, sample_rate=rate, video_path=final_video, info=job, extra=extra)


def _media_hashes(video: media.VideoSource, source: Path, audio: AudioInput | None) -> dict[str, str]:
    """Content hashes of what the user gave: the file's bytes, or the frames' bytes with their exact
    fps; the voice's samples with their rate."""
    hashes = {"video": jobs.hash_file(source) if video.path else jobs.hash_array(video.frames, video.fps)}
    if audio is not None:
        hashes["audio"] = jobs.hash_array(audio.samples, audio.sample_rate)
    return hashes


def _job_meta(spec: ModelSpec, endpoint: str, sent: dict[str, Any], cost: float | None, hashes: dict[str, str],
              video: media.VideoSource) -> jobs.JobMeta:
    body = spec.request_body(sent)
    return jobs.JobMeta(
        provider=spec.provider, model=spec.model_id,
        fingerprint=jobs.fingerprint(spec.provider, endpoint, spec.model_id, spec.proxy, body, hashes),
        cacheable=isinstance(sent.get("seed"), int) and sent["seed"] >= 0,  # -1: a new result every run
        params=body, cost_usd=cost,
        source_path=str(Path(video.path).resolve()) if video.path else None,
    )


class _Remote:
    """The provider side of one run: reuse what the journal has, or upload, submit and wait —
    recording each step in the journal before the next one."""

    def __init__(self, spec: ModelSpec, client: Any, waiter: Waiter, report: ProgressFn, timer: _StageTimer,
                 job: dict[str, Any], ticket: jobs.Ticket, work: Path, slots: threading.Semaphore | None) -> None:
        self.spec, self.client, self.waiter, self.report, self.timer = spec, client, waiter, report, timer
        self.job, self.ticket, self.work, self.slots = job, ticket, work, slots
        self.uploads: list[str] = []  # media keys of the uploads this job uses

    def result_file(self, uploads: dict[str, Upload]) -> tuple[Path, dict[str, Any]]:
        """The provider's output file (and its extra fields) for this job, however it is obtained.
        `uploads`: "video" (and "audio") as (media key, a function making the file to upload)."""
        claim = self.ticket.claim(self.waiter, self._on_busy)
        if claim.kind == "stored":
            return self._stored(claim.row)
        if claim.kind == "ambiguous":
            raise JobFailed(_ambiguous_message(self.spec, claim.row))
        if claim.kind == "resume":
            return self._resume(claim.row.task_id)
        _check_budget(self.job["cost_usd_estimate"])
        body = self.spec.request_body(self.job["params"])
        with self.timer("upload"):
            self.report(_with_cost("uploading", self.job["cost_usd_estimate"]), 0.05)
            for name, (key, make) in uploads.items():
                body[self.spec.audio_field if name == "audio" else self.spec.video_field] = self._upload(key, make)
        with self._slot():
            task_id = self._submit(body)
            state = self._wait(task_id)
        return self._download(task_id, state)

    def _resume(self, task_id: str) -> tuple[Path, dict[str, Any]]:
        self.job.update(task_id=task_id, status="submitted", resumed=True)
        self.report(_with_cost(f"resuming task {task_id}", self.job["cost_usd_estimate"]), 0.1)
        try:
            state = self._wait(task_id)  # no slot: the job is at the provider already
        except ProviderError as exc:
            if exc.status != 404:
                raise
            # Expired at the provider (or another account): never resumable again; the next run submits.
            self.ticket.record("failed", error=f"the provider no longer has this task ({exc})")
            raise JobFailed(
                f"{self.spec.provider} no longer has task {task_id}, which an earlier run left unfinished; "
                "it will not be resumed again — run once more to submit a new job", task_id=task_id,
            ) from None
        return self._download(task_id, state)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """One of the shared slots, if any, for the time the job is at the provider (the wait for it is
        the "slot" stage)."""
        if self.slots is None:
            yield
            return
        text = _with_cost("waiting for one of the running jobs to finish", self.job["cost_usd_estimate"])
        with self.timer("slot"):
            self.waiter.acquire(self.slots, lambda: self.report(text, 0.08))
        try:
            yield
        finally:
            self.slots.release()

    def _on_busy(self, row: jobs.JobRow) -> None:
        where = f" (task {row.task_id})" if row.task_id else ""
        self.report(_with_cost(f"waiting for the identical job running elsewhere{where}", self.job["cost_usd_estimate"]), 0.05)

    def _stored(self, row: jobs.JobRow) -> tuple[Path, dict[str, Any]]:
        self.job.update(task_id=row.task_id, status="completed", cached=True, outputs=row.outputs,
                        result_file=row.result_path)
        self.report(f"using the stored result of task {row.task_id} (no request, no cost)", 0.9)
        return Path(row.result_path), row.extra

    # --- new jobs ---

    def video_upload(self, source: Path, content_hash: str) -> Upload:
        """The proxy (or the source) is made only if no earlier upload of it can be reused."""
        key = jobs.digest_of("upload", content_hash, repr(self.spec.proxy))

        def make() -> Path:
            with self.timer("encode"):
                path, proxied = media.prepare_upload(source, self.spec.proxy, self.work)
            self.job["proxy"] = proxied
            return Path(path)

        return key, make

    def audio_upload(self, audio: AudioInput, content_hash: str) -> Upload:
        return jobs.digest_of("upload", content_hash, "wav"), lambda: _write_audio(audio, self.work)

    def _upload(self, key: str, make: Callable[[], Path]) -> str:
        """An upload of the same content to the same provider within its retention is reused."""
        endpoint = self.client.http.base_url
        self.uploads.append(key)
        known = self.ticket.upload_url(endpoint, key)
        if known and self._still_there(known):
            self.job["uploads_reused"] += 1
            return known
        path = make()
        url = self.client.upload(path, self.waiter)
        size = path.stat().st_size
        self.job["uploaded_bytes"] += size
        self.ticket.remember_upload(endpoint, key, url, size)
        return url

    def _still_there(self, url: str) -> bool:
        """One HEAD (never retried): a provider may drop files before the documented retention."""
        try:
            self.client.http.request("HEAD", url, idempotent=False, waiter=self.waiter, timeout=(5.0, 10.0)).close()
        except ProviderError as exc:
            log.info("a previous upload is gone (%s); uploading again", exc)
            return False
        return True

    def _submit(self, body: dict[str, Any]) -> str:
        """The task id is journaled before anything else happens. A submit whose answer was lost may
        still have created a task: its row stays "unknown", and an identical run is told so."""
        spec = self.spec
        with self.timer("submit"):
            self.waiter.check()
            self.ticket.record("submitting")
            try:
                task_id = self.client.submit(spec.model_id, body, self.waiter)
            except Cancelled:
                self.ticket.record("intent")  # checked before anything was sent: nothing to pay for
                raise
            except ProviderError as exc:
                if exc.status is not None and 400 <= exc.status < 500:
                    self.ticket.record("intent")  # refused: no task was created (a 2xx we cannot read may have)
                    raise
                self.ticket.record("unknown", error=str(exc))
                hint = f"the job may have been created anyway; check your {spec.provider} dashboard before running it again"
                exc.args = (f"{exc} — {hint}",)
                raise
            except BaseException as exc:
                self.ticket.record("unknown", error=f"interrupted during the submit ({type(exc).__name__})")
                raise
            self.ticket.record("submitted", task_id=task_id)
            self.job.update(task_id=task_id, status="submitted")
            log.info("%s task %s submitted (%s)", spec.provider, task_id, spec.model_id)
        return task_id

    # --- waiting ---

    def _wait(self, task_id: str) -> TaskState:
        """Follow the task to its end; a failed one is journaled as such (and raised)."""
        spec = self.spec
        with self._unfinished_on_error(task_id), self.timer("wait"):
            state = self.client.wait(task_id, self.waiter, self._on_state(), wait_limits(), model_id=spec.model_id)
            if state.status != COMPLETED:
                self.ticket.record("failed", error=state.error or state.raw_status)
                self._forget_uploads()
                raise JobFailed(f"{spec.title} task {task_id} failed: {state.error or state.raw_status}", task_id=task_id)
        return state

    def _download(self, task_id: str, state: TaskState) -> tuple[Path, dict[str, Any]]:
        """The completed task's output, downloaded into the result store and journaled."""
        with self._unfinished_on_error(task_id):
            self.ticket.record("completed", outputs=state.outputs, extra=state.extra)
            self.job.update(status="completed", outputs=state.outputs)
            if state.inference_seconds is not None:
                self.job["inference_seconds"] = state.inference_seconds
            with self.timer("download"):
                self.report("downloading", 0.92)
                path = _download_output(self.client, self.spec, state, jobs.results_dir(self.work), self.waiter, task_id)
            self.ticket.record(result_path=str(path))
            self.job["result_file"] = str(path)
        return path, state.extra

    @contextlib.contextmanager
    def _unfinished_on_error(self, task_id: str) -> Iterator[None]:
        """Stopping before the result is stored leaves the row "detached" (an identical run resumes it;
        fetch gets it), or "cancelled" if the provider cancelled the remote job."""
        try:
            yield
        except Cancelled:
            if self.ticket.status != "completed":
                cancelled = _cancel_remote(self.client, task_id, self.spec.model_id)
                self.ticket.record("cancelled" if cancelled else "detached", error="cancelled by the user")
                self.job["status"] = self.ticket.status
            raise
        except BaseException as exc:
            if self.ticket.status not in ("completed", "failed"):
                self.ticket.record("detached", error=str(exc) or type(exc).__name__)
                self.job["status"] = "detached"
            raise

    def _on_state(self) -> Callable[[TaskState, float], None]:
        show = _state_reporter(self.report, self.job["cost_usd_estimate"], self.job)

        def on_state(state: TaskState, elapsed: float) -> None:
            if state.final:  # when the client noticed the end (the benchmark's detection latency)
                self.job.setdefault("final_seen_monotonic", time.monotonic())
            else:
                self.ticket.record(state.status)  # queued / running, written when it changes
            show(state, elapsed)

        return on_state

    def _forget_uploads(self) -> None:
        """A failed job may have failed on its media (e.g. a file the provider no longer has)."""
        for key in self.uploads:
            self.ticket.forget_upload(self.client.http.base_url, key)


def _ambiguous_message(spec: ModelSpec, row: jobs.JobRow) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.updated_at))
    return (
        f"An identical {spec.title} job was being submitted at {when} by a run that stopped before "
        f"{spec.provider} answered, so that job may exist (and be charged) although its task id was never "
        f"recorded. Check your {spec.provider} dashboard for it. Nothing was sent now; run again to submit "
        "anew (you will not be asked again)."
    )


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
    timer = _StageTimer()
    task_id = (task_id or "").strip()
    if provider not in PROVIDERS:
        raise ValidationError("provider", f"must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if not task_id:
        raise ValidationError("task_id", "is empty: copy it from the job info, an error message or `python -m sonify jobs`")
    if video is not None:
        validate_source(video)
    client = providers.client(provider)
    row = jobs.guarded("looking up the task", lambda journal: journal.find_task(provider, task_id))
    spec = _fetch_spec(provider, task_id, model, row, client, waiter)
    job: dict[str, Any] = {"provider": provider, "model": spec.model_id, "task_id": task_id, "status": "fetching",
                           "cost_usd_estimate": row.cost_usd if row else None, "fetched": True, "seconds": timer.seconds}
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sonify-fetch-") as tmp:
        work = Path(tmp)
        try:
            result_file, extra = _fetched_file(spec, client, task_id, row, waiter, report, timer, job, work)
            source = Path(media.source_to_file(video, work)) if video is not None else _known_source(row)
            with timer("decode"):
                samples, rate = _decode(result_file, task_id)
            samples, video_path = _fetched_video(spec, task_id, result_file, source, samples, rate, out_dir)
            job["source"] = str(source) if source is not None and spec.output == "audio" else None
        except SonifyError as exc:
            _attach_task(exc, spec, job)
            raise
    job["seconds"] = timer.seconds
    report("fetched", 1.0)
    return Result(audio=samples, sample_rate=rate, video_path=video_path, info=job, extra=extra)


def _fetch_spec(provider: str, task_id: str, model: str | None, row: jobs.JobRow | None, client: Any,
                waiter: Waiter) -> ModelSpec:
    """The task's model: the journal's record, else the one given, else (WaveSpeed) the task's own."""
    named = row.model if row is not None else None
    if named is None and not model and provider == "wavespeed":
        named = _wavespeed_model(client, task_id, waiter)
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


def _wavespeed_model(client: Any, task_id: str, waiter: Waiter) -> str | None:
    """A WaveSpeed task names its model in `data.model` of its result answer."""
    answer = client.http.json("GET", f"/api/v3/predictions/{task_id}/result", idempotent=True, waiter=waiter,
                              task_id=task_id)
    data = answer.get("data") if isinstance(answer, dict) else None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) and model else None


def _fetched_file(spec: ModelSpec, client: Any, task_id: str, row: jobs.JobRow | None, waiter: Waiter,
                  report: ProgressFn, timer: _StageTimer, job: dict[str, Any], work: Path) -> tuple[Path, dict[str, Any]]:
    stored = row.stored_result() if row is not None else None
    if stored is not None:
        report(f"using the stored result of task {task_id} (no request)", 0.9)
        job.update(status="completed", cached=True, result_file=str(stored))
        jobs.guarded("recording the delivery", lambda journal: journal.update(row.id, delivered=1))
        return stored, row.extra
    with timer("wait"):
        state = client.wait(task_id, waiter, _state_reporter(report, None, job), wait_limits(), model_id=spec.model_id)
    if state.status != COMPLETED:
        job["status"] = "failed"
        raise JobFailed(f"{spec.title} task {task_id} failed: {state.error or state.raw_status}", task_id=task_id)
    job.update(status="completed", outputs=state.outputs)
    with timer("download"):
        report("downloading", 0.92)
        path = _download_output(client, spec, state, jobs.results_dir(work), waiter, task_id)
    job["result_file"] = str(path)
    jobs.guarded("recording the fetched result", lambda journal: journal.record_fetched(
        spec.provider, spec.model_id, task_id, state.outputs, state.extra, str(path)))
    return path, state.extra


def _known_source(row: jobs.JobRow | None) -> Path | None:
    if row is not None and row.source_path and Path(row.source_path).is_file():
        return Path(row.source_path)
    return None


def _fetched_video(spec: ModelSpec, task_id: str, result_file: Path, source: Path | None, samples: np.ndarray,
                   rate: int, out_dir: Path) -> tuple[np.ndarray, Path | None]:
    """Sound for a video: on the source when known (fitted to it, as a run does); else the provider's
    own video if its file has a picture; else no video."""
    target = out_dir / f"{output_name(spec, task_id)}.mp4"
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
    finally:
        partial.unlink(missing_ok=True)


def _attach_task(exc: SonifyError, spec: ModelSpec, job: dict[str, Any]) -> None:
    """Once a task exists, every error names it and says how to fetch its result later."""
    task_id = job["task_id"]
    if not task_id:
        return
    exc.task_id = exc.task_id or task_id
    if "python -m sonify fetch" not in str(exc):
        exc.args = (f"{exc} — {recovery_hint(spec.provider, task_id)}",)


def _cancel_remote(client: Any, task_id: str, model_id: str) -> bool:
    """Ask the provider to stop a job the user cancelled (fal can; WaveSpeed cannot)."""
    try:
        return client.cancel(task_id, Waiter(), model_id=model_id)
    except SonifyError as exc:
        log.warning("could not cancel task %s: %s", task_id, exc)
        return False


def _mux_sound(source: Path, result_file: Path, samples: np.ndarray, rate: int, seconds: Fraction,
               target: Path) -> bool:
    """The source picture (copied) with the new sound: the provider's own AAC packets, copied and cut at
    the picture's end, when they reach that far; else `samples` (fitted to the picture) encoded as AAC.
    True if the sound was copied."""
    copied = False

    def write(path: Path) -> None:
        nonlocal copied
        copied = media.copy_mux(source, result_file, path, seconds)
        if not copied:
            media.mux(source, samples, rate, path)

    _write_atomically(target, write)
    return copied


class _StageTimer:
    """Collects wall-clock seconds per stage for the job info. A stage inside another (the proxy encode
    inside the upload) counts for itself only, so the stages add up to the whole."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._nested: list[float] = []  # per open stage: seconds spent in stages inside it

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            own = spent - self._nested.pop()
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + own, 4)
            if self._nested:
                self._nested[-1] += spent


def _done_text(job: dict[str, Any], seconds: dict[str, float]) -> str:
    """The last progress line: how long, where the time went (stages of 0.05 s or more), what it cost."""
    stages = ", ".join(f"{stage} {s:.1f} s" for stage, s in seconds.items() if s >= 0.05)
    text = f"done in {sum(seconds.values()):.1f} s" + (f" ({stages})" if stages else "")
    if job["cached"]:
        return f"{text} · the stored result of task {job['task_id']}, no new cost"
    return _with_cost(text, job["cost_usd_estimate"])


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
    return Path(media.write_wav(audio.samples, audio.sample_rate, work / "audio.wav"))


def _download_output(client: Any, spec: ModelSpec, state: TaskState, work: Path, waiter: Waiter, task_id: str) -> Path:
    """Pick the output to use (for sound, a plain audio file if there is one) and download it."""
    urls = state.outputs
    if spec.output == "audio":
        urls = sorted(urls, key=lambda u: not urlsplit(u).path.lower().endswith(AUDIO_EXTENSIONS))
    url = urls[0]
    suffix = Path(urlsplit(url).path).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"
    # Named by task: the result store keeps every job's file side by side.
    target = work / f"{output_name(spec, task_id)}-result{suffix}"
    return client.http.download(url, target, max_bytes=max_download_bytes(), waiter=waiter, task_id=task_id)


def _decode(path: Path, task_id: str) -> tuple[np.ndarray, int]:
    """The provider's result as audio; a file that is not decodable media is the provider's fault. It is
    not kept in the result store (an error page served as the file, say): the next run or fetch of the
    task downloads it again rather than reusing it."""
    try:
        return media.decode_audio(path)
    except ValidationError as exc:
        path.unlink(missing_ok=True)
        raise ProviderError(f"the result file is not usable audio ({exc})", task_id=task_id) from None


def output_name(spec: ModelSpec, task_id: str) -> str:
    """The stem of a job's files in the output folder."""
    return f"sonify-{spec.key}-{_safe(task_id)}"


def _safe(task_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", task_id)[:40]
