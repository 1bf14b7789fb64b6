"""One account's pace at a provider: how many of its jobs are there at once, and how many it starts in a window.

A provider limits each account (config.Limits, with the pages that say so): WaveSpeed's default level starts 2 video
tasks a minute and runs 2 at once, and refuses a start past the rate with HTTP 429; fal runs 2 requests of a new
account at once and queues the rest. One Pacer per provider and key (providers.pacer) is shared by every job of the process —
a run's takes and windows, a batch's clips, runs side by side in ComfyUI — so together they stay within the limits
instead of each assuming the account is theirs:

- `hold` is one of the account's at-once slots, from before the submit until the task is seen finished; `occupy`
  counts a task that is there already (a resumed one) without waiting;
- `start` is one start of the rate, taken just before a submit is sent and dated again when its answer came
  (`answered`: the provider counted it somewhere in between, so the next start waits a window from then);
  `refused` takes it back when the provider answered 429 (no task was created) and holds every start of the
  account until the provider's Retry-After, else for the rest of the window (where no rate is known — fal, an API
  on this machine — for a pause that grows with the refusals in a row), after which the submit is sent again.

Jobs wait in line (first come, first served: a long clip's windows go in order), each until its deadline — the
job's queue bound (SONIFY_QUEUE_TIMEOUT) from when it first asked — and then fail with nothing sent. A wait tells
why through `on_wait(text)`, once each time the reason changes.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import JobTimedOut
from ..net.http import backoff
from ..settings import LIMITS_ENV, TIER_ENV, WAVESPEED_TIERS, Limits
from ..waiter import SLICE, Waiter

TITLES = {"wavespeed": "WaveSpeed", "fal": "fal"}
Block = tuple[float, str]  # (time.monotonic() when it may clear — inf: when a job ends —, why, for the user)


@dataclass(frozen=True)
class Deadline:
    """When a job stops waiting for its turn: `at` (time.monotonic()), `seconds` after it first asked."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)


def rate_text(limits: Limits) -> str:
    """"2 a minute", "2 a second", "5 every 30 s"."""
    per = {60.0: "a minute", 1.0: "a second"}.get(limits.seconds, f"every {limits.seconds:g} s")
    return f"{limits.starts} {per}"


def setting_hint(provider: str) -> str:
    """Which variable tells Sonify the account's limits."""
    tier = TIER_ENV.get(provider)
    if tier:
        return f"set {tier} to your account's level ({'|'.join(WAVESPEED_TIERS)}) or {LIMITS_ENV[provider]}"
    return f"set {LIMITS_ENV[provider]} if your account runs more at once"


class Pacer:
    """See the module docstring. `limits` None: no limit known (an API on this machine), 429s still waited out."""

    def __init__(self, provider: str, limits: Limits | None) -> None:
        self.provider, self.title = provider, TITLES.get(provider, provider)
        self.limits = limits
        self._changed = threading.Condition()
        self._running = 0
        self._starts: deque[float] = deque()  # time.monotonic() of the starts in the last window
        self._held_until = 0.0  # after a 429: no start before this
        self._held_why = ""
        self._refusals = 0  # 429s in a row (no answer of another kind since)
        self._slot_line: deque[object] = deque()
        self._start_line: deque[object] = deque()

    def set_limits(self, limits: Limits | None) -> None:
        """The setting as it is now (read for every run): a changed one applies to the jobs waiting too."""
        with self._changed:
            if limits != self.limits:
                self.limits = limits
                self._changed.notify_all()

    # --- at once ---

    @contextlib.contextmanager
    def hold(self, waiter: Waiter, until: Deadline, on_wait: Callable[[str], None]) -> Iterator[None]:
        """One of the account's at-once slots for the block, waited for in line until `until`."""
        self._await(self._slot_line, self._slot_block, self._take_slot, waiter, until, on_wait)
        try:
            yield
        finally:
            self._free_slot()

    @contextlib.contextmanager
    def occupy(self) -> Iterator[None]:
        """A task already at the provider (resumed): counted for the block, over the limit if need be."""
        with self._changed:
            self._running += 1
        try:
            yield
        finally:
            self._free_slot()

    def _slot_block(self, now: float) -> Block | None:
        limits = self.limits
        if limits is None or self._running < limits.at_once:
            return None
        return math.inf, f"{self.title} runs {limits.at_once} at once on this account"

    def _take_slot(self, now: float) -> None:
        self._running += 1

    def _free_slot(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    # --- starts ---

    def start(self, waiter: Waiter, until: Deadline, on_wait: Callable[[str], None]) -> float:
        """Wait in line for a start within the rate (and past any 429's hold), then take it: its time, which
        `refused` takes back."""
        return self._await(self._start_line, self._start_block, self._take_start, waiter, until, on_wait)

    def answered(self, started: float | None) -> None:
        """The submit of the start at `started` has its answer (or none will come): the start counts from now."""
        with self._changed:
            if started is not None and started in self._starts:
                self._starts.remove(started)
                self._starts.append(time.monotonic())  # the latest: the deque stays in order
                self._refusals = 0

    def refused(self, started: float | None, retry_after: float | None) -> float:
        """The submit of the start at `started` was answered 429: nothing was created, so it did not count. No start
        of the account goes until `retry_after` seconds from now, else until the rest of the window since the
        oldest start known in it has passed (a whole window when none is: another client used the account), else
        (no rate known) for a jittered pause that doubles with the refusals in a row, up to 8 s; returns that wait."""
        with self._changed:
            now = time.monotonic()
            self._refusals += 1
            if started is not None and started in self._starts:
                self._starts.remove(started)
            rated = self.limits is not None and self.limits.starts is not None
            if retry_after is not None:
                wait = retry_after
            elif rated:
                self._forget_before(now - self.limits.seconds)
                wait = self._starts[0] + self.limits.seconds - now if self._starts else self.limits.seconds
            else:
                wait = backoff(self._refusals)
            wait = max(wait, 0.0)
            if now + wait > self._held_until:
                self._held_until = now + wait
                limit = f" (its limit of {rate_text(self.limits)} on this account)" if rated else ""
                after = f"{wait:.0f} s" if wait >= 10 else f"{wait:.1f} s"
                self._held_why = f"{self.title} answered 429 to a submit{limit}, which created nothing; sending it again after {after}"
            self._changed.notify_all()
        return wait

    def _start_block(self, now: float) -> Block | None:
        if now < self._held_until:
            return self._held_until, self._held_why
        limits = self.limits
        if limits is None or limits.starts is None:
            return None
        self._forget_before(now - limits.seconds)
        if len(self._starts) < limits.starts:
            return None
        return self._starts[-limits.starts] + limits.seconds, f"{self.title} allows {rate_text(limits)} on this account"

    def _take_start(self, now: float) -> float:
        self._starts.append(now)
        return now

    def _forget_before(self, moment: float) -> None:
        while self._starts and self._starts[0] <= moment:
            self._starts.popleft()

    # --- waiting in line ---

    def _await(self, line: deque[object], block: Callable[[float], Block | None], take: Callable[[float], object],
               waiter: Waiter, until: Deadline, on_wait: Callable[[str], None]) -> object:
        """Wait until first in `line` and not blocked, then `take` (under the lock); JobTimedOut past `until`,
        Cancelled on Cancel. Callbacks (the waiter, on_wait) run outside the lock."""
        me = object()
        shown = ""
        with self._changed:
            line.append(me)
        try:
            while True:
                with self._changed:
                    now = time.monotonic()
                    blocked = block(now)
                    if blocked is None and line[0] is me:
                        line.popleft()
                        taken = take(now)
                        self._changed.notify_all()
                        return taken
                why = blocked[1] if blocked is not None else shown  # behind another job in line: its reason
                if why and why != shown:
                    on_wait(f"waiting for a submit slot: {why}")
                    shown = why
                if now >= until.at:
                    raise self._past_bound(until, why)
                waiter.check()
                with self._changed:
                    clears = blocked[0] if blocked is not None else math.inf
                    self._changed.wait(max(0.0, min(SLICE, clears - now, until.at - now)))
        except BaseException:
            with self._changed:
                if me in line:
                    line.remove(me)
                    self._changed.notify_all()
            raise

    def _past_bound(self, until: Deadline, why: str) -> JobTimedOut:
        reason = f"; {why}" if why else ""
        return JobTimedOut(
            f"waited {until.seconds:g} s (SONIFY_QUEUE_TIMEOUT) for a submit slot at {self.title}{reason}. This job "
            f"was not submitted, so nothing was created or charged for it: run it again, raise SONIFY_QUEUE_TIMEOUT, "
            f"or {setting_hint(self.provider)}")
