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
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .. import budget as budgets
from .. import heap, media, providers
from .. import journal as jobs
from ..atomic import write_atomically
from ..catalog import MODELS, PROVIDERS, ModelSpec, find, on_provider
from ..errors import BudgetExceeded, SonifyError, ValidationError
from ..loudness_target import Target
from ..media import frames, sound_check, windows
from ..media.sound_file import SoundFile
from ..media.video import validate_source
from ..providers.base import Provider, given_task_id
from ..settings import Settings, current
from ..waiter import Slots, Waiter
from . import messages, receipts, spend
from .assembly import Arrivals, Assembled, assemble
from .deliver import _mux_sound, deliver, output_name
from .job import FETCH_SECONDS, RemoteJob
from .messages import EMULATOR_MARK, attach_task, done_text, joined_info, label, take_info, with_cost
from .plan import Part, Plan, _checked_voice, _job_meta, prepare
from .several import Progress, WindowSound, check_count, failure, run_each, total_cost
from .types import (
    AudioInput,
    Delivery,
    JobInfo,
    Observer,
    ProgressFn,
    ResultBounds,
    RunContext,
    StageTimer,
)

log = logging.getLogger("sonify")


T = TypeVar("T")


@dataclass
class Result:
    # float32 [C, T]; a long clip's joined sound stays in its file until `audio` is asked for (a run that only
    # writes the result — the command line, a batch — never holds it whole)
    sound: np.ndarray | SoundFile
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

    @property
    def audio(self) -> np.ndarray:
        """The sound, float32 [C, T] (read from its file the first time, for a long clip)."""
        if isinstance(self.sound, SoundFile):
            self.sound = self.sound.load()
        return self.sound


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
    loudness: Target | None = None,
    run_id: str | None = None,
    fallback: str | None = None,
    settings: Settings | None = None,
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
    a picture that cannot be decoded leaves the task to the next run, never a second job. `loudness`: where to put
    each take's sound (sound_check.finish; a long clip's once its windows are joined); None: as generated. Every
    take is checked (JobInfo.sound); several takes are ordered flagged last (Result.takes, and the info's `best`).
    `run_id`: what its spend counts for against SONIFY_MAX_USD_PER_RUN (a batch's, a ComfyUI prompt's; default:
    this run alone). `fallback`: the provider the caller moves to if this run fails before any task exists
    (failover.py): its journal rows then say so (MOVED). `settings`: what the run reads, taken once (a batch's, a
    failover's: one for all its runs; default: settings.current() now), every variable checked before anything
    else."""
    settings = settings or current()
    said = on_progress or (lambda text, fraction: None)
    report = _labelled(said, settings)
    checked = spec.validate(params)
    check_count(spec, variations)
    validate_source(video)
    audio = _checked_voice(spec, audio, settings)
    timer = StageTimer()
    with timer("prepare"):  # frames: every value checked in the pass that hashes them
        picture_hash = frames.fingerprint(video.frames, video.fps) if video.frames is not None else None
    client = providers.client(spec.provider, settings)  # a missing key fails here, before any request
    pacer = providers.pacer(client, settings)

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sonify-") as tmp:
        ctx = RunContext(Waiter(is_cancelled), report, timer, Path(tmp), settings, slots, observe, pacer=pacer,
                         picture=picture, run_id=run_id or uuid.uuid4().hex,
                         fallback=fallback)
        with timer("prepare"):
            report("preparing video", 0.02)
            job = prepare(spec, checked, video, picture_hash, audio, client, ctx, variations=variations)
            job.loudness = loudness
        if variations > 1 or len(job.parts) > 1:
            try:
                result = _run_many(spec, client, ctx, job, out_dir)
            finally:
                if job.feed is not None:  # a long clip's cutting, stopped if it still runs (an error, a Cancel)
                    job.feed.stop()
        else:
            result = _run_take(spec, client, ctx, job, job.takes[0][0], out_dir)
    said(done_text(result.info), 1.0)  # marked by its job info when the emulator made the sound
    return result


def _run_take(spec: ModelSpec, client: Provider, ctx: RunContext, job: Plan, info: JobInfo,
              out_dir: Path) -> Result:
    """One job for the whole clip, from its journal claim to its sound on the picture."""
    part = job.parts[0]

    def fit_and_mux(delivery: Delivery) -> Result:
        samples, final_video = deliver(spec, delivery, job.source, job.clip.duration, info, ctx.timer, out_dir,
                                       job.loudness)
        return Result(samples, delivery.sample_rate, final_video, {}, delivery.extra, picture=delivery.picture)

    result, _ = _remote(spec, client, ctx, job, part, info, fit_and_mux)
    result.info = info.as_dict()
    return result


def _run_window(spec: ModelSpec, client: Provider, ctx: RunContext, job: Plan, p: int,
                info: JobInfo) -> tuple[WindowSound, jobs.Ticket]:
    """Window p's job, once the window is cut: its verified result (its file: the samples are let go until it is
    joined), and its ticket, which the caller marks delivered once the take's windows are joined onto the picture
    (until then a re-run resumes or reuses it, never pays for it again)."""
    part = job.window(spec, p, ctx.waiter)
    try:
        return _remote(spec, client, ctx, job, part, info,
                       lambda delivery: WindowSound.of(delivery, part.bounds.seconds), final=False)
    finally:
        heap.give_back()  # what its sound's check freed: not kept by this thread's heap (see heap.py)


def _remote(spec: ModelSpec, client: Provider, ctx: RunContext, job: Plan, part: Part, info: JobInfo,
            finish: Callable[[Delivery], T], final: bool = True) -> tuple[T, jobs.Ticket]:
    """One remote job under its journal ticket; `finish` (fit, mux) before the row is marked delivered (when
    `final`; else the caller marks it)."""
    wait_text = with_cost("waiting for an identical job in progress", info.cost_usd_estimate)
    source_path = job.source_path if part.span is None else None  # a window's sound is not the clip's
    meta = _job_meta(spec, client.http.base_url, info, part.hashes, source_path)
    info.emulator = info.emulator or ctx.settings.emulator is not None
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


def _run_many(spec: ModelSpec, client: Provider, ctx: RunContext, job: Plan, out_dir: Path) -> Result:
    """Every job of the run — each take's, and for a long clip each window's — at once, within the account's
    limits (its pacer's) and a batch's slots. The budget is checked for their sum before any is claimed (the caps
    for those that will be sent: a stored take costs nothing). The first job to upload a file uploads it; the others
    reuse it. A long clip's windows are joined per take as they arrive (assembly.py); a long clip from a file has
    its windows' jobs start as each window is cut, when what the windows may cost at most is within the limits
    (else once every window is cut and priced, the limits then deciding on that)."""
    count, parts = len(job.takes), len(job.parts)
    grid = [(k, p) for k in range(count) for p in range(parts)]
    try:
        _check_spend(spec, client, ctx, job, grid)
    except BudgetExceeded:
        if job.feed is None:
            raise
        for p in range(parts):  # every window cut and priced as it is: the limits decide on that
            job.window(spec, p, ctx.waiter)
        _check_spend(spec, client, ctx, job, grid)
    progress = Progress(ctx.report, [label(k, count, p, parts) for k, p in grid])
    upload_locks = [threading.Lock() for _ in job.parts]  # the takes of a part send the same files
    arrivals = [Arrivals(parts) for _ in range(count)] if parts > 1 else []  # a long clip's takes: assembled as
    # their windows arrive (assembly.py)

    # A job's row is MOVED only where the run will move with it: a run of several jobs moves only if none of them
    # can have a task (below), which no one job knows, so their rows keep the failure as it was.
    def call(index: int) -> Callable[[], Any]:
        k, p = grid[index]
        own = RunContext(ctx.waiter, progress.of(index), StageTimer(), ctx.work, ctx.settings, ctx.slots, ctx.observe,
                         upload_locks[p], ctx.pacer, run_id=ctx.run_id, fallback=ctx.fallback if len(grid) == 1 else None)
        if parts == 1:
            return lambda: _run_take(spec, client, own, job, job.takes[k][0], out_dir)
        return lambda: _posted(arrivals[k], p, lambda: _run_window(spec, client, own, job, p, job.takes[k][p]))

    with ThreadPoolExecutor(max(1, len(arrivals)), thread_name_prefix="sonify-assembly") as assemblers:
        assemblies = [assemblers.submit(assemble, spec, job, take, ctx.waiter, ctx.work) for take in arrivals]
        with ctx.timer("jobs"):
            outcomes = run_each([call(i) for i in range(len(grid))], _jobs_in_progress(ctx))
            if job.feed is not None:
                ctx.timer.add("encode", job.feed.seconds)  # the windows cut while the jobs went
    results: dict[int, Result] = {}
    errors: list[SonifyError] = []
    failed: list[dict[str, Any]] = []
    for k in range(count):  # a take is delivered when all its windows are, then joined
        mine = outcomes[k * parts:(k + 1) * parts]
        error = next((p for p, o in enumerate(mine) if isinstance(o, SonifyError)), None)
        try:
            if error is not None:
                raise mine[error]
            results[k] = mine[0] if parts == 1 else _joined(spec, job, job.takes[k], mine, assemblies[k], ctx.timer,
                                                            out_dir)
        except SonifyError as exc:
            part = error if error is not None else 0
            errors.append(exc)
            failed.append(failure(spec, k, job.takes[k][part].as_dict(), exc, part if parts > 1 else None))
    if not results:
        if not all(isinstance(o, SonifyError) and o.no_task for o in outcomes):
            # some job of the run (another window of a take, say) may have a task: the run stays at this provider
            errors[0].no_task = None
        raise errors[0]  # nothing came: the first error, as a single job's (each is in the log)
    if not failed and job.run is not None:
        jobs.forget_seeds(job.run)  # every take delivered: the next run draws anew
    if count == 1:
        results[0].info["seconds"] = ctx.timer.seconds
        return results[0]
    for k, result in results.items():
        result.info["take"] = k + 1
    delivered = _ordered(list(results.values()))
    first = delivered[0]
    info = joined_info(spec, [r.info for r in delivered], ctx.timer.seconds, failed)
    return Result(first.sound, first.sample_rate, first.video_path, info, first.extra, takes=delivered, failed=failed)


JOBS_BEYOND_SLOTS = 2  # a run's jobs in progress beyond the account's at-once slots: uploaded, next in line


JOBS_UNPACED = 8  # a run's jobs in progress where the account's limit is not known (an API on this machine)


def _jobs_in_progress(ctx: RunContext) -> int:
    """How many of a run's jobs (takes, windows) are in progress at once, each on a thread of its own: the
    account's at-once slots and a few more to keep them busy. The others wait their turn before they upload, so
    a long clip's threads, and the memory each keeps, do not grow with its length."""
    limits = ctx.pacer.limits if ctx.pacer is not None else None
    return (limits.at_once if limits is not None else JOBS_UNPACED) + JOBS_BEYOND_SLOTS


def _ordered(delivered: list[Result]) -> list[Result]:
    """The takes flagged last (sound_check.order), each told its place in `audio` and why it stands there."""
    flags = [r.info["sound"]["flags"] if r.info.get("sound") else [] for r in delivered]
    ordered = [delivered[k] for k in sound_check.order(flags)]
    best = next((r for r in ordered if r.info.get("sound") and not r.info["sound"]["flags"]), None)
    for position, result in enumerate(ordered, 1):
        result.info["position"] = position
        if result.info.get("sound"):
            result.info["why"] = sound_check.why(position, result.info["sound"], result is best)
    return ordered


def _check_spend(spec: ModelSpec, client: Provider, ctx: RunContext, job: Plan,
                 grid: list[tuple[int, int]]) -> None:
    """The price limit on the run's sum, then the caps on what it will send (BudgetExceeded)."""
    count, parts = len(job.takes), len(job.parts)
    what = messages.what(count, parts)
    budget = spend.budget(ctx.settings)
    budgets.check_job(budget, total_cost([job.takes[k][p].cost_usd_estimate for k, p in grid]),
                      f"the limit applies to a node run's sum: its {what} are together")
    sent = _to_be_sent(spec, client, job, grid) if spend.counted(ctx.settings) else []
    if sent:
        known = [cost for cost in sent if cost is not None]
        spend.check_run(client, budget, round(sum(known), 6) if known else None, ctx.run_id,
                        f"this run's {what}", ctx.waiter)


def _to_be_sent(spec: ModelSpec, client: Provider, job: Plan, grid: list[tuple[int, int]]) -> list[float | None]:
    """The estimates of the run's jobs that a claim now would send (not a stored result, a resumed task or one an
    identical run is making): what the run will spend, as far as the journal tells (a window not cut yet: all of
    it)."""
    def sent(k: int, p: int) -> bool:
        part = job.parts[p]
        if job.feed is not None and part.span is None:  # a window not cut yet
            return True
        meta = _job_meta(spec, client.http.base_url, job.takes[k][p], part.hashes,
                         job.source_path if part.span is None else None)
        return jobs.guarded("looking up a job", lambda journal: journal.would_submit(meta.fingerprint, meta.cacheable),
                            True)

    return [job.takes[k][p].cost_usd_estimate for k, p in grid if sent(k, p)]


def _posted(arrivals: Arrivals, p: int, run: Callable[[], T]) -> T:
    """run() (window p's job), its outcome posted to its take's assembly whatever it is."""
    try:
        outcome = run()
    except BaseException as exc:
        arrivals.post(p, exc)
        raise
    arrivals.post(p, outcome)
    return outcome


def _joined(spec: ModelSpec, job: Plan, infos: list[JobInfo], windows_done: list[tuple[WindowSound, jobs.Ticket]],
            assembly: Future[Assembled], timer: StageTimer, out_dir: Path) -> Result:
    """One take of a long clip, from its assembly (its windows joined and checked, and where it could be, put on
    the source picture as they came): the picture with the sound, under the take's tags; then its windows' rows are
    marked delivered."""
    try:
        result = _delivered(spec, job, infos, assembly.result(), windows_done[0][0].extra, timer, out_dir)
    except SonifyError as exc:
        attach_task(exc, spec, infos[0])
        raise
    for _, ticket in windows_done:
        ticket.record(delivered=1)
    return result


def _delivered(spec: ModelSpec, job: Plan, infos: list[JobInfo], assembled: Assembled, extra: dict[str, Any],
               timer: StageTimer, out_dir: Path) -> Result:
    for stage, seconds in assembled.timer.seconds.items():
        timer.add(stage, seconds)
    info = take_info(infos, [part.span for part in job.parts], job.fps, job.clip.duration)
    info["sound"] = assembled.sound_info
    sound = assembled.sound
    final_video = None
    if job.source is not None:
        final_video = out_dir / f"{output_name(spec, infos[0].task_id or '')}-joined.mp4"
        tags = receipts.tags(info, final_video)
        with timer("mux"):
            if assembled.untagged is not None:  # its packets copied under the tags
                write_atomically(final_video, lambda path: media.rewrap(assembled.untagged, path, metadata=tags))
                assembled.untagged.unlink(missing_ok=True)
            else:
                write_atomically(final_video, lambda path: media.mux_blocks(job.source, sound.blocks(), sound.channels,
                                                                            sound.rate, path, metadata=tags))
    return Result(sound, sound.rate, final_video, info, extra)


def _labelled(report: ProgressFn, settings: Settings) -> ProgressFn:
    """In emulator mode every line the user sees says the sound is the emulator's."""
    if settings.emulator is None:
        return report
    return lambda text, fraction: report(f"{EMULATOR_MARK} · {text}", fraction)


def known_job(spec: ModelSpec, checked: dict[str, Any], video: media.VideoSource, audio: AudioInput | None,
              endpoint: str, settings: Settings) -> jobs.JobRow | None:
    """The journal's row a one-job run of `spec` (checked parameters) on `video` at `endpoint` would reuse or resume
    (its result stored, its task unfinished), found without a request or an upload as `run` fingerprints it; None
    when there is none, or the run would be several jobs (a long clip's windows)."""
    clip = media.frames_info(video.frames, video.fps) if video.frames is not None else media.probe(video.path)
    seconds = float(clip.duration)
    if spec.output == "audio" and windows.is_long(spec.window, seconds):
        return None
    hashes = {"video": frames.fingerprint(video.frames, video.fps) if video.frames is not None
              else jobs.hash_file(video.path)}
    voice = _checked_voice(spec, audio, settings)
    if voice is not None:
        hashes["audio"] = jobs.hash_array(voice.samples, voice.sample_rate)
    info = JobInfo(spec.provider, spec.model_id, params=spec.resolve(checked, seconds))
    meta = _job_meta(spec, endpoint, info, hashes, None)
    return jobs.guarded("looking up the job", lambda journal: journal.waiting_for(meta.fingerprint, meta.cacheable))


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
    settings = current()  # read once: the fetch reads only these
    report = on_progress or (lambda text, fraction: None)
    waiter = Waiter(is_cancelled)
    if provider not in PROVIDERS:
        raise ValidationError("provider", f"must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    task_id = given_task_id(task_id)  # before any use in a URL, a path or a message
    if video is not None:
        validate_source(video)
    client = providers.client(provider, settings)
    row = jobs.guarded("looking up the task", lambda journal: journal.find_task(provider, task_id))
    spec = _fetch_spec(provider, task_id, model, row, client, waiter)
    info = JobInfo(provider, spec.model_id, task_id=task_id, status="fetching",
                   cost_usd_estimate=row.cost_usd if row else None, params=row.params if row else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    with tempfile.TemporaryDirectory(prefix="sonify-fetch-") as tmp:
        ctx = RunContext(waiter, report, timer, Path(tmp), settings)
        try:
            job = RemoteJob(spec, client, ctx, info, ResultBounds.expected(FETCH_SECONDS))
            record = jobs.FetchedTask(provider, spec.model_id, task_id, row)
            delivery = job.fetch(record)
            source = Path(media.source_to_file(video, ctx.work)) if video is not None else _known_source(row)
            samples, video_path = _fetched_video(spec, info, delivery, source, out_dir)
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
    choices = ", ".join(k for k, m in MODELS.items() if on_provider(m, provider) is not None)
    if not chosen:
        raise ValidationError("model", f"is needed to find {provider} task {task_id}: one of {choices}")
    spec = find(provider, chosen)
    if spec is None:
        raise ValidationError("model", f"{chosen!r} is not a {provider} model Sonify knows (one of {choices})")
    if model and named and find(provider, model) is not spec:
        log.info("task %s is a %s job (journal); using that rather than %s", task_id, spec.key, model)
    return spec


def _known_source(row: jobs.JobRow | None) -> Path | None:
    if row is not None and row.source_path and Path(row.source_path).is_file():
        return Path(row.source_path)
    return None


def _fetched_video(spec: ModelSpec, info: JobInfo, delivery: Delivery, source: Path | None,
                   out_dir: Path) -> tuple[np.ndarray, Path | None]:
    """Sound for a video: on the source when known (fitted to it, as a run does); else the provider's
    own video if its file has a picture; else no video. Either carries the task's receipt."""
    target = out_dir / f"{output_name(spec, info.task_id or '')}.mp4"
    samples, rate, result_file = delivery.samples, delivery.sample_rate, delivery.path
    if spec.output == "audio" and source is not None:
        seconds = media.probe(source).duration
        samples = media.fit_length(samples, rate, seconds)
        _mux_sound(source, result_file, samples, rate, seconds, target, receipts.tags(info.as_dict(), target))
        return samples, target
    try:
        media.probe(result_file)
    except ValidationError:
        return samples, None
    target = target.with_suffix(result_file.suffix)
    tags = receipts.tags(info.as_dict(), target)
    write_atomically(target, lambda path: media.copy_tagged(result_file, path, tags))
    return samples, target
