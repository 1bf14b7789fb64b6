"""A batch across machines on Temporal: the workflows (what each clip goes through, and the provider's slots).

One `ClipWorkflow` per clip: prepare + upload → a slot → submit → wait → (slot back) → download + fit + mux.
Its activities run on the provider's task queue (`sonify-wavespeed`, `sonify-fal`), which only workers holding
that provider's key poll (temporal_worker.py), so keys stay in the workers' environment: inputs, results and
errors carry clips' paths, request bodies, task ids and URLs, never a key.

The provider's concurrency is one `ProviderSlots` workflow per provider, a semaphore in the server: a clip asks
it for a slot before its submit and gives it back once its task has ended. It holds the account's limits too
(Settings.limits, read where the batch is started, as a run on one machine reads them): no more slots than the
account runs at once, and submits no faster than it starts them. A worker's
`max_concurrent_activities` would bound each worker process alone (N workers: N times the limit), and a task
queue's own limit is a rate (per second), not a count of jobs in flight; the semaphore holds whatever the number
of workers, and a wait resumed on another worker keeps the slot its clip already holds.

A submit is never retried by Temporal (one attempt): an answer that says nothing was created is submitted again
by the workflow — a 429 (the account's rate) once the provider's Retry-After, else the rest of the window, has
passed for every clip of the account, until the clip's queue bound; an attempt that ended without an answer (its
worker died) is reconciled from the provider's task listing (RemoteJob.reconcile) before anything is sent again.
Submits to a provider go one at a time, each recording its task with the slots workflow, so the listing's other
tasks are known to be other clips'.

This module is loaded in Temporal's workflow sandbox: it imports nothing of the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TemporalError

WORKFLOW_QUEUE = "sonify"


NOTHING_SENT = "NothingSent"  # a submit's error type when no task was created: the workflow submits again


REFUSED = "Refused"  # a submit answered 429 (nothing created); its next_retry_delay: the provider's Retry-After


HEARTBEAT = timedelta(seconds=5)  # an activity silent this long has lost its worker: it goes to another


SUBMIT_TRIES = 8  # submits that created nothing for another reason than a 429 (a dropped connection, a 408)


TASKS_KEPT_SECONDS = 3600.0  # how long the slots workflow knows a clip's task id (a lost submit's window is ~3 min)


HOLDER_CHECK = timedelta(seconds=30)  # while clips wait and no slot is free, the holders are checked this often


# A slots workflow's wait is worked out again when what it was worked out from changes (see _start_rule). Before,
# a submit asked for while the account's starts were spent waited for HOLDER_CHECK instead of its turn.
REWAIT_ON_NEW_START_RULE = "rewait-on-new-start-rule"


SLOTS_HISTORY = 10_000  # events before the slots workflow continues as new (Temporal's limit is 51,200)


# activity errors not retried (BudgetExceeded: a spend cap refused the clip before anything was sent)
FINAL = ("ValidationError", "BudgetExceeded", "ConfigurationError", "JobFailed", "JobTimedOut")


STEP = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                   maximum_attempts=5, non_retryable_error_types=list(FINAL))


ONCE = RetryPolicy(maximum_attempts=1)


# The download retries transient errors itself; a delivery failing 3 times fails the clip, and the next
# submission of the batch delivers the same task (ClipJob.delivery): no new job.
DELIVER = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3,
                      non_retryable_error_types=list(FINAL))


def provider_queue(provider: str) -> str:
    return f"sonify-{provider}"


def slots_id(provider: str) -> str:
    return f"sonify-slots-{provider}"


@dataclass
class ClipJob:
    """One clip of a batch: everything a worker needs, and nothing secret."""

    model: str  # catalog key
    provider: str
    params: dict[str, Any]
    source: str  # absolute path, on storage every worker reads
    out_dir: str  # absolute path, on storage every worker writes
    name: str  # the result's stem: <out_dir>/<name>.mp4 and its sidecar
    concurrency: int  # the provider's slots (the last batch's --concurrency holds)
    # An earlier run's task, from that run's failure: {task_id, prepared, state}. state set: the task completed
    # and its delivery failed (download, disk), this run only delivers it; state None: its wait gave up, this run
    # waits for it again. Either way no new upload, no new job.
    delivery: dict[str, Any] | None = None
    # The account's limits (Settings.limits where the batch was started): jobs at once, and starts in any
    # `per_seconds`; None: not known (an API on this machine). `queue_seconds`: how long a clip waits for its turn
    # to submit (SONIFY_QUEUE_TIMEOUT there), 429s included.
    at_once: int | None = None
    starts: int | None = None
    per_seconds: float = 60.0
    queue_seconds: float = 900.0
    run_id: str | None = None  # the batch's: its clips' spend counts against SONIFY_MAX_USD_PER_RUN together


@dataclass
class SlotRequest:
    workflow_id: str
    limit: int
    starts: int | None = None  # the account's starts in any `seconds` (None: no rate)
    seconds: float = 60.0


@dataclass
class SubmitEnd:
    workflow_id: str
    task_id: str | None  # None: its submit created no task (or the clip failed)
    refused: bool = False  # answered 429: the account's starts are held (retry_after s, else the rest of its window)
    retry_after: float | None = None


@dataclass
class SlotsState:
    limit: int
    holders: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    tasks: dict[str, float] = field(default_factory=dict)  # task id -> when a clip said it was its own
    submitter: str | None = None  # the one clip submitting now
    submit_queue: list[str] = field(default_factory=list)  # holders waiting to submit
    starts: int | None = None  # the account's start rate: this many in any `seconds` (None: no limit)
    seconds: float = 60.0
    started: dict[str, float] = field(default_factory=dict)  # clip -> when its latest submit was let go (Unix s)
    held_until: float = 0.0  # after a 429: no submit goes before this (Unix s)


@workflow.defn(name="SonifyProviderSlots")
class ProviderSlots:
    """A counting semaphore: at most `limit` clip workflows hold a slot; the others wait in order.

    Submits go one at a time (a token), no more than `starts` in any `seconds` and none while a 429 holds the
    account's starts, and each ends by saying which task it made: so when a submit's answer
    is lost, every other task the provider lists from that moment is known to be another clip's — WaveSpeed's
    listing shows no inputs, so nothing else could tell them apart. A submit takes a fraction of a second;
    jobs take tens of seconds, so the token costs the provider no idle slot."""

    @workflow.init
    def __init__(self, state: SlotsState) -> None:
        self.state = state

    @workflow.run
    async def run(self, state: SlotsState) -> None:
        # Runs begun before this wake-up existed keep waiting as they did (their histories replay the same), until
        # they continue as new.
        rewait = workflow.patched(REWAIT_ON_NEW_START_RULE)
        while True:
            due = self._start_wait() if self.state.submit_queue and self.state.submitter is None else 0.0
            timeout = min(HOLDER_CHECK, timedelta(seconds=due)) if due > 0 else HOLDER_CHECK
            try:
                await workflow.wait_condition(self._woken(rewait), timeout=timeout)
            except asyncio.TimeoutError:  # a holder terminated by hand would never give its slot (or token) back
                if timeout == HOLDER_CHECK and self.state.waiting:
                    await self._grant(list(self.state.holders))
                if timeout == HOLDER_CHECK and self.state.submit_queue and self.state.submitter is not None:
                    await self._grant([self.state.submitter], "submit_granted")
            granted = []
            while self._grantable():
                granted.append(self.state.waiting.pop(0))
                self.state.holders.append(granted[-1])
            await self._grant(granted)
            while self._may_submit():
                self.state.submitter = self.state.submit_queue.pop(0)
                self._forget_starts(workflow.now().timestamp())
                self.state.started[self.state.submitter] = workflow.now().timestamp()
                await self._grant([self.state.submitter], "submit_granted")
            if self._long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self.state)

    async def _grant(self, holders: list[str], what: str = "slot_granted") -> None:
        """Tell each of `holders` it has its slot or the token (again: harmless); one whose workflow is gone
        loses both."""
        outcomes = await asyncio.gather(*(workflow.get_external_workflow_handle(holder).signal(what)
                                          for holder in holders), return_exceptions=True)
        for holder, outcome in zip(holders, outcomes):
            if isinstance(outcome, TemporalError):
                self.release(holder)

    def _grantable(self) -> bool:
        return bool(self.state.waiting) and len(self.state.holders) < self.state.limit

    def _may_submit(self) -> bool:
        return bool(self.state.submit_queue) and self.state.submitter is None and self._start_wait() <= 0

    def _start_wait(self) -> float:
        """Seconds until the account may start another job: a 429's hold, then its rate."""
        now = workflow.now().timestamp()
        if now < self.state.held_until:
            return self.state.held_until - now
        if self.state.starts is None:
            return 0.0
        recent = sorted(at for at in self.state.started.values() if at > now - self.state.seconds)
        return 0.0 if len(recent) < self.state.starts else recent[-self.state.starts] + self.state.seconds - now

    def _woken(self, rewait: bool) -> Callable[[], bool]:
        """When the loop's wait ends: a slot or the token can be given, the history is long, or (`rewait`) what the
        wait for the next start was worked out from has changed."""
        rule = self._start_rule()
        return lambda: (self._grantable() or self._may_submit() or self._long()
                        or (rewait and self._start_rule() != rule))

    def _start_rule(self) -> tuple[Any, ...]:
        """What the wait for the next start is worked out from: when it changes (a clip asks to submit while the
        account's starts are spent, a 429 holds them), the wait is worked out again, not left at HOLDER_CHECK."""
        s = self.state
        return (bool(s.submit_queue) and s.submitter is None, s.held_until, s.starts, s.seconds,
                tuple(sorted(s.started.values())))

    def _forget_starts(self, now: float) -> None:
        self.state.started = {clip: at for clip, at in self.state.started.items() if at > now - self.state.seconds}

    def _long(self) -> bool:
        return workflow.info().get_current_history_length() > SLOTS_HISTORY

    @workflow.signal
    def acquire(self, request: SlotRequest) -> None:
        self.state.limit = max(1, request.limit)
        self.state.starts, self.state.seconds = request.starts, request.seconds
        if request.workflow_id in self.state.holders:  # asked again: granted again
            self.state.holders.remove(request.workflow_id)
        if request.workflow_id not in self.state.waiting:
            self.state.waiting.append(request.workflow_id)

    @workflow.signal
    def release(self, workflow_id: str) -> None:
        for queue in (self.state.holders, self.state.waiting, self.state.submit_queue):
            if workflow_id in queue:
                queue.remove(workflow_id)
        if self.state.submitter == workflow_id:
            self.state.submitter = None

    @workflow.signal
    def begin_submit(self, workflow_id: str) -> None:
        if workflow_id == self.state.submitter:  # asked again: granted again
            self.state.submitter = None
        if workflow_id not in self.state.submit_queue:
            self.state.submit_queue.append(workflow_id)

    @workflow.signal
    def end_submit(self, end: SubmitEnd) -> None:
        if end.refused:  # nothing was created: it did not count; no start until the provider's time has passed
            now = workflow.now().timestamp()
            self.state.started.pop(end.workflow_id, None)
            self._forget_starts(now)
            window = self.state.seconds
            if end.retry_after is not None:
                self.state.held_until = max(self.state.held_until, now + end.retry_after)
            elif self.state.starts is not None:  # else (no rate known) the clip pauses by itself
                rest = min(self.state.started.values()) + window - now if self.state.started else window
                self.state.held_until = max(self.state.held_until, now + rest)
        elif end.workflow_id in self.state.started:  # counted by the provider by the time its answer came
            self.state.started[end.workflow_id] = workflow.now().timestamp()
        if end.task_id is not None:
            now = workflow.now().timestamp()
            self.state.tasks = {known: at for known, at in self.state.tasks.items() if at > now - TASKS_KEPT_SECONDS}
            self.state.tasks[end.task_id] = now
        if self.state.submitter == end.workflow_id:
            self.state.submitter = None

    @workflow.query
    def known_tasks(self) -> list[str]:
        return list(self.state.tasks)


@workflow.defn(name="SonifyClip")
class ClipWorkflow:
    """One clip's job (see the module docstring). Its result: the job info the sidecar records."""

    def __init__(self) -> None:
        self.stage = "starting"
        self.granted = False
        self.may_submit = False
        self.seconds: dict[str, float] = {}
        self.delivery: dict[str, Any] | None = None  # the task once submitted ({task_id, prepared, state})

    @workflow.signal
    def slot_granted(self) -> None:
        self.granted = True

    @workflow.signal
    def submit_granted(self) -> None:
        self.may_submit = True

    @workflow.query
    def progress(self) -> str:
        return self.stage

    @workflow.run
    async def run(self, job: ClipJob) -> dict[str, Any]:
        try:
            if job.delivery is not None and job.delivery["state"] is not None:
                return await self._deliver(job, **job.delivery)
            return await self._run(job, job.delivery)
        except ActivityError as exc:  # the clip failed: said once, with its cause's message and task id
            cause = exc.cause
            task_id = cause.details[0] if isinstance(cause, ApplicationError) and cause.details else None
            kind = cause.type if isinstance(cause, ApplicationError) else None
            # Details: the task id; and, once a task exists that did not fail at the provider, what a next run
            # needs to wait for it (state None) or deliver it: never a second submit for a task that may finish.
            carried = None if kind == "JobFailed" else self.delivery
            details = [task_id or (self.delivery or {}).get("task_id"), carried]
            text = cause.message if isinstance(cause, ApplicationError) else f"{exc.activity_type} did not finish: {cause}"
            raise ApplicationError(text, *details, type=kind, non_retryable=True) from None

    async def _run(self, job: ClipJob, earlier: dict[str, Any] | None) -> dict[str, Any]:
        """Prepare, submit, wait; or, given an earlier run's task (`earlier`), wait for that one again."""
        queue = provider_queue(job.provider)
        if earlier is None:
            self.stage = "preparing"
            prepared = await self._step("prepare", job, queue=queue, timeout=timedelta(minutes=30))
        else:
            prepared = earlier["prepared"]
        slots = workflow.get_external_workflow_handle(slots_id(job.provider))
        me = workflow.info().workflow_id
        try:
            self.stage = "waiting for one of the running jobs to finish"
            asked = workflow.now()
            limit = min(job.concurrency, job.at_once or job.concurrency)
            await slots.signal("acquire", SlotRequest(me, limit, job.starts, job.per_seconds))
            await workflow.wait_condition(lambda: self.granted)
            self._took("slot", asked)
            task_id = earlier["task_id"] if earlier else await self._submit_in_turn(job, prepared, slots, me)
            self.delivery = {"task_id": task_id, "prepared": prepared, "state": None}
            self.stage = f"processing task {task_id}"
            started = workflow.now()
            state = await self._step("wait", job.model, task_id, queue=queue, timeout=timedelta(hours=1),
                                     retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=20,
                                                       non_retryable_error_types=list(FINAL)))
            self._took("wait", started)
        finally:
            await slots.signal("release", me)
        return await self._deliver(job, task_id, prepared, state)

    async def _submit_in_turn(self, job: ClipJob, prepared: dict[str, Any], slots: Any, me: str) -> str:
        """Each attempt at the submit when the slots workflow lets this clip's turn come (one submit at a time per
        provider, within the account's start rate), until the clip's queue bound. A 429 created nothing: its end
        holds the account's starts (Retry-After, else the rest of the window; where neither is known the clip pauses,
        longer each time) and the clip asks for its turn again. Other answers that created nothing are sent again
        SUBMIT_TRIES times at most, with a growing pause."""
        asked, tries, refusals = workflow.now(), 0, 0
        while True:
            self.stage, self.may_submit = "waiting for a submit slot", False
            await slots.signal("begin_submit", me)
            left = job.queue_seconds - (workflow.now() - asked).total_seconds()
            try:
                await workflow.wait_condition(lambda: self.may_submit, timeout=timedelta(seconds=max(left, 0.001)))
            except asyncio.TimeoutError:
                raise ApplicationError(
                    f"waited {job.queue_seconds:.0f} s (SONIFY_QUEUE_TIMEOUT) for a submit slot at {job.provider}: "
                    "this clip was not submitted, so nothing was created or charged for it; run the batch again",
                    type=NOTHING_SENT, non_retryable=True) from None
            self.stage = "submitting"
            end = SubmitEnd(me, None)
            try:
                end.task_id = await self._submit(job, prepared["body"], prepared["info"].get("cost_usd_estimate"))
            except _Refused as refused:
                end.refused, end.retry_after = True, refused.retry_after
            except _NothingCreated:
                tries += 1
                if tries >= SUBMIT_TRIES:
                    raise ApplicationError(f"the provider refused the submit {SUBMIT_TRIES} times (nothing was "
                                           "created)", type=NOTHING_SENT, non_retryable=True) from None
            finally:
                await slots.signal("end_submit", end)
            if end.task_id is not None:
                return end.task_id
            refusals += end.refused
            if not end.refused:
                await workflow.sleep(min(2 ** tries, 30))
            elif end.retry_after is None and job.starts is None:
                await workflow.sleep(min(2 ** (refusals - 1), 30))

    async def _deliver(self, job: ClipJob, task_id: str, prepared: dict[str, Any], state: dict[str, Any]) -> Any:
        self.stage = "downloading"
        self.delivery = {"task_id": task_id, "prepared": prepared, "state": state}
        return await self._step("deliver", job, prepared, task_id, state, self.seconds,
                                queue=provider_queue(job.provider), timeout=timedelta(minutes=30), retry=DELIVER)

    async def _submit(self, job: ClipJob, body: dict[str, Any], estimate: float | None) -> str:
        """One attempt: the task id; _Refused (a 429) or _NothingCreated when certainly no task was created. The
        worker counts it in its journal's spend ledger (`estimate`), within the caps, before it sends it."""
        started = workflow.now()
        sent_at = started.timestamp()
        try:
            task_id = await self._step("submit", job.model, body, estimate, job.run_id,
                                       queue=provider_queue(job.provider), timeout=timedelta(minutes=5), retry=ONCE)
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == REFUSED:
                delay = cause.next_retry_delay
                raise _Refused(delay.total_seconds() if delay is not None else None) from None
            if isinstance(cause, ApplicationError) and cause.type == NOTHING_SENT:
                raise _NothingCreated from None
            if isinstance(cause, ApplicationError):
                raise
            # No answer (the worker died, a timeout): the task it may have created, from the listing.
            task_id = await self._step("reconcile", job.model, body, sent_at, queue=provider_queue(job.provider),
                                       timeout=timedelta(minutes=5))
            if task_id is None:
                raise _NothingCreated from None
        self._took("submit", started)
        return task_id

    async def _step(self, name: str, *args: Any, queue: str, timeout: timedelta, retry: RetryPolicy = STEP) -> Any:
        return await workflow.execute_activity(name, args=list(args), task_queue=queue, start_to_close_timeout=timeout,
                                               heartbeat_timeout=HEARTBEAT, retry_policy=retry)

    def _took(self, stage: str, since: Any) -> None:
        self.seconds[stage] = round((workflow.now() - since).total_seconds(), 4)


class _Refused(Exception):
    """A submit answered 429: nothing was created; `retry_after`, the provider's Retry-After (None: not said)."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class _NothingCreated(Exception):
    """A submit that certainly created no task, for another reason than a 429."""
