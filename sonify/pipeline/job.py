"""One remote job: one task's life at the provider, each step journaled before the next.

claim → upload → submit → wait → download → verify. Resuming a known task (an identical run after a
crash, or `fetch` by task id) is the same job started at the wait. What the user is shown of it is a
`JobInfo`, filled in as the job goes and serialised once by the pipeline. This module sits below the
pipeline and imports nothing from it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import budget as budgets
from .. import journal, media
from ..catalog import MAX_FPS, ModelSpec
from ..errors import (
    Cancelled,
    ConfigurationError,
    JobFailed,
    JobTimedOut,
    ProviderError,
    Refused,
    SonifyError,
    Unreachable,
    ValidationError,
)
from ..journal.claims import ClaimKind, Status
from ..providers import webhooks
from ..providers.base import COMPLETED, CancelOutcome, Provider, TaskState, WaitLimits
from ..providers.pacing import Deadline
from ..providers.schedule import History
from ..settings import EMULATOR_TITLE, Settings, state_dir
from ..waiter import Waiter
from . import spend
from .deliver import output_name
from .lost_submit import (
    _ambiguous_message,
    _candidates_message,
    _clock,
    _still_unknown_note,
    _unlisted_message,
    _unlisted_note,
)
from .messages import cancel_note, state_reporter, with_cost
from .types import Delivery, JobInfo, JobRecord, ResultBounds, RunContext, Sent, Upload, UploadChoice

log = logging.getLogger("sonify")


AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".opus")


FETCH_SECONDS = 600.0  # the longest result taken by task id when the job's length is not known


CANCEL_SECONDS = 5.0  # the most a remote cancel may take (retries included) once the user cancelled


LISTING_SLACK = 30.0  # seconds either side of a lost submit's window: clocks differ


# A lost submit's task is looked for in the listing LOOK_FIRST s after the first look, each next look LOOK_GROWTH
# times further off, at most LOOK_MOST apart (a listing that shows finished tasks only is looked at until the job's
# queue-and-run bound has passed: about a hundred looks for the default 45 minutes).
LOOK_FIRST, LOOK_GROWTH, LOOK_MOST = 1.0, 1.5, 30.0


SUBMIT_SECONDS = 75.0  # the longest a submit can take (http.TIMEOUT): a crashed run's window


def wait_limits(settings: Settings) -> WaitLimits:
    return WaitLimits(queue_seconds=settings.queue_seconds, run_seconds=settings.run_seconds)


_histories: dict[Path | None, History] = {}


_histories_lock = threading.Lock()


def run_times() -> History:
    """The learned run times of the state folder's journal, one History per folder (a command that points
    SONIFY_STATE_DIR elsewhere starts from what that folder knows)."""
    try:
        folder: Path | None = state_dir()
    except OSError:
        folder = None
    with _histories_lock:
        if folder not in _histories:
            _histories[folder] = History(journal.RunTimeStore())
        return _histories[folder]


@dataclass(frozen=True)
class Candidates:
    """The listed tasks a lost submit may have created (no other row owns them), and whether another submit of the
    model sent in the same seconds has no answer recorded (`shared`: any of them may be its)."""

    ids: list[str]
    shared: bool

    @property
    def one(self) -> bool:
        """Exactly one task, and no other submit it may belong to: it is this submit's."""
        return len(self.ids) == 1 and not self.shared


class RemoteJob:
    """One task at the provider (see the module docstring). `run` claims the job's fingerprint in the
    journal and does what the claim says; `resume` follows a known task; `fetch` is that resume, or
    the stored result."""

    def __init__(self, spec: ModelSpec, client: Provider, run: RunContext, info: JobInfo,
                 bounds: ResultBounds) -> None:
        self.spec, self.client, self.ctx, self.info, self.bounds = spec, client, run, info, bounds
        self.record: JobRecord | None = None  # set by run() or fetch()
        self._ticket: journal.Ticket | None = None  # run() only: the uploads it made are recorded there
        self._uploads: list[str] = []  # media keys of the uploads this job uses
        self._turn: Deadline | None = None  # how long a new job waits for its turn at the account (the queue bound)

    # --- a run's job ---

    def run(self, ticket: journal.Ticket, uploads: dict[str, Upload | UploadChoice]) -> Delivery:
        """Claim, then reuse, resume or start the job. `ticket` is this job's record; `uploads`: "video"
        (and "audio") as (media key, a function making the file to upload), or an UploadChoice."""
        self.attach(ticket)
        claim = ticket.claim(self.ctx.waiter, self._on_busy)
        if claim.kind == ClaimKind.STORED:
            return self._stored(claim.row)
        if claim.kind == ClaimKind.AMBIGUOUS:
            task_id = self.reconcile(claim.row.request, claim.row.updated_at)
            if task_id is not None:
                return self._resume_claimed(task_id)
        if claim.kind == ClaimKind.RESUME:
            return self._resume_claimed(claim.row.task_id)
        with contextlib.ExitStack() as at_provider:
            with self._until_task():
                body = self.send(uploads)
                at_provider.enter_context(self._slot(new=True))
                task_id = self.submit(body)
            state = self.wait(task_id)
        return self.download(task_id, state)

    @contextlib.contextmanager
    def _until_task(self) -> Iterator[None]:
        """Up to the task id: an error after which no task can exist at the provider carries why (`no_task`), so that
        a run may move to another provider (failover.py); with one to move to, the row is MOVED, saying why."""
        try:
            yield
        except SonifyError as exc:
            reason = no_task_reason(exc, self.record.status)
            if reason is not None:
                exc.no_task = reason
                if self.ctx.fallback:
                    self.record.record(Status.MOVED, error=f"{reason}; moved to {self.ctx.fallback}")
            raise

    # --- the steps, one by one (a run above; a Temporal workflow's activities, temporal_worker.py) ---

    def attach(self, ticket: journal.Ticket) -> None:
        """The record the steps below write to: a run's journal row, or (Temporal) a ticket without one."""
        self.record = self._ticket = ticket

    def send(self, uploads: dict[str, Upload | UploadChoice]) -> dict[str, Any]:
        """Within the budget (and counted in the ledger), every input uploaded (or an earlier upload reused): the
        body to submit."""
        self._claim_spend()
        body = self.spec.request_body(self.info.params or {})
        with self._uploading(), self.ctx.timer("upload"):
            self.ctx.report(with_cost("uploading", self.info.cost_usd_estimate), 0.05)
            for name, upload in uploads.items():
                field_name = self.spec.audio_field if name == "audio" else self.spec.video_field
                choice = upload if isinstance(upload, UploadChoice) else _one_file(*upload)
                body[field_name] = self._upload(self._ticket, choice)
        return body

    def _claim_spend(self) -> None:
        """Before anything is uploaded: the job's estimate within SONIFY_MAX_USD_PER_JOB and the balance floor, then
        checked against the ledger's caps and counted in it, atomically with every process sharing the journal
        (BudgetExceeded names the cap, the sum so far and the estimate: nothing is sent)."""
        estimate, budget = self.info.cost_usd_estimate, spend.budget(self.ctx.settings)
        budgets.check_job(budget, estimate)
        if not spend.counted(self.ctx.settings):
            return
        spend.check_balance(self.client, budget, estimate, "this job", self.ctx.waiter)
        self._ticket.claim_spend(estimate, self.ctx.run_id, budget, "this job")

    def _resume_claimed(self, task_id: str) -> Delivery:
        """An earlier run's task: a provider that no longer has it (expired, another account) makes the
        row failed, so the next run submits anew."""
        try:
            return self.resume(task_id)
        except ProviderError as exc:
            if exc.status != 404:
                raise
            self.record.record(Status.FAILED, error=f"the provider no longer has this task ({exc})")
            raise JobFailed(
                f"{self.spec.provider} no longer has task {task_id}, which an earlier run left unfinished; "
                "it will not be resumed again — run once more to submit a new job", task_id=task_id,
            ) from None

    def _on_busy(self, row: journal.JobRow) -> None:
        where = f" (task {row.task_id})" if row.task_id else ""
        self.ctx.report(with_cost(f"waiting for the identical job running elsewhere{where}",
                                  self.info.cost_usd_estimate), 0.05)

    def _uploading(self) -> contextlib.AbstractContextManager[None]:
        """The run's upload lock, if it has one (takes: the first uploads, the others reuse its files)."""
        lock = self.ctx.upload_lock
        if lock is None:
            return contextlib.nullcontext()
        return self.ctx.waiter.holding(lock, lambda: self.ctx.report("waiting for another job's upload of the same file", 0.05))

    @contextlib.contextmanager
    def _slot(self, new: bool = False) -> Iterator[None]:
        """For the time the job is at the provider: one of the shared slots (a batch's), if any, then one of the
        account's (its pacer's) — a `new` job waits for its turn there until the queue bound, a task already
        there is counted without waiting. The waits are the "slot" stage."""
        slots, pacer = self.ctx.slots, self.ctx.pacer
        with contextlib.ExitStack() as held:
            if slots is not None:
                text = with_cost("waiting for one of the running jobs to finish", self.info.cost_usd_estimate)
                with self.ctx.timer("slot"):
                    held.enter_context(self.ctx.waiter.holding(slots, lambda: self.ctx.report(text, 0.08)))
            if pacer is not None and new:
                with self.ctx.timer("slot"):
                    held.enter_context(pacer.hold(self.ctx.waiter, self._turn_ends(), self._on_pace))
            elif pacer is not None:
                held.enter_context(pacer.occupy())
            yield

    def _turn_ends(self) -> Deadline:
        """A new job waits for its turn (slot, start, a 429's hold) at most the queue bound, from its first wait."""
        if self._turn is None:
            self._turn = Deadline.after(self.ctx.settings.queue_seconds)
        return self._turn

    def _on_pace(self, text: str) -> None:
        self.ctx.report(with_cost(text, self.info.cost_usd_estimate), 0.08)

    def _upload(self, ticket: journal.Ticket, upload: UploadChoice) -> str:
        """An upload of the same content to the same provider within its retention is reused."""
        endpoint = self.client.http.base_url
        for key in upload.keys:
            known = ticket.upload_url(endpoint, key, self.client.upload_seconds)
            if known and self._still_there(known):
                self._uploads.append(key)
                self.info.uploads_reused += 1
                self.info.proxy |= key in upload.proxies
                return known
        sent = upload.send(self.client, self.ctx)
        self._uploads.append(sent.key)
        self.info.uploaded_bytes += sent.size
        self.info.proxy |= sent.proxy
        self.info.upload_choice = sent.choice or self.info.upload_choice
        ticket.remember_upload(endpoint, sent.key, sent.url, sent.size)
        return sent.url

    def _still_there(self, url: str) -> bool:
        """One HEAD (never retried): a provider may drop files before the documented retention."""
        try:
            self.client.http.request("HEAD", url, idempotent=False, waiter=self.ctx.waiter, timeout=(5.0, 10.0),
                                     auth=False).close()
        except ProviderError as exc:
            log.info("a previous upload is gone (%s); uploading again", exc)
            return False
        return True

    def submit(self, body: dict[str, Any]) -> str:
        """The submit, within the account's pace (ctx.pacer): sent when its start is due, and sent again after a
        429 — the one answer that certifies no task was created — once the provider's Retry-After (else the rest of
        the window) has passed, until the queue bound. Nothing else is ever sent twice (see _submit_once). Without
        a pacer (a Temporal clip) a 429 is raised as Refused, for the workflow to wait out."""
        pacer = self.ctx.pacer
        while True:
            started = None
            if pacer is not None:
                with self.ctx.timer("slot"):
                    started = pacer.start(self.ctx.waiter, self._turn_ends(), self._on_pace)
            try:
                return self._submit_once(body)
            except Refused as exc:
                if pacer is None:
                    raise
                wait = pacer.refused(started, exc.retry_after)
                log.info("%s refused a submit (%s); sending it again in %.1f s", self.spec.provider, exc, wait)
            finally:
                if pacer is not None:
                    pacer.answered(started)  # a refused start is gone already

    def _submit_once(self, body: dict[str, Any]) -> str:
        """The task id is journaled before anything else happens. A submit whose answer was lost may
        still have created a task: its row stays UNKNOWN, and an identical run is told so."""
        spec, record = self.spec, self.record
        with self.ctx.timer("submit"):
            self.ctx.waiter.check()
            sent = time.time()
            # or nothing is sent: an unrecorded submit could be paid twice
            self._ticket.record_submitting({"body": body, "sent_at": sent})
            try:
                task_id = self.client.submit(spec.model_id, body, self.ctx.waiter)
            except (Cancelled, Unreachable):
                record.record(Status.INTENT)  # checked before anything was sent, or never connected: nothing to pay for
                raise
            except ProviderError as exc:
                if exc.status is not None and 400 <= exc.status < 500:
                    record.record(Status.INTENT)  # refused: no task was created (a 2xx we cannot read may have)
                    raise
                record.record(Status.UNKNOWN, error=str(exc))
                task_id = self._recover(body, sent, time.time(), exc)
            except BaseException as exc:
                record.record(Status.UNKNOWN, error=f"interrupted during the submit ({type(exc).__name__})")
                raise
            record.record(Status.SUBMITTED, task_id=task_id, error=None)
            self.info.task_id, self.info.status = task_id, Status.SUBMITTED
            self._event("submitted")
            log.info("%s task %s submitted (%s)", spec.provider, task_id, spec.model_id)
        return task_id

    # --- a submit whose answer was lost ---

    def _recover(self, body: dict[str, Any], since: float, until: float, lost: ProviderError) -> str:
        """The task the lost submit created, adopted from the provider's listing — or an error naming what
        the listing shows. Never a second submit while a task may be ours: where the listing shows finished tasks
        only (fal), the row stays open (UNKNOWN) unless the task shows before the job's bound has passed."""
        spec = self.spec
        self.ctx.report(f"the submit's answer was lost; asking {spec.provider} which task it created", 0.08)
        try:
            candidates = self._candidates(body, since, until, self._look_deadline(since, at_least=LOOK_FIRST))
        except Cancelled as exc:
            exc.args = (f"{exc} — {_still_unknown_note(spec)}",)
            raise
        except SonifyError as exc:
            hint = (f"the job may have been created anyway, and {spec.provider}'s task listing could not be read "
                    f"({exc}); check your {spec.provider} dashboard before running it again")
            lost.args = (f"{lost} — {hint}",)
            raise lost from None
        if candidates.one:
            log.info("%s task %s adopted: the submit's answer was lost", spec.provider, candidates.ids[0])
            return candidates.ids[0]
        if candidates.ids:
            self.record.record(Status.UNKNOWN_REPORTED)
            raise JobFailed(_candidates_message(spec, candidates.ids, candidates.shared)) from None
        if self.client.lists_unfinished:
            self.record.record(Status.INTENT, error=f"no task was created: {lost}")
            none = f"{spec.provider} lists no task from this submit, so none was created and nothing is charged"
            lost.args = (f"{lost} — {none}; run it again",)
            raise lost from None
        self.record.record(Status.UNKNOWN, error=_unlisted_note(spec, str(lost)))
        raise JobTimedOut(_unlisted_message(spec, since, until, f"its answer was lost ({lost})")) from None

    def reconcile(self, request: dict[str, Any] | None, when: float) -> str | None:
        """An earlier run stopped between sending the submit and recording its task id (`request`: {body,
        sent_at} as recorded; `when`: the last record of it): the task it created, adopted (returned), or None
        when none was created (this run submits). Where the listing shows finished tasks only (fal), it is looked
        at until the job's bound has passed since the submit; none then leaves the row open if this run did that
        looking, and otherwise tells the user once (UNKNOWN_REPORTED: the next identical run submits anew)."""
        request = request or {}
        if not isinstance(request.get("body"), dict) or not isinstance(request.get("sent_at"), (int, float)):
            self.record.record(Status.UNKNOWN_REPORTED)  # a journal from before requests were recorded
            raise JobFailed(_ambiguous_message(self.spec, when))
        since = float(request["sent_at"])
        deadline = self._look_deadline(since)
        looked_before = time.time() >= deadline  # the task, if any, had its whole bound to show up in the listing
        self.ctx.report(f"an earlier run's submit has no recorded answer; asking {self.spec.provider} about it", 0.05)
        try:
            candidates = self._candidates(request["body"], since, since + SUBMIT_SECONDS, deadline)
        except Cancelled:
            raise
        except SonifyError as exc:
            self.record.record(Status.UNKNOWN_REPORTED)
            raise JobFailed(f"{_ambiguous_message(self.spec, when)} ({self.spec.provider}'s task listing could not "
                            f"be read: {exc})") from None
        if candidates.one:
            self.record.record(Status.SUBMITTED, task_id=candidates.ids[0], error=None)
            log.info("%s task %s adopted from an earlier run's unanswered submit", self.spec.provider, candidates.ids[0])
            return candidates.ids[0]
        if candidates.ids:
            self.record.record(Status.UNKNOWN_REPORTED)
            raise JobFailed(_candidates_message(self.spec, candidates.ids, candidates.shared))
        if self.client.lists_unfinished:
            self.record.record(Status.INTENT, error=None)
            return None
        unanswered = "an earlier run sent it and got no answer"
        if looked_before:
            self.record.record(Status.UNKNOWN_REPORTED)
            raise JobFailed(_unlisted_message(self.spec, since, since + SUBMIT_SECONDS, unanswered, again=True))
        self.record.record(Status.UNKNOWN, error=_unlisted_note(self.spec, unanswered))
        raise JobTimedOut(_unlisted_message(self.spec, since, since + SUBMIT_SECONDS, unanswered))

    def _look_deadline(self, since: float, at_least: float = 0.0) -> float:
        """Until when (time.time()) a lost submit's task is looked for: a listing that shows it at once is looked at
        for `at_least` seconds more; one that shows finished tasks only, until the job's queue-and-run bound has
        passed since the submit (`since`), when a task it made would have finished."""
        if self.client.lists_unfinished:
            return time.time() + at_least
        return since + self.ctx.settings.queue_seconds + self.ctx.settings.run_seconds

    def _candidates(self, body: dict[str, Any], since: float, until: float, deadline: float) -> Candidates:
        """Tasks the provider lists for this submit (LISTING_SLACK either side for clock differences) that no
        other journal row owns; looked up again while none shows, or while another submit of the model sent in the
        same seconds has no answer recorded (WaveSpeed's listing carries no inputs: its task and this one's look
        alike), until `deadline` (time.time()), LOOK_FIRST s after the first look and then further apart
        (LOOK_GROWTH, LOOK_MOST) — at once when a verified webhook delivery of the provider comes in (a task has
        just finished: the listing shows it now)."""
        gap = LOOK_FIRST
        long_look = not self.client.lists_unfinished
        with webhooks.WAKEUPS.watching(self.spec.provider) as delivered:
            while True:
                delivered.clear()
                found = self.client.find_tasks(self.spec.model_id, body, since - LISTING_SLACK, until + LISTING_SLACK,
                                               self.ctx.waiter)
                # asked after the listing and before the owners: a submit listed by then either has its row's task
                # id now (owned elsewhere) or is counted here (its answer still to come, or lost)
                shared = self._ticket.unanswered_elsewhere(since - 2 * LISTING_SLACK, until + 2 * LISTING_SLACK)
                candidates = [task_id for task_id in dict.fromkeys(found) if not self._ticket.owned_elsewhere(task_id)]
                left = deadline - time.time()
                if (candidates and not shared) or left <= 0:
                    return Candidates(candidates, shared)
                if long_look:
                    self.ctx.report(f"the submit's answer was lost; {self.spec.provider} lists a request only once it "
                                    f"has finished: looking for it until {_clock(deadline)} (nothing is sent again)",
                                    0.08)
                self.ctx.waiter.sleep(min(gap, left), delivered)
                gap = min(gap * LOOK_GROWTH, LOOK_MOST)

    # --- any job with a task ---

    def resume(self, task_id: str) -> Delivery:
        """Follow a task that exists already to its verified result. It is at the provider, so it counts against
        a batch's slots while it is waited on, like a new job: the batch never has more jobs there than slots."""
        self.info.task_id, self.info.status, self.info.resumed = task_id, Status.SUBMITTED, not self.info.fetched
        verb = "fetching" if self.info.fetched else "resuming"
        with self._slot():
            self.ctx.report(with_cost(f"{verb} task {task_id}", self._shown_cost), 0.1)
            state = self.wait(task_id)
        return self.download(task_id, state)

    def fetch(self, record: journal.FetchedTask) -> Delivery:
        """A task's result by its id: the stored one when the journal has it (no request), else the
        provider's (waiting while the task still runs)."""
        self.record, self.info.fetched = record, True
        if record.row is not None and record.row.stored_result() is not None:
            return self._stored(record.row)
        return self.resume(record.task_id)

    @property
    def _shown_cost(self) -> float | None:
        """The estimate beside progress text: a fetch costs nothing more."""
        return None if self.info.fetched else self.info.cost_usd_estimate

    def _stored(self, row: journal.JobRow) -> Delivery:
        self.info.task_id, self.info.status, self.info.cached = row.task_id, Status.COMPLETED, True
        self.info.outputs, self.info.result_file = row.outputs, row.result_path
        cost = "no request, no cost" if not self.info.fetched else "no request"
        self.ctx.report(f"using the stored result of task {row.task_id} ({cost})", 0.9)
        return self._verify(Path(row.result_path), row.extra, row.task_id)

    def wait(self, task_id: str) -> TaskState:
        """Follow the task to its end; a failed one is journaled as such (and raised)."""
        spec = self.spec
        self._event("waiting")
        with self._unfinished_on_error(task_id), self.ctx.timer("wait"):
            state = self.client.wait(task_id, self.ctx.waiter, self._on_state(), wait_limits(self.ctx.settings),
                                     model_id=spec.model_id, history=run_times())
            if state.status != COMPLETED:
                self.info.status = Status.FAILED
                self.record.record(Status.FAILED, error=state.error or state.raw_status)
                self._forget_uploads()
                raise JobFailed(f"{spec.title} task {task_id} failed: {state.error or state.raw_status}", task_id=task_id)
        return state

    def download(self, task_id: str, state: TaskState) -> Delivery:
        """The completed task's output, downloaded into the result store, journaled and verified."""
        with self._unfinished_on_error(task_id):
            self.record.record(Status.COMPLETED, outputs=state.outputs, extra=state.extra)
            self.info.status, self.info.outputs = Status.COMPLETED, state.outputs
            if state.inference_seconds is not None:
                self.info.inference_seconds = state.inference_seconds
            with self.ctx.timer("download"):
                self.ctx.report("downloading", 0.92)
                folder = journal.results_dir(self.ctx.work)
                try:
                    path = download_output(self.client, self.spec, state, folder, self.ctx.waiter, task_id,
                                           self.ctx.settings.max_download_bytes)
                except OSError as exc:  # the partial file is gone; the task's result stays at the provider
                    raise ConfigurationError(f"no room for the result of task {task_id} in {folder} "
                                             f"({exc.strerror or exc}): free some space", task_id=task_id) from None
            self.record.record(result_path=str(path))
            self.info.result_file = str(path)
            self._event("downloaded")
        delivery = self._verify(path, state.extra, task_id)
        self._measure(task_id, delivery, state.inference_seconds)
        return delivery

    def _measure(self, task_id: str, delivery: Delivery, inference_seconds: float | None) -> None:
        """The ledger's measured figure: the catalog's price for what the provider reported the job used (fal's
        compute seconds), or for what it delivered (seconds of sound, one job) or was sent (seconds of the clip)."""
        measured = self.spec.price.measure(delivery.samples.shape[1] / delivery.sample_rate, self.info.video_seconds,
                                           inference_seconds)
        if measured is not None:
            self.info.cost_usd_measured, self.info.cost_measure = measured
            journal.record_measured(self.spec.provider, task_id, *measured)

    def _verify(self, path: Path, extra: dict[str, Any], task_id: str | None) -> Delivery:
        """The provider's result, bounded (self.bounds) before it is decoded into arrays, then as audio (and its
        picture as frames, when the run wants them). A file out of bounds or not decodable is the provider's
        fault, never the user's input's; it is not kept in the result store (an error page served as the file,
        say): the next run or fetch of the task downloads it again rather than reusing it."""
        picture = None
        with self.ctx.timer("decode"):
            what = "audio"
            try:
                if self.spec.output == "video":
                    what = "video"
                    bounds = self.bounds
                    most = bounds.frames or math.ceil(bounds.seconds * MAX_FPS)
                    media.check_picture(path, bounds.picture or (media.MAX_SIDE, media.MAX_SIDE), most,
                                        self.ctx.settings.max_decode_bytes)
                    if self.ctx.picture:
                        picture = media.decode_frames(path, max_frames=most)
                    what = "audio"
                samples, rate, title = media.decode_result(path, max_seconds=self.bounds.seconds,
                                                           keep=self.bounds.keep_sound)
                self.info.emulator = self.info.emulator or title == EMULATOR_TITLE
            except ValidationError as exc:
                path.unlink(missing_ok=True)
                raise ProviderError(f"the result file is not usable {what} ({exc})", task_id=task_id) from None
        return Delivery(path, samples, rate, extra, picture)

    @contextlib.contextmanager
    def _unfinished_on_error(self, task_id: str) -> Iterator[None]:
        """A run stopping before the result is stored leaves the row DETACHED (an identical run resumes
        it; fetch gets it), or CANCELLED if the provider accepted the cancel of the remote job. Cancel sends
        the provider's cancel at once; a timeout or an error does not (the job can still be fetched)."""
        try:
            yield
        except Cancelled as exc:
            if self.record.owns_task and self.record.status != Status.COMPLETED:
                outcome = _cancel_remote(self.client, task_id, self.spec.model_id)
                note = cancel_note(self.spec.provider, task_id, outcome)
                status = Status.CANCELLED if outcome == CancelOutcome.ACCEPTED else Status.DETACHED
                self.record.record(status, error=f"cancelled by the user: {note}")
                self.info.status = self.record.status or self.info.status
                exc.args = (f"{exc} — {note}",)
            raise
        except BaseException as exc:
            if self.record.owns_task and self.record.status not in (Status.COMPLETED, Status.FAILED):
                self.record.record(Status.DETACHED, error=str(exc) or type(exc).__name__)
                self.info.status = Status.DETACHED
            raise

    def _on_state(self) -> Callable[[TaskState, float], None]:
        show = state_reporter(self.ctx.report, self._shown_cost, self.info)

        def on_state(state: TaskState, elapsed: float) -> None:
            if state.final:
                self._event("final")  # when the client noticed the end (the benchmark's detection latency)
            else:
                self.record.record(Status(state.status))  # queued / running, written when it changes
            show(state, elapsed)

        return on_state

    def _event(self, event: str) -> None:
        if self.ctx.observe is not None:
            self.ctx.observe(event, self.info)

    def _forget_uploads(self) -> None:
        """A failed job may have failed on its media (e.g. a file the provider no longer has)."""
        for key in self._uploads:
            if self._ticket is not None:
                self._ticket.forget_upload(self.client.http.base_url, key)


def no_task_reason(exc: SonifyError, status: Status | None) -> str | None:
    """Why no task exists at the provider after `exc` ended a job whose row is at `status` — or None when one may, or
    when the error is the input's or the setup's (which another provider would not mend). Only a row still INTENT
    has nothing sent, or a submit its provider refused or whose task its listing shows was never made (RemoteJob.
    submit); then: the provider unreachable, the key or account refused (401/403), a 5xx or no answer (an upload, or a
    submit the listing cleared), or no submit slot within the queue bound (the pacer's JobTimedOut)."""
    if status != Status.INTENT or isinstance(exc, (Cancelled, Refused)):
        return None
    if isinstance(exc, Unreachable):
        return f"unreachable ({exc})"
    if isinstance(exc, JobTimedOut):
        return "no submit slot within the queue bound (SONIFY_QUEUE_TIMEOUT)"
    if isinstance(exc, ProviderError) and exc.status in (401, 403):
        return f"refused the key or the account ({exc})"
    if isinstance(exc, ProviderError) and (exc.status is None or exc.status >= 500):
        return f"failed before any task existed ({exc})"
    return None


def _one_file(key: str, make: Callable[[], Path]) -> UploadChoice:
    """An input that goes as one file, made when it is needed."""

    def send(client: Provider, run: RunContext) -> Sent:
        path = make()
        return Sent(key, client.upload(path, run.waiter), path.stat().st_size)

    return UploadChoice((key,), frozenset(), send)


def _cancel_remote(client: Provider, task_id: str, model_id: str) -> CancelOutcome:
    """Ask the provider to stop a job the user cancelled, sent at once and given CANCEL_SECONDS at most."""
    deadline = time.monotonic() + CANCEL_SECONDS
    try:
        return client.cancel(task_id, Waiter(lambda: time.monotonic() > deadline), model_id=model_id)
    except SonifyError as exc:
        log.warning("could not cancel task %s: %s", task_id, exc)
        return CancelOutcome.UNREACHED


def download_output(client: Provider, spec: ModelSpec, state: TaskState, folder: Path, waiter: Waiter,
                    task_id: str, max_bytes: int) -> Path:
    """Pick the output to use (for sound, a plain audio file if there is one) and download it (at most
    `max_bytes`: SONIFY_MAX_DOWNLOAD_MB)."""
    urls = state.outputs
    if spec.output == "audio":
        urls = sorted(urls, key=lambda u: not urlsplit(u).path.lower().endswith(AUDIO_EXTENSIONS))
    url = urls[0]
    suffix = Path(urlsplit(url).path).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"
    # Named by task: the result store keeps every job's file side by side.
    target = folder / f"{output_name(spec, task_id)}-result{suffix}"
    return client.http.download(url, target, max_bytes=max_bytes, waiter=waiter, task_id=task_id)
