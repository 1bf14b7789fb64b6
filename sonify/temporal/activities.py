"""The Temporal activities: each one step of the engine's remote job (prepare + upload, submit, reconcile,
wait, deliver), heartbeating from a thread of its own; a cancel from Temporal stops the step as the user's
Cancel does."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from .. import budget as budgets
from .. import journal as jobs
from .. import media, pipeline, providers
from ..catalog import ALL_SPECS, MODELS, ModelSpec
from ..errors import ConfigurationError, ProviderError, Refused, SonifyError
from ..journal.claims import JobMeta, Status
from ..journal.tickets import Ticket
from ..pipeline import batch, spend
from ..pipeline.job import RemoteJob
from ..pipeline.types import JobInfo, ResultBounds, RunContext, StageTimer
from ..providers.base import TaskState
from ..redact import redact
from ..settings import Settings, current
from ..waiter import Waiter
from .worker_folders import AllowedFolders
from .workflows import (
    FINAL,
    NOTHING_SENT,
    REFUSED,
    ClipJob,
    slots_id,
)

QUERY_TIMEOUT = timedelta(seconds=30)


BEAT_SECONDS = 1.0  # a heartbeat this often (Temporal sends at most one per 0.8 × the heartbeat timeout)


class HistoryTicket(Ticket):
    """A ticket with no journal row: the workflow's history records the job. The submit as sent is known
    to the workflow (its time and body), which reconciles a submit that got no answer; the tasks other clips
    own are those the provider's slots workflow knows (`known`)."""

    def __init__(self, spec: ModelSpec, known: Callable[[str], set[str]], settings: Settings,
                 spend_of: tuple[float | None, str | None] = (None, None)) -> None:
        super().__init__(None, JobMeta(spec.provider, spec.model_id, "", False))
        self._known = known
        self._settings = settings  # the step's: its spend limits
        self._owned: tuple[float, set[str]] | None = None  # (when asked, the answer)
        self._spend_of = spend_of  # the submit's (estimate, run id)

    def claim_spend(self, estimate: float | None, run_id: str | None, budget: budgets.Budget, what: str) -> None:
        """prepare: the caps checked against this worker's ledger; submit counts the job (record_submitting)."""
        budgets.check(budget, spend.spent(run_id), estimate, what)

    def record_submitting(self, request: dict[str, Any] | None = None) -> None:
        """The job counted in this worker's ledger as a row of its own (SUBMITTING), within the caps, atomically
        (BudgetExceeded: nothing is sent); its status follows from there (a refused submit's row goes when the step
        ends). A journal that cannot be used refuses the submit only when a cap depends on it."""
        estimate, run_id = self._spend_of
        budget = spend.budget(self._settings)
        journal, problem = jobs.open_journal(), "it could not be opened"
        self._live()
        if journal is not None:
            try:
                self.row = journal.add_spend(self.meta.provider, self.meta.model, self.owner, estimate, run_id,
                                             budget, "this clip's job")
                self._journal = journal
            except (sqlite3.Error, OSError) as exc:
                journal, problem = None, str(exc)
        if journal is None and budget.ledger_caps:
            raise ConfigurationError(f"this worker's job journal cannot check the spend caps ({problem}), so the "
                                     "clip was not submitted; nothing was sent or paid")
        self._status = Status.SUBMITTING

    def unanswered_elsewhere(self, since: float, until: float) -> bool:
        """No: the provider's slots workflow lets one clip submit at a time, and a submit without an answer is
        reconciled within that clip's turn (ClipWorkflow._submit), so no other clip's submit is unanswered meanwhile."""
        return False

    def owned_elsewhere(self, task_id: str) -> bool:
        """Asked once per look at a listing (a second), not once per task in it."""
        if self._owned is None or time.monotonic() - self._owned[0] > 1.0:
            self._owned = (time.monotonic(), self._known(self.meta.provider))
        return task_id in self._owned[1]


class KnownTasks:
    """The clips' task ids per provider, asked of its slots workflow from an activity's thread."""

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client, self.loop = client, loop

    def __call__(self, provider: str) -> set[str]:
        """Unanswered: a ConfigurationError, which a lost submit's recovery reports as a listing it could not read
        (the clip fails, naming the dashboard to check; nothing is sent again)."""
        query = self.client.get_workflow_handle(slots_id(provider)).query("known_tasks", rpc_timeout=QUERY_TIMEOUT)
        try:
            return set(asyncio.run_coroutine_threadsafe(query, self.loop).result())
        except RPCError as exc:
            raise ConfigurationError(f"Temporal did not tell the other clips' tasks ({exc})") from None


_known: KnownTasks | None = None  # set by serve()


_folders = AllowedFolders(())  # set by serve(): until then no path is taken


def serving(known: KnownTasks, folders: AllowedFolders) -> None:
    """Set by worker.serve, for the activities it runs: the tasks its provider clients know of, and the folders it may take clips from and write results to."""
    global _known, _folders
    _known = known
    _folders = folders


def _known_tasks(provider: str) -> set[str]:
    return _known(provider) if _known is not None else set()


@contextlib.contextmanager
def _step(spec: ModelSpec, info: JobInfo | None = None, bounds: ResultBounds | None = None,
          *details: Any, spend_of: tuple[float | None, str | None] = (None, None)) -> Iterator[RemoteJob]:
    """What one activity lends the engine: a RemoteJob on a history ticket (`spend_of`: a submit's estimate and run
    id), the settings read once as the step starts, heartbeats (with `details`) while it runs, Temporal's cancel as
    the waiter's, a scratch folder; an engine error as an ApplicationError."""
    cancelled = threading.Event()
    stop = threading.Event()
    context = contextvars.copy_context()
    ticket: HistoryTicket | None = None

    def beat() -> None:
        activity.heartbeat(*details)
        if activity.is_cancelled():
            cancelled.set()

    def beats() -> None:
        while not stop.wait(BEAT_SECONDS):
            context.run(beat)

    beat()
    thread = threading.Thread(target=beats, name="sonify-heartbeat", daemon=True)
    thread.start()
    try:
        settings = current()
        ticket = HistoryTicket(spec, _known_tasks, settings, spend_of)
        with tempfile.TemporaryDirectory(prefix="sonify-step-") as tmp:
            ctx = RunContext(Waiter(cancelled.is_set), lambda text, fraction: None, StageTimer(), Path(tmp), settings)
            job = RemoteJob(spec, providers.client(spec.provider, settings), ctx,
                            info or JobInfo(spec.provider, spec.model_id), bounds or ResultBounds.expected(0.0))
            job.attach(ticket)
            yield job
    except SonifyError as exc:
        raise _failure(exc, ticket) from None
    finally:
        stop.set()
        thread.join()
        if ticket is not None:
            ticket.close()  # its ledger row, if any, left to the ledger (or gone, if nothing was sent)


def _failure(exc: SonifyError, ticket: HistoryTicket | None) -> ApplicationError:
    """Final for what a retry cannot mend (the input, the setup, a failed job); REFUSED for a submit answered 429
    (the account's rate: the workflow holds the account's starts for the provider's Retry-After, carried as the
    error's next_retry_delay); NOTHING_SENT for another submit that certainly created no task (a 408, or a
    dropped connection the listing shows no task for)."""
    if isinstance(exc, Refused):
        wait = timedelta(seconds=max(exc.retry_after, 0.001)) if exc.retry_after is not None else None
        return ApplicationError(redact(str(exc)), type=REFUSED, non_retryable=True, next_retry_delay=wait)
    kind = type(exc).__name__
    refused_for_good = isinstance(exc, ProviderError) and exc.status is not None and 400 <= exc.status < 500 \
        and exc.status not in (408, 429)
    status = ticket.status if ticket is not None else None  # no ticket: a bad setting stopped the step as it began
    if status == Status.INTENT and not refused_for_good:
        kind = NOTHING_SENT
    # A submit's error is never retried by Temporal: the workflow decides (temporal_flow.ClipWorkflow._submit).
    final = kind in FINAL or refused_for_good or status in (
        Status.INTENT, Status.SUBMITTING, Status.UNKNOWN, Status.UNKNOWN_REPORTED)
    details = [exc.task_id] if exc.task_id else []
    return ApplicationError(redact(str(exc)), *details, type=kind, non_retryable=final)


def _spec(model: str) -> ModelSpec:
    """A catalog key: a model's (MODELS), or an offer's a batch picked its provider by (catalog.ALL_SPECS)."""
    spec = MODELS.get(model) or next((spec for spec in ALL_SPECS if spec.key == model), None)
    if spec is None:
        raise ApplicationError(f"model: must be one of {', '.join(MODELS)}, got {model[:80]!r}",
                               type="ValidationError", non_retryable=True)
    return spec


@activity.defn(name="prepare")
def prepare(job: ClipJob) -> dict[str, Any]:
    """Validate, probe and hash the clip, upload what the model sees: the body to submit."""
    spec = _spec(job.model)
    with _step(spec) as remote:
        source = _folders.clip(job.source)
        _folders.output(job.out_dir, job.name)  # refused now, not after the job is paid for
        checked = spec.validate(job.params)
        video = media.VideoSource(path=str(source))
        media.validate_source(video)
        with remote.ctx.timer("prepare"):
            plan = pipeline.prepare(spec, checked, video, None, None, remote.client, remote.ctx, one_job=True)
        part, info = plan.only_job()
        remote.info, remote.ctx.run_id = info, job.run_id
        body = remote.send(part.uploads)
        info.seconds = remote.ctx.timer.seconds
        return {"body": body, "info": info.as_dict(), "bounds": dataclasses.asdict(part.bounds),
                "clip_seconds": str(plan.clip.duration)}


@activity.defn(name="submit")
def submit(model: str, body: dict[str, Any], estimate: float | None = None, run_id: str | None = None) -> str:
    """One submit (Temporal never retries it), counted in this worker's spend ledger first: the task id; a lost
    answer goes to the listing (RemoteJob)."""
    with _step(_spec(model), spend_of=(estimate, run_id)) as remote:
        return remote.submit(body)


@activity.defn(name="reconcile")
def reconcile(model: str, body: dict[str, Any], sent_at: float) -> str | None:
    """A submit attempt that ended without an answer: the task it created, or None if none was."""
    with _step(_spec(model)) as remote:
        return remote.reconcile({"body": body, "sent_at": sent_at}, sent_at)


@activity.defn(name="wait")
def wait(model: str, task_id: str) -> dict[str, Any]:
    """Follow the task to its end (from its id: after a worker died, another one picks it up here)."""
    with _step(_spec(model), None, None, task_id) as remote:
        remote.info.task_id = task_id
        return dataclasses.asdict(remote.wait(task_id))


@activity.defn(name="deliver")
def deliver(job: ClipJob, prepared: dict[str, Any], task_id: str, state: dict[str, Any],
            seconds: dict[str, float]) -> dict[str, Any]:
    """Download, verify, fit and mux: `<out_dir>/<name>.mp4` and its sidecar, as the single-machine batch."""
    spec = _spec(job.model)
    info = JobInfo(**prepared["info"])
    info.seconds = {**info.seconds, **seconds}
    info.task_id = task_id
    with _step(spec, info, ResultBounds(**prepared["bounds"]), task_id) as remote:
        source, out_dir = _folders.clip(job.source), _folders.output(job.out_dir, job.name)
        delivery = remote.download(task_id, TaskState(**state))
        timer = remote.ctx.timer
        _, video = pipeline.deliver(spec, delivery, source, Fraction(prepared["clip_seconds"]), info, timer, out_dir)
        info.seconds = {**info.seconds, **timer.seconds}
        record = {"source": job.source, "model": job.model, "params": job.params, "job": info.as_dict()}
        batch.keep(out_dir, job.name, video, record)
        return info.as_dict()


ACTIVITIES: list[Callable[..., Any]] = [prepare, submit, reconcile, wait, deliver]
