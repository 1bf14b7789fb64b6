"""A long clip's windows handed to their jobs as they are cut.

The clip is read once, in a thread of its own (media.window_cutter); each window's job waits for its window alone,
then uploads and submits it (within the account's pace) while the later windows are still being cut. Until a
window is cut its length is known only within the shot-cut tolerance: `longest_seconds` bounds each window's length
from its even place, so that what the windows may cost is known, and capped, before any is sent.
"""

from __future__ import annotations

import math
import threading
import time
from fractions import Fraction
from pathlib import Path

from ..catalog import Window
from ..errors import Cancelled
from ..media import UploadPlan
from ..media.proxy import _proxy_frames, proxy_rate
from ..media.window_cutter import cut_in_one_pass
from ..media.windows import Planner, Span
from ..waiter import SLICE, Waiter


class WindowFeed:
    """The windows of the source `upload.path` (its upload plan: the proxy's rule and rate), cut from start() on
    into `work`."""

    def __init__(self, upload: UploadPlan, window: Window, work: Path) -> None:
        self.upload, self.window, self.work = upload, window, work
        self.fps = proxy_rate(upload.rate, upload.rule.max_fps)
        self.planner = Planner(_proxy_frames(upload.info, self.fps), self.fps, window)  # its even places
        self.count = self.planner.count
        self.cut: list[tuple[Span, Path] | None] = [None] * self.count
        self.error: BaseException | None = None
        self.seconds = 0.0  # how long the cutting took (the run's "encode" stage: it reads and writes pictures)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sonify-windows", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the cutting (at its next frame) and wait for it."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def longest_seconds(self) -> list[float]:
        """Each window's length at most, in seconds: from its even place, each boundary moved as far as a cut may
        move it, within the model's longest."""
        planner, moved = self.planner, self.planner.tolerance + self.planner.half
        ends = [(max(0, planner.bounds[k] - moved), min(planner.frames, planner.bounds[k + 1] + moved))
                for k in range(self.count)]
        longest = math.floor(self.window.longest * self.fps)
        return [float(Fraction(min(longest, end - start)) / self.fps) for start, end in ends]

    def take(self, k: int, waiter: Waiter) -> tuple[Span, Path]:
        """Window k and its file, once it is cut (waiting for it, cancellable); the cutting's error if it failed."""
        with self._changed:
            while self.cut[k] is None:
                if self.error is not None:
                    raise self.error
                waiter.check()
                self._changed.wait(SLICE)
            return self.cut[k]

    def _ready(self, k: int, span: Span, path: Path) -> None:
        with self._changed:
            self.cut[k] = (span, path)
            self._changed.notify_all()

    def _check(self) -> None:
        if self._stop.is_set():
            raise Cancelled("Cancelled")

    def _run(self) -> None:
        start = time.perf_counter()
        try:
            cut_in_one_pass(self.upload, self.window, self.work, ready=self._ready, check=self._check)
        except BaseException as exc:  # noqa: BLE001 - handed to the jobs waiting for their windows
            with self._changed:
                self.error = exc
                self._changed.notify_all()
        finally:
            self.seconds = time.perf_counter() - start
