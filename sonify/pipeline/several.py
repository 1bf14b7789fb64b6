"""Variations: N takes of one video-to-audio run, each its own remote job, run at once.

A take differs from the others only by its seed: a fixed seed s gives s, s+1, …, s+N−1 (so the same run
again reuses every stored take); -1 draws N random seeds here, each recorded in the job info (the
provider's own -1 would leave the seed unknown). The drawn seeds are kept in the journal under the run's own
fingerprint (`run_key`) before anything is sent, until the run has delivered every take: a re-run of the same
inputs after a failed take, a crash or a Cancel draws the same seeds, so it reuses or resumes each take's job and
pays only for the takes that did not come. A model without a seed (Kling) gets N identical jobs: its sound differs
from job to job anyway. One take (the default) is exactly the run it always was.

A take that fails does not take the others with it: the run delivers the takes that came (`Result.takes`, the
node's AUDIO batch) and names each failed one — take number, seed, task id, the provider's message — in the job
info's `failed` (and its `takes` list, status and error).

This module knows the takes' parameters, their shared progress and their joint
outcome; the pipeline runs each one as it runs a single job.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .. import journal, media
from ..catalog import INT32_MAX, VARIATIONS, ModelSpec
from ..errors import Cancelled, SonifyError, ValidationError
from ..media import windows
from .types import Delivery, RunContext

log = logging.getLogger("sonify")


T = TypeVar("T")


def check_count(spec: ModelSpec, variations: Any) -> int:
    """The number of takes, checked before anything is spent: 1–8, and only for sound (lipsync has one)."""
    low, high = VARIATIONS
    if isinstance(variations, bool) or not isinstance(variations, int) or not low <= variations <= high:
        raise ValidationError("variations", f"must be a whole number from {low} to {high}, got {variations!r}")
    if variations > 1 and spec.output != "audio":
        raise ValidationError("variations", f"{spec.title} makes one take per run; got {variations}")
    return variations


def run_key(spec: ModelSpec, endpoint: str, checked: dict[str, Any], variations: int, media_hash: str) -> str:
    """The run's own fingerprint, as asked (seed -1, not the seeds drawn): what its drawn seeds are kept under."""
    return journal.digest_of("takes", 1, spec.provider, endpoint, spec.model_id, repr(spec.proxy), checked, variations,
                          media_hash)


def take_params(spec: ModelSpec, checked: dict[str, Any], variations: int, run: str | None = None) -> list[dict[str, Any]]:
    """Each take's parameters (see the module docstring); seeds drawn for -1 are kept under `run` (run_key)."""
    seed = next((p for p in spec.params if p.seed), None)
    if variations == 1 or seed is None:
        return [dict(checked) for _ in range(variations)]
    first = checked[seed.name]
    top = int(seed.max) if seed.max is not None else INT32_MAX  # fal's MMAudio takes seeds up to 65535
    if first < 0:
        def draw() -> list[int]:
            drawn: set[int] = set()
            while len(drawn) < variations:
                drawn.add(secrets.randbelow(top + 1))
            return sorted(drawn)

        def valid(kept: Any) -> bool:  # what the journal holds is checked like any input
            return (isinstance(kept, list) and len(set(kept)) == variations and
                    all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= top for s in kept))

        seeds = journal.drawn_seeds(run, draw, valid) if run is not None else draw()
        return [{**checked, seed.name: s} for s in seeds]
    if first + variations - 1 > top:
        raise ValidationError(seed.name, f"with {variations} variations (seeds {first} and up) must be at most "
                                         f"{top - variations + 1}, got {first}")
    return [{**checked, seed.name: first + k} for k in range(variations)]


def seed_of(spec: ModelSpec, params: dict[str, Any] | None) -> int | None:
    seed = next((p for p in spec.params if p.seed), None)
    return (params or {}).get(seed.name) if seed is not None else None


def total_cost(costs: list[float | None]) -> float | None:
    """What the takes are estimated at together; unknown if any one is."""
    return None if any(c is None for c in costs) else round(sum(costs), 6)


class Progress:
    """The jobs' progress as one: the text of the latest, after its label, and the mean fraction."""

    def __init__(self, report: Callable[[str, float | None], None], labels: list[str]) -> None:
        self.report, self.labels = report, labels
        self.fractions = [0.0] * len(labels)
        self.lock = threading.Lock()

    def of(self, index: int) -> Callable[[str, float | None], None]:
        def on_progress(text: str, fraction: float | None) -> None:
            with self.lock:
                if fraction is not None:
                    self.fractions[index] = fraction
                mean = sum(self.fractions) / len(self.fractions) if fraction is not None else None
            self.report(f"{self.labels[index]}: {text}", mean)

        return on_progress


def run_each(calls: list[Callable[[], T]], at_once: int | None = None) -> list[T | SonifyError]:
    """Every call on a thread of its own (with this thread's context variables: ComfyUI's progress finds its node
    through one) — at most `at_once` at a time, in order, when given — all waited for: each one's result, or the
    SonifyError it raised, in order. A take that fails does not stop the others: what they cost is not wasted. A
    Cancel in any is raised for all, once all have ended (one message: what came of each take's remote job); an
    error that is not a SonifyError (a bug) is raised."""
    with ThreadPoolExecutor(max_workers=min(len(calls), at_once or len(calls)), thread_name_prefix="sonify-take") as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        errors = [f.exception() for f in futures]
    for index, error in enumerate(errors):
        if error is not None:
            log.warning("take %d of %d: %s", index + 1, len(calls), error)
    cancelled = [(k, e) for k, e in enumerate(errors) if isinstance(e, Cancelled)]
    if cancelled:
        # (each cancel note names its task)
        notes = "; ".join(f"take {k + 1}: {str(e).removeprefix('Cancelled — ')}" for k, e in cancelled
                          if str(e) != "Cancelled")
        raise Cancelled(f"Cancelled — {notes}" if notes else "Cancelled",
                        task_id=next((e.task_id for _, e in cancelled if e.task_id), None)) from cancelled[0][1]
    unexpected = next((e for e in errors if e is not None and not isinstance(e, SonifyError)), None)
    if unexpected is not None:
        raise unexpected
    return [f.result() if e is None else e for f, e in zip(futures, errors)]


def failure(spec: ModelSpec, take: int, info: dict[str, Any], error: SonifyError,
            window: int | None = None) -> dict[str, Any]:
    """A take that failed, as the job info names it: its number, seed, task id (the failing window's, for a long
    clip), status and the error (the provider's message)."""
    return {"take": take + 1, "seed": seed_of(spec, info.get("params")), "task_id": error.task_id or info.get("task_id"),
            "status": info.get("status"), "cost_usd_estimate": info.get("cost_usd_estimate"), "error": str(error),
            **({"window": window + 1} if window is not None else {})}


def failed_text(failed: dict[str, Any]) -> str:
    """One failed take, for a message: "take 2 (seed 17, task ab12…) failed: <the provider's message>"."""
    where = f" window {failed['window']}" if "window" in failed else ""
    return (f"take {failed['take']}{where} (seed {failed['seed']}, task {failed['task_id'] or 'none'}) failed: "
            f"{failed['error']}")


def cut(spec: ModelSpec, video: media.VideoSource, ctx: RunContext) -> tuple[Fraction, list[tuple[windows.Span, Path]]]:
    """Frames of a long clip: the rate the windows are counted in, and each window with its file to upload (the cuts
    on the frames, each window's proxy straight from them). A file's windows are cut as its jobs go (window_feed)."""
    with ctx.timer("encode"):
        fps = video.fps
        spans = windows.plan(video.frames.shape[0], fps, spec.window,
                             windows.find_cuts(media.frames_luma_histograms(video.frames)))
        files = [media.frames_to_proxy(video.frames[s.start:s.end], fps, spec.proxy, ctx.work) for s in spans]
    ctx.report(f"{len(spans)} windows of the clip ready", 0.04)
    return fps, [(span, Path(path)) for span, path in zip(spans, files)]


@dataclass(frozen=True)
class WindowSound:
    """A window's verified result as its join needs it: the provider's file (its sound decoded again, within
    the bound it was verified against, only when joined), its rate, and its other fields."""

    path: Path
    rate: int
    seconds: float  # the longest sound the window's result may have
    extra: dict[str, Any]

    @classmethod
    def of(cls, delivery: Delivery, seconds: float) -> WindowSound:
        return cls(delivery.path, delivery.sample_rate, seconds, delivery.extra)

    def blocks(self, rate: int) -> Iterator[np.ndarray]:
        """Its sound at `rate`, float32 [C, n] blocks in order: decoded as it is read (at its own rate), or whole
        and resampled (at another)."""
        if rate == self.rate:
            return media.decode_blocks(self.path, max_seconds=self.seconds)
        samples, own = media.decode_audio(self.path, max_seconds=self.seconds)
        return iter((media.resample(samples, own, rate),))


def join(sounds: Iterable[WindowSound], spans: list[windows.Span], fps: Fraction, seconds: Fraction, rate: int,
         made: list[float] | None = None) -> Iterator[np.ndarray]:
    """The take's windows joined (windows.joined) at `rate` (one AAC takes: aac_rate of theirs), as blocks, each
    window's sound taken from `sounds` only when the join reaches it and decoded as it is joined. `made`, if
    given, gets each window's sound length in seconds."""

    def counted(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """The blocks, and their length into `made` once read (a sound longer than its window is read only as far
        as the window: what it counts is then at least the window's length, all the join needs)."""
        length = 0
        try:
            for block in blocks:
                length += block.shape[1]
                yield block
        finally:
            if made is not None:
                made.append(length / rate)

    return windows.joined((counted(sound.blocks(rate)) for sound in sounds), spans, fps, rate, seconds)


def missing_seconds(spans: list[windows.Span], fps: Fraction, made: list[float]) -> float:
    """How much of the clip the windows' sounds leave out: each window's sound (`made`, seconds) short of its
    window, summed (the join pads it with silence)."""
    missing = 0.0
    for span, sound_seconds in zip(spans, made):
        start, end = span.seconds(fps)
        missing += max(0.0, float(end - start) - sound_seconds)
    return missing
