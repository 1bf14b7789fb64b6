"""When to poll a job that can only be polled (WaveSpeed, and fal when its status stream fails).

Two rules hold together:

- a budget: after the first FREE_SECONDS of a job, at most BUDGET polls in any WINDOW seconds
  (15 a minute: WaveSpeed asks for spacing of seconds, not a tight loop);
- spend that budget where the job is likely to end. Each model's recent run times are learned
  (`History`): from the polls of a finished job we know it completed after the last poll that saw it
  running and no later than the first poll that saw it done. Other jobs of that model poll sparsely
  until just before that time, densely around it, then as without history. A job looks the time up
  before each poll, so jobs already running (a batch's first round) use what the first of them to
  end has taught. The pipeline hands the client a History kept in the job journal, so a restarted
  ComfyUI or the next command-line run starts with what earlier ones learned.

Without history the schedule is dense at first (a job of a few seconds, the length of a short clip's foley, is
noticed within COLD_STEP), then sparser, then one poll every 4 s. Times are seconds since the submit when the
client made it, else since the wait began.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

FREE_SECONDS = 10.0  # no budget before this: the first seconds decide how fast short jobs feel
BUDGET, WINDOW = 15, 60.0  # at most BUDGET polls in any WINDOW seconds after FREE_SECONDS
DENSE_POLLS = 7  # polls spent around the expected end
DENSE_STEP = 0.25  # their spacing when the expected end is known precisely
SPARSE_STEP = WINDOW / (BUDGET - DENSE_POLLS)  # 7.5 s: leaves DENSE_POLLS of any window for the end
LEAD, TAIL = 0.5, 1.0  # the dense stretch starts this long before the expected end, lasts this long after
KEEP = 5  # recent run times remembered per model


COLD_STEP, COLD_SECONDS = 0.2, 4.0  # without history: a poll every COLD_STEP for the first COLD_SECONDS


def base_interval(elapsed: float) -> float:
    """Without history: every COLD_STEP for COLD_SECONDS (20 polls), then slowly wider, then every 4 s from 10 s
    on."""
    if elapsed < COLD_SECONDS:
        return COLD_STEP
    if elapsed < FREE_SECONDS:
        return 0.5 + elapsed * 0.1
    return WINDOW / BUDGET


def _sparse_step(start: float) -> float:
    """Polls before the expected end (`start` of the dense stretch): as often as without history (every
    4 s) when that still leaves DENSE_POLLS of the window for the end, else sparser, down to SPARSE_STEP.
    A job that ends well before its expected time (a shorter clip) is then seen no later than cold."""
    span = min(start - FREE_SECONDS, WINDOW)  # where sparse polls share a window with the dense ones
    return min(SPARSE_STEP, max(WINDOW / BUDGET, span / (BUDGET - DENSE_POLLS - 1)))


@dataclass(frozen=True)
class Expected:
    """The job's end is expected between `first` and `last` seconds after its start."""

    first: float
    last: float


Bracket = tuple[float, float]  # (last seen running, first seen done), seconds from the submit


class Store(Protocol):
    """Where run times outlive the process (the job journal's `RunTimeStore`, handed in by the pipeline)."""

    def load(self, key: str, limit: int) -> list[Bracket]: ...  # the newest `limit`, oldest first

    def save(self, key: str, bracket: Bracket) -> None: ...


def history_key(endpoint: str, model: str) -> str:
    """Run times belong to a model at an endpoint: the emulator's are not WaveSpeed's."""
    return f"{endpoint} {model}"


class History:
    """Recent run times per key (thread-safe), read from `store` when a key is first used in this
    process and written to it as jobs end."""

    def __init__(self, store: Store | None = None) -> None:
        self._lock = threading.Lock()
        self._store = store
        self._runs: dict[str, deque[Bracket]] = {}

    def record(self, key: str, bracket: Bracket) -> None:
        runs = self._runs_of(key)
        with self._lock:
            runs.append(bracket)
        if self._store is not None:
            self._store.save(key, bracket)

    def expected(self, key: str) -> Expected | None:
        """Where the newest brackets overlap, the end lies in the overlap: the newest bracket narrowed by
        each older one that still agrees with it. A run time that changes (another clip length, a
        busier provider) is followed after one job."""
        kept = self._runs_of(key)
        with self._lock:
            runs = list(kept)
        if not runs:
            return None
        first, last = runs[-1]
        for a, b in reversed(runs[:-1]):
            if max(first, a) > min(last, b):
                break
            first, last = max(first, a), min(last, b)
        return Expected(first, last)

    def _runs_of(self, key: str) -> deque[Bracket]:
        with self._lock:
            runs = self._runs.get(key)
        if runs is not None:
            return runs
        stored = self._store.load(key, KEEP) if self._store is not None else []  # outside the lock: I/O
        with self._lock:
            return self._runs.setdefault(key, deque(stored, maxlen=KEEP))

    def clear(self) -> None:
        """Forget what this process holds (the store keeps its own)."""
        with self._lock:
            self._runs.clear()


class PollPlan:
    """The poll times of one job: call `polled(t, done)` after each poll and sleep `delay(t)` before
    the next; `bracket()` says when the job ended, for History. `expected` is asked before each
    poll where the job's end is expected (None: not known)."""

    def __init__(self, expected: Callable[[], Expected | None] = lambda: None) -> None:
        self.expected = expected
        self.polls: list[float] = []
        self._running_until = 0.0  # last poll that saw the job unfinished
        self._done_at: float | None = None  # first poll that saw it finished

    def polled(self, elapsed: float, done: bool) -> None:
        self.polls.append(elapsed)
        if done:
            self._done_at = elapsed if self._done_at is None else self._done_at
        else:
            self._running_until = elapsed

    def bracket(self) -> Bracket | None:
        """(after, no later than): the job's end, as these polls saw it; None if not seen done."""
        return None if self._done_at is None else (self._running_until, self._done_at)

    def delay(self, elapsed: float) -> float:
        """Seconds from `elapsed` until the next poll."""
        return max(0.0, self._within_budget(self._wanted(elapsed)) - elapsed)

    def _wanted(self, now: float) -> float:
        """The next poll time this plan would like, before the budget is applied."""
        plain = now + base_interval(now)
        expected = self.expected()
        if expected is None:
            return plain
        start, end = expected.first - LEAD, expected.last + TAIL
        if now < start:
            sparse = now + _sparse_step(start) if now >= FREE_SECONDS else plain
            return min(sparse, start)
        if now < end:
            return now + max(DENSE_STEP, (end - start) / DENSE_POLLS)
        return plain

    def _within_budget(self, wanted: float) -> float:
        """The earliest time at or after `wanted` at which one more poll keeps every WINDOW after
        FREE_SECONDS at BUDGET polls or fewer."""
        if wanted <= FREE_SECONDS:
            return wanted
        counted = [t for t in self.polls if t > FREE_SECONDS]
        if len(counted) < BUDGET:
            return wanted
        return max(wanted, counted[-BUDGET] + WINDOW + 1e-3)
