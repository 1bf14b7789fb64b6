"""The run's data: JobInfo (what the user is shown), RunContext, Delivery, ResultBounds, uploads, timers."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..journal.claims import Status
from ..providers.base import Provider
from ..providers.pacing import Pacer
from ..redact import redact_all
from ..settings import Settings
from ..waiter import Slots, Waiter

ProgressFn = Callable[[str, float | None], None]  # (text, fraction done or None)


# (event, the job's info): "submitted", "waiting" (the wait for its end begins: a new task's or a resumed one's),
# "final", "downloaded"
Observer = Callable[[str, "JobInfo"], None]


Upload = tuple[str, Callable[[], Path]]  # (media key: what the file is made from, make the file)


RESULT_SLACK = (1.25, 2.0)  # a result may run 25 % + 2 s longer than what was asked for


@dataclass
class AudioInput:
    """Audio handed to a model (lipsync's voice): float32 [C, T] at its own rate."""

    samples: np.ndarray
    sample_rate: int


@dataclass
class JobInfo:
    """What the user is shown of one job: the node's `job` output, the command line's job JSON."""

    provider: str
    model: str  # the provider's model id
    task_id: str | None = None
    status: str = "preparing"  # the journal's word, or the provider's own while it runs
    cost_usd_estimate: float | None = None  # the catalog's price for what is sent, before the submit
    # what the provider reported the job used (or what it delivered), priced by the same rule, once it is delivered
    cost_usd_measured: float | None = None
    cost_measure: dict[str, Any] | None = None  # {quantity, unit, from}: what cost_usd_measured counts
    video_seconds: float | None = None
    params: dict[str, Any] | None = None  # what was sent, without media URLs
    uploaded_bytes: int = 0
    uploads_reused: int = 0
    proxy: bool = False  # a re-encoded, reduced copy of the picture was uploaded, not its own packets
    upload_choice: dict[str, Any] | None = None  # the video: which went ("as is" / "proxy"), decided how, uplink
    cached: bool = False  # the stored result of an earlier job: no request, no cost
    resumed: bool = False  # an earlier run's task, waited on again
    fetched: bool = False  # got by task id
    outputs: list[str] = field(default_factory=list)
    inference_seconds: float | None = None
    result_file: str | None = None  # the provider's output, kept in the result store
    audio_copied: bool | None = None  # the provider's AAC packets were copied onto the picture
    source: str | None = None  # fetch: the clip the sound was put on
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    emulator: bool = False  # made by Sonify's emulator (emulator mode, or its title tag on the result): synthetic sound
    sound: dict[str, Any] | None = None  # the sound checked, and its loudness set (sound_check.finish)

    def as_dict(self) -> dict[str, Any]:
        return redact_all(dataclasses.asdict(self))  # what a provider answered may echo a key


@dataclass(frozen=True)
class ResultBounds:
    """What a provider's result may be before it is decoded into arrays: its sound at most `seconds` long
    (slack included); lipsync's picture no larger than `picture` (the size sent) and at most `frames`.
    `keep_sound` False: the sound is checked, not kept (a long clip's window: decoded again when joined)."""

    seconds: float
    picture: tuple[int, int] | None = None
    frames: int | None = None
    keep_sound: bool = True

    @classmethod
    def expected(cls, seconds: float, picture: tuple[int, int] | None = None,
                 fps: Fraction | None = None) -> ResultBounds:
        """From the longest sound or picture the job asks for: RESULT_SLACK added (MMAudio rounds up to
        whole latents; a provider may pad); for a picture, that many seconds of frames at `fps`."""
        longest = seconds * RESULT_SLACK[0] + RESULT_SLACK[1]
        frames = math.ceil(longest * fps) if fps is not None else None
        return cls(longest, picture, frames)


@dataclass(frozen=True)
class Sent:
    """One media file uploaded: which one (its media key), where it is now, its size."""

    key: str
    url: str
    size: int
    proxy: bool = False  # a re-encoded picture (not the source's own picture packets)
    choice: dict[str, Any] | None = None  # how it was chosen (JobInfo.upload_choice)


@dataclass(frozen=True)
class UploadChoice:
    """An input that may go as one of several files, the one chosen as it is sent (the video: its picture as
    it is, or a proxy; uplink.py). An earlier upload of any of `keys` is reused, looked for in that order."""

    keys: tuple[str, ...]  # media keys of the files that would do
    proxies: frozenset[str]  # those of them that are proxies
    send: Callable[[Provider, RunContext], Sent]  # choose, make and upload one now


@dataclass(frozen=True)
class Delivery:
    """A job's verified result: the provider's output file, its sound, and its other fields."""

    path: Path
    samples: np.ndarray  # float32 [C, T] ([C, 0] when its bounds did not keep the sound)
    sample_rate: int
    extra: dict[str, Any]  # other result fields (fal's prompt)
    picture: tuple[np.ndarray, Fraction] | None = None  # lipsync's frames [N, H, W, 3] and rate, when asked for


class StageTimer:
    """Collects wall-clock seconds per stage for the job info. A stage inside another (the proxy encode
    inside the upload) counts for itself only, so the stages add up to the whole."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._nested: list[float] = []  # per open stage: seconds spent in stages inside it

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            own = spent - self._nested.pop()
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + own, 4)
            if self._nested:
                self._nested[-1] += spent

    def add(self, stage: str, seconds: float) -> None:
        """Seconds that count for `stage`, not for the stage open now (the proxy made in another thread while
        the upload waited for it)."""
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 4)
        if self._nested:
            self._nested[-1] += seconds


@dataclass
class RunContext:
    """What one node run (or command) lends each of its remote jobs."""

    waiter: Waiter
    report: ProgressFn
    timer: StageTimer
    work: Path  # the run's scratch folder
    settings: Settings  # the run's, taken once at its start (settings.current()): its jobs read only these
    slots: Slots | None = None  # a batch's: jobs at the provider at once
    observe: Observer | None = None  # the benchmark watches the job's events through this
    # Shared by the jobs of one run that send the same files (its takes): one uploads while the others wait,
    # then reuse its upload (journal).
    upload_lock: threading.Lock | None = None
    # The account's (providers.pacer): its at-once slots and start rate, shared by every job of the process. None:
    # not paced here (a Temporal clip, whose workflow paces it; a fetch, which submits nothing).
    pacer: Pacer | None = None
    # The result's picture is wanted as IMAGE frames (the lipsync node): decoded while the result is verified, so
    # a picture that cannot be is refused like any result out of bounds, before the job counts as delivered.
    picture: bool = False
    run_id: str | None = None  # the run (node run, command, batch) its spend counts for: SONIFY_MAX_USD_PER_RUN
    # The provider the run moves to if this job fails before any task exists (failover.py): its row is then MOVED.
    fallback: str | None = None


class JobRecord(Protocol):
    """The journal's side of one job: a run's `jobs.Ticket`, or a fetch's `jobs.FetchedTask`."""

    owns_task: bool  # a run owns its task (cancels it on Cancel); a fetch only looks

    @property
    def status(self) -> Status | None: ...

    def record(self, status: Status | None = None, **fields: Any) -> None: ...
