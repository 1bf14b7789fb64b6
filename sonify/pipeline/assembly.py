"""A long clip's take put together as its windows arrive, not once the last one has.

Each window's job posts its outcome (its verified sound, or what it raised) to the take's Arrivals. The take's
assembly runs beside the jobs, on a thread of its own: once every window is cut (the join needs every span), it
joins the windows' sounds in order, each as soon as its job has ended (several.join), and where the sound goes
onto the picture as it is (no loudness goal, whose gain depends on the whole sound), muxes it onto the picture as
it is joined, into an untagged file. After the last window only its own part is left to join and mux; then the
whole sound is checked, and the file's packets are copied under the take's tags (its receipt names every window's
task). With a loudness goal the sound is joined as it comes, then set and muxed once checked.

A window that failed ends its take's assembly (WindowFailed; what it made is dropped: the take is not delivered).
The other windows' jobs go on as before, and the run reports the window's own error.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import journal as jobs
from .. import media
from ..catalog import ModelSpec
from ..media import sound_check
from ..media.sound_file import SoundFile
from ..waiter import SLICE, Waiter
from .plan import Plan
from .several import WindowSound, join, missing_seconds
from .types import StageTimer


class WindowFailed(Exception):
    """A window of the take did not come: its job raised (the run reports that error, not this one)."""


class Arrivals:
    """The outcomes of one take's window jobs, posted as each ends, taken in the windows' order."""

    def __init__(self, count: int) -> None:
        self._outcomes: list[Any] = [None] * count
        self._posted = [False] * count
        self._changed = threading.Condition()
        self.waited = 0.0  # seconds take() spent waiting for a window: the assembly's own time is the rest

    def post(self, p: int, outcome: Any) -> None:
        """Window p's (WindowSound, ticket), or what its job raised."""
        with self._changed:
            self._outcomes[p], self._posted[p] = outcome, True
            self._changed.notify_all()

    def take(self, p: int, waiter: Waiter) -> tuple[WindowSound, jobs.Ticket]:
        """Window p's sound and ticket once its job has ended (cancellable); WindowFailed if the job raised."""
        start = time.perf_counter()
        with self._changed:
            while not self._posted[p]:
                waiter.check()
                self._changed.wait(SLICE)
            outcome = self._outcomes[p]
        self.waited += time.perf_counter() - start
        if isinstance(outcome, BaseException):
            raise WindowFailed(f"window {p + 1} did not come") from outcome
        return outcome


@dataclass
class Assembled:
    """A take's joined sound, what its check found, and the picture with the sound on it, untagged (None: muxed
    after the check, which set the sound's loudness)."""

    sound: SoundFile
    sound_info: dict[str, Any]
    untagged: Path | None
    timer: StageTimer  # its own stages: they ran beside the jobs


def assemble(spec: ModelSpec, job: Plan, arrivals: Arrivals, waiter: Waiter, work: Path) -> Assembled:
    """The take's windows joined, checked and (where it can be) muxed as they arrive: see the module docstring."""
    timer = StageTimer()
    spans = [job.window(spec, p, waiter).span for p in range(len(job.parts))]  # waits until every window is cut
    first, _ = arrivals.take(0, waiter)
    rate = media.aac_rate(first.rate)
    sounds = (arrivals.take(p, waiter)[0] if p else first for p in range(len(spans)))
    made: list[float] = []
    blocks = join(sounds, spans, job.fps, job.clip.duration, rate, made)
    length = round(job.clip.duration * rate)
    untagged = None
    start, waited = time.perf_counter(), arrivals.waited
    if job.source is not None and job.loudness is None:
        untagged = work / f"joined-{id(arrivals):x}.mp4"
        sound, passing = SoundFile.writing(blocks, length, rate)
        media.mux_blocks(job.source, passing, sound.channels, rate, untagged)
    else:
        sound = SoundFile.written(blocks, length, rate)
    # the join and (where it went with it) the mux, less the waits for the windows' jobs between their blocks
    timer.add("mux" if untagged is not None else "align", time.perf_counter() - start - (arrivals.waited - waited))
    seconds = float(job.clip.duration)
    with timer("check"):  # the joined sound checked and set as one (one gain: no window louder than the next)
        sound, sound_info = sound_check.finish_file(sound, seconds, seconds - missing_seconds(spans, job.fps, made),
                                                    job.loudness)
    return Assembled(sound, sound_info, untagged, timer)
