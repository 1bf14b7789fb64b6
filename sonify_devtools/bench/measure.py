"""Measuring tools for the benchmark: resident memory, packets, polls."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

import av

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1 << 20


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started: Linux's VmHWM. Not ru_maxrss, which a process
    started by another keeps across exec from its parent (at least the parent's memory when it forked: the
    benchmark's own, with its emulator); elsewhere ru_maxrss all the same."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRss:
    """The highest resident memory while the `with` block runs, and how far it rose above the memory at its start.

    On Linux the kernel keeps the peak: it is reset at the start (/proc/self/clear_refs, "5") and read at the end
    (VmHWM), so nothing runs beside the measured work. A thread sampling every 2 ms, as this did before, took the
    GIL from the work it watched: the frames path's 10 s 1080p clip spent 4.27 s outside the provider's wait under
    it in a process's first run (the benchmark's case) against 3.75 s, and 3.78-3.81 s against 3.67-3.70 s in later
    ones. Where the peak cannot be reset it is sampled that way still."""

    def __init__(self, step: float = 0.002) -> None:
        self.step = step
        self.before = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:  # noqa: PYI034 - Python 3.10 has no typing.Self
        self.before = self.peak = rss_bytes()
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")
        except OSError:
            self._thread = threading.Thread(target=self._sample, name="sonify-bench-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            self.peak = max(self.before, peak_rss_bytes())
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    def _sample(self) -> None:
        while not self._stop.wait(self.step):
            self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.before


def picture_packets(path: str | Path) -> list[bytes]:
    """Every picture packet's bytes, in file order."""
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def audio_packets(path: str | Path) -> tuple[str, list[bytes]]:
    """(codec, every packet's bytes) of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return stream.codec_context.name, [bytes(p) for p in container.demux(stream) if p.size]


def audio_copied(provider_file: str | Path, result: str | Path) -> bool:
    """True when the result's sound is the provider's AAC packets, unchanged (a prefix of them: the
    result ends with the picture)."""
    codec, given = audio_packets(provider_file)
    _, kept = audio_packets(result)
    return codec == "aac" and bool(kept) and kept == given[: len(kept)]


def max_polls_per_window(times: list[float], after: float, window: float) -> int:
    """The most of `times` (seconds since the submit) that fall in any `window` seconds after `after`."""
    counted = sorted(t for t in times if t > after)
    return max((sum(1 for u in counted if t <= u < t + window) for t in counted), default=0)


def timed(call, *args, **kwargs) -> tuple[object, float]:
    """(call's result, its wall-clock seconds)."""
    start = time.perf_counter()
    value = call(*args, **kwargs)
    return value, time.perf_counter() - start
