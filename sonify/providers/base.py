"""What every provider client is (`Provider`) and returns while a job runs, and the shared polling loop."""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from ..errors import JobTimedOut, ProviderError, ValidationError
from ..net.http import Http
from ..waiter import Waiter
from .schedule import History, PollPlan

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
# What a task id may be before it goes into a URL, a file name, the journal or a message: WaveSpeed's are 32
# hex digits, fal's UUIDs. No slash, no dot first (no path traversal), nothing a shell reads specially.
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
TASK_ID_RULE = "1 to 128 letters, digits, '.', '_' or '-', the first a letter or digit"
LISTING_PAGES = 5  # pages of a task listing read at most when looking for a lost submit's task
CANCEL_TIMEOUT = (3.0, 5.0)  # a cancel is sent after the user stopped waiting: it must not hold the run long


@dataclass
class TaskState:
    status: str  # QUEUED | RUNNING | COMPLETED | FAILED
    raw_status: str = ""  # the provider's own word
    outputs: list[str] = field(default_factory=list)  # result URLs
    extra: dict[str, Any] = field(default_factory=dict)  # other result fields (fal's prompt, ...)
    error: str = ""
    queue_position: int | None = None
    inference_seconds: float | None = None

    @property
    def final(self) -> bool:
        return self.status in (COMPLETED, FAILED)


class CancelOutcome(str, Enum):
    """What came of asking the provider to stop a task."""

    ACCEPTED = "accepted"  # the provider stops it
    FINISHED = "finished"  # it had ended already: its result, if any, is kept and can be fetched
    UNREACHED = "unreached"  # no usable answer: the task may run on

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class KeyCheck:
    """A key the provider accepted: where it was checked, the account's balance when the provider tells
    it, and whether the answer came from the Sonify emulator."""

    url: str
    balance_usd: float | None = None
    emulator: bool = False


@dataclass(frozen=True)
class WaitLimits:
    """The queue wait and the processing wait are bounded separately: a job stuck in a queue
    (no credit, an outage) should not hold the node for the whole processing allowance."""

    queue_seconds: float = 900.0
    run_seconds: float = 1800.0


class Provider(Protocol):
    """One provider's protocol client. Every URL and endpoint of the provider is built in here; the rest
    of Sonify passes task ids, model ids, files and the URLs the provider handed out."""

    name: str
    http: Http  # the session: API base URL, key, retries, size-capped downloads
    upload_seconds: float  # how long after an upload its URL is reused for another job
    # find_tasks shows a task as soon as it exists (True), or only once it has finished (False: an empty answer
    # about a lost submit proves nothing while its task could still be queued or running).
    lists_unfinished: bool

    def upload(self, path: Path, waiter: Waiter, *, watch: Callable[[int], None] | None = None) -> str:
        """Upload a file; returns the URL a job's input refers to it by. Cancel is honoured while the bytes go
        out; `watch(bytes handed over so far)` is called as they do (http.FileBody), and what it raises
        aborts the upload and comes out of here."""
        ...

    def submit(self, model_id: str, body: dict[str, Any], waiter: Waiter) -> str:
        """Create the job (never retried: a lost answer may still have created a task); returns its id."""
        ...

    def state(self, task_id: str, waiter: Waiter, *, model_id: str | None = None) -> TaskState:
        """The task's state now; for a completed task, its result (output URLs and other fields)."""
        ...

    def wait(self, task_id: str, waiter: Waiter, on_state: Callable[[TaskState, float], None], limits: WaitLimits,
             *, model_id: str | None = None, history: History | None = None) -> TaskState:
        """Follow the task to its end (a final TaskState), reporting each state. `history`: learned run
        times, where the client polls (without it, the plain schedule)."""
        ...

    def cancel(self, task_id: str, waiter: Waiter, *, model_id: str | None = None) -> CancelOutcome:
        """Ask the provider to stop the task: ACCEPTED or FINISHED (never touching a finished task's result);
        raises ProviderError when the provider refuses or does not answer."""
        ...

    def find_tasks(self, model_id: str, body: dict[str, Any], since: float, until: float, waiter: Waiter) -> list[str]:
        """Ids of the tasks that may be the one a submit of `body` created between `since` and `until` (Unix
        seconds): what the provider lists of `model_id` in that window (and, where it shows inputs, with
        exactly that input). For a submit whose answer was lost; raises ProviderError if it cannot tell."""
        ...

    def task_model(self, task_id: str, waiter: Waiter) -> str | None:
        """The model id a task was run with, where the provider tells it (None: it does not)."""
        ...

    def check_key(self, waiter: Waiter, timeout: tuple[float, float]) -> KeyCheck:
        """The cheapest request that proves the key works (raises ProviderError when refused)."""
        ...

    def balance(self, waiter: Waiter, timeout: tuple[float, float]) -> float | None:
        """The account's balance in USD where the provider tells it to this key for free, else None (no request)."""
        ...


def poll_until_final(
    poll: Callable[[], TaskState],
    task_id: str,
    provider: str,
    waiter: Waiter,
    on_state: Callable[[TaskState, float], None],
    limits: WaitLimits,
    plan: PollPlan | None = None,
    origin: float | None = None,
    wake: threading.Event | None = None,
) -> TaskState:
    """Poll until the task is final, reporting each state; raise JobTimedOut past a limit.

    Polls when `plan` says (see schedule.py), counting seconds from `origin` (time.monotonic() of the
    submit; default: now), and at once when `wake` is set (a verified webhook delivery: webhooks.py)."""
    plan = plan or PollPlan()
    start = time.monotonic()
    origin = start if origin is None else origin
    run_start: float | None = None
    while True:
        if wake is not None:
            wake.clear()  # this poll answers it; a delivery after the clear finds the task final anyway
        state = poll()
        now = time.monotonic()
        plan.polled(now - origin, state.final)
        on_state(state, now - start)
        if state.final:
            return state
        if state.status == RUNNING and run_start is None:
            run_start = now
        check_limits(task_id, provider, now - start, None if run_start is None else now - run_start, limits)
        waiter.sleep(plan.delay(time.monotonic() - origin), wake)


def check_limits(task_id: str, provider: str, waited: float, running: float | None, limits: WaitLimits) -> None:
    if running is None and waited > limits.queue_seconds:
        raise JobTimedOut(
            f"{provider} task {task_id} was still queued after {limits.queue_seconds:.0f} s; "
            f"it may still run — {recovery_hint(provider, task_id)}",
            task_id=task_id,
        )
    if running is not None and running > limits.run_seconds:
        raise JobTimedOut(
            f"{provider} task {task_id} was still processing after {limits.run_seconds:.0f} s; "
            f"{recovery_hint(provider, task_id)}",
            task_id=task_id,
        )


def is_task_id(value: object) -> bool:
    return isinstance(value, str) and TASK_ID.fullmatch(value) is not None


def answered_id(value: object, provider: str) -> str:
    """A task id from a provider's answer, checked before any use (see TASK_ID). Another one is a
    ProviderError: the task may exist (and be charged), but Sonify cannot follow it safely."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not is_task_id(value):
        raise ProviderError(f"{provider} answered with a task id that is not one ({ascii(value)[:60]}; a task id is "
                            f"{TASK_ID_RULE}), so Sonify cannot follow that task")
    return str(value)


def given_task_id(value: str) -> str:
    """A task id a user gave (fetch: command line, node, engine call), stripped and checked before any use."""
    task_id = (value or "").strip()
    if not task_id:
        raise ValidationError("task_id", "is empty: copy it from the job info, an error message or `python -m sonify jobs`")
    if not is_task_id(task_id):
        raise ValidationError("task_id", f"{ascii(task_id)[:60]} is not a task id (a task id is {TASK_ID_RULE}): copy "
                                         "it from the job info, an error message or `python -m sonify jobs`")
    return task_id
def iso_utc(moment: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds ("…Z"), as the providers write times."""
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unix_time(value: Any) -> float | None:
    """Unix seconds of an ISO 8601 time (UTC when it names no zone); None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def recovery_hint(provider: str, task_id: str) -> str:
    command = f"python -m sonify fetch {shlex.quote(provider)} {shlex.quote(task_id)}"
    return f"fetch the result later with `{command}` or the Sonify Fetch Result node"
