"""What every provider client is (`Provider`) and returns while a job runs, and the shared polling loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import JobTimedOut
from ..http import Http
from ..waiter import Waiter
from .schedule import History, PollPlan

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"


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

    def upload(self, path: Path, waiter: Waiter) -> str:
        """Upload a file; returns the URL a job's input refers to it by."""
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

    def cancel(self, task_id: str, waiter: Waiter, *, model_id: str | None = None) -> bool:
        """Ask the provider to stop the task; True if it accepted."""
        ...

    def task_model(self, task_id: str, waiter: Waiter) -> str | None:
        """The model id a task was run with, where the provider tells it (None: it does not)."""
        ...

    def check_key(self, waiter: Waiter, timeout: tuple[float, float]) -> KeyCheck:
        """The cheapest request that proves the key works (raises ProviderError when refused)."""
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
) -> TaskState:
    """Poll until the task is final, reporting each state; raise JobTimedOut past a limit.

    Polls when `plan` says (see schedule.py), counting seconds from `origin` (time.monotonic() of the
    submit; default: now)."""
    plan = plan or PollPlan()
    start = time.monotonic()
    origin = start if origin is None else origin
    run_start: float | None = None
    while True:
        state = poll()
        now = time.monotonic()
        plan.polled(now - origin, state.final)
        on_state(state, now - start)
        if state.final:
            return state
        if state.status == RUNNING and run_start is None:
            run_start = now
        check_limits(task_id, provider, now - start, None if run_start is None else now - run_start, limits)
        waiter.sleep(plan.delay(time.monotonic() - origin))


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


def recovery_hint(provider: str, task_id: str) -> str:
    return f"fetch the result later with `python -m sonify fetch {provider} {task_id}` or the Sonify Fetch Result node"
