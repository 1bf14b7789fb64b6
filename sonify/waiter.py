"""Interruptible waiting: every sleep in Sonify goes through here, so Cancel is honoured at once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from .errors import Cancelled

SLICE = 0.1  # seconds between looks at the cancel flag
T = TypeVar("T")


class Slots(Protocol):
    """What a job takes a slot from: a Lock, a Semaphore, or a batch clip's view of the batch's (batch.ItemSlots)."""

    def acquire(self, blocking: bool = ..., timeout: Any = ...) -> bool: ...

    def release(self) -> None: ...


class Waiter:
    def __init__(self, is_cancelled: Callable[[], bool] | None = None) -> None:
        self._is_cancelled = is_cancelled or (lambda: False)

    def check(self) -> None:
        if self._is_cancelled():
            raise Cancelled("Cancelled")

    def cancelled(self) -> bool:
        """Has the user cancelled? For a watcher on another thread (the job's own thread calls check())."""
        return bool(self._is_cancelled())

    def sleep(self, seconds: float, wake: threading.Event | None = None) -> None:
        """Sleep, waking every SLICE to raise Cancelled if the user cancelled; `wake` (a webhook's wake-up,
        webhooks.py) ends the sleep as soon as it is set."""
        deadline = time.monotonic() + seconds
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if wake is None:
                time.sleep(min(SLICE, left))
            elif wake.wait(min(SLICE, left)):
                return

    def acquire(self, slots: Slots, on_wait: Callable[[], None]) -> None:
        """Take one of `slots`; if none is free, call `on_wait` and wait for one as long as it takes (or
        until Cancel)."""
        if not slots.acquire(blocking=False):
            on_wait()
            while not slots.acquire(timeout=SLICE):
                self.check()

    def run(self, call: Callable[[], T], name: str = "sonify-call", every: Callable[[], None] | None = None) -> T:
        """`call()` in a worker thread, waited for in SLICE steps (`every()` is called in this thread at each):
        its result, or what it raised. On Cancel this raises Cancelled at once and leaves the call to end by
        itself (it should look at this waiter too, as an upload body does before each piece)."""
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["value"] = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, raised there
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name=name, daemon=True).start()
        while not done.wait(SLICE):
            self.check()
            if every is not None:
                every()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    @contextlib.contextmanager
    def holding(self, slots: Slots, on_wait: Callable[[], None]) -> Iterator[None]:
        """One of `slots` (see acquire), held for the block."""
        self.acquire(slots, on_wait)
        try:
            yield
        finally:
            slots.release()
