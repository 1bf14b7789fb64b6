"""A file made in the background while a remote job waits, for whoever needs it later.

A frames result's picture is the case: encoding 10 s of 1080p takes longer than the model's run, and the machine
is idle during that run. Made in a thread of its own at the lowest CPU priority (Linux: the thread's SCHED_IDLE
policy, which the codec threads it starts inherit), the file takes only the CPU nothing else wants: the node's own
work, other nodes and the host come first. SCHED_IDLE rather than nice 19: a nice thread still holds a core for a
scheduler tick when work wakes up beside it, and a GPU node's many short kernels each wait that long (measured by
`sonify bench`: 1.4x a torch stand-in's time at nice 19, about 1.1x at SCHED_IDLE). Nothing waits for the file
unless it asks for its result.

Started once (a second start does nothing). Cancelled, failed or discarded, it stops between two frames (its
`check`, called by the maker before each frame) and its file is removed; discarded after it was made, the file
is removed too.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("sonify")

NICE = 19  # where SCHED_IDLE is refused: the lowest nice value
Maker = Callable[[Path, Callable[[], None]], None]  # make(path, check): writes the file, calling check() per frame


class Stopped(Exception):
    """Raised by BackgroundFile.check once the file is no longer wanted."""


class BackgroundFile:
    """The file `make` writes at `path` (see the module docstring). `guard()` is called with each check as well:
    what it raises (the host's Cancel, say) stops the work and is kept as `error`."""

    def __init__(self, make: Maker, path: Path, guard: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self.error: BaseException | None = None  # why the file was not made (None: made, or not started)
        self.seconds: float | None = None  # how long the work took, once it ended
        self._make, self._guard = make, guard
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._made = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="sonify-background", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self) -> None:
        """Raises Stopped (or what the guard raises) when the work should end; the maker calls it per frame."""
        if self._stop.is_set():
            raise Stopped
        if self._guard is not None:
            self._guard()

    def result(self) -> Path | None:
        """The file, once made (this waits for the work); None if it was never started, or failed, or was stopped."""
        thread = self._thread
        if thread is None:
            return None
        thread.join()
        with self._lock:
            return self.path if self._made and not self._stop.is_set() else None

    def cancel(self) -> None:
        """Stop the work at its next frame (its file removed); a file already made is removed too."""
        with self._lock:
            self._stop.set()
            if self._made:
                self.path.unlink(missing_ok=True)

    def _run(self) -> None:
        _lowest_priority()
        make, self._make = self._make, None  # what it holds (a frame tensor) is not kept past the work
        start = time.monotonic()
        try:
            make(self.path, self.check)
        except BaseException as exc:  # noqa: BLE001 - kept for result(); the one who waits decides
            self.seconds = time.monotonic() - start
            self.error = exc
            self.path.unlink(missing_ok=True)
            if not isinstance(exc, Stopped):
                log.info("the background file %s was not made (%s)", self.path.name, exc)
            return
        self.seconds = time.monotonic() - start
        with self._lock:
            self._made = True
            if self._stop.is_set():  # cancelled while the last frame went out
                self.path.unlink(missing_ok=True)


def _lowest_priority() -> None:
    """This thread and the codec threads it starts (they inherit it) run only on CPU time nothing else wants.
    Linux only, where a thread has its own scheduling policy and nice value."""
    if sys.platform.startswith("linux"):
        tid = threading.get_native_id()
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, NICE)
            except OSError:
                pass
