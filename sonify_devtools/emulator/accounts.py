"""Account limits, as an option per key (Emulator.limit_account): how many tasks an account starts in a window and
how many of its tasks run at once.

What the providers document:
- WaveSpeed (https://wavespeed.ai/docs/account-levels): each level allows so many video tasks started per minute (Bronze,
  every new account's: 2) and so many processing at once (Bronze: 2) — "if you submit a 3rd, it will wait until
  one finishes". A start past the rate is refused with HTTP 429 ("rate limit" in its list of HTTP errors), and no
  task is created.
- fal (https://fal.ai/docs/documentation/model-apis/faq and .../model-apis/concurrency-limits): a new account starts
  at 2 concurrent requests, counted while IN_PROGRESS; excess requests wait in the queue, "never rejected". No start
  rate is documented, so fal's routes apply only `at_once`.

[guess] where the docs are silent: the rate is counted over a sliding window (the strictest reading of "per
minute"; `seconds` shortens it so tests run fast), and the 429 carries `Retry-After` in whole seconds until the
next start is allowed (`retry_after=False` leaves it out, as a provider that does not send it).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field


def account_of(key: str) -> str:
    """The account a key belongs to, as the emulator's records name it (never the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def request_account(authorization: str | None) -> str:
    """The account of a request its route has authorized: its key, after the scheme word (Bearer, Key)."""
    return account_of((authorization or "").partition(" ")[2].strip())


@dataclass
class AccountLimits:
    starts: int | None  # tasks started in any `seconds` (None: no rate)
    seconds: float
    at_once: int | None  # tasks processing at once; the others wait in the queue (None: no limit)
    retry_after: bool
    started: deque[float] = field(default_factory=deque)  # time.monotonic() of the starts in the window


class Accounts:
    """The limits set per account, and the starts each has made (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: dict[str, AccountLimits] = {}

    def limit(self, key: str, starts: int | None, seconds: float, at_once: int | None, retry_after: bool) -> None:
        if starts is not None and starts < 1 or at_once is not None and at_once < 1 or not seconds > 0:
            raise ValueError("starts and at_once must be at least 1 (or None), seconds above 0")
        with self._lock:
            self._limits[account_of(key)] = AccountLimits(starts, seconds, at_once, retry_after)

    def start(self, account: str) -> float | None:
        """A task start of `account` now: None if the rate allows it (counted), else the seconds until it would."""
        with self._lock:
            limits = self._limits.get(account)
            if limits is None or limits.starts is None:
                return None
            now = time.monotonic()
            while limits.started and limits.started[0] <= now - limits.seconds:
                limits.started.popleft()
            if len(limits.started) < limits.starts:
                limits.started.append(now)
                return None
            return limits.started[-limits.starts] + limits.seconds - now

    def retry_after(self, account: str, wait: float) -> dict[str, str]:
        """The headers of a refused start: Retry-After in whole seconds (RFC 9110), unless switched off."""
        with self._lock:
            limits = self._limits.get(account)
        return {"Retry-After": str(max(1, math.ceil(wait)))} if limits is not None and limits.retry_after else {}

    def at_once(self, account: str) -> int | None:
        with self._lock:
            limits = self._limits.get(account)
        return limits.at_once if limits is not None else None
