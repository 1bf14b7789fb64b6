"""Long clips: where the windows go, where the shots cut, and how the windows' sounds join.

A clip longer than a model takes in one job (its catalog Window) is split into overlapping windows of
about equal length: the model's preferred length where it has one, else its longest. A boundary moves
to the nearest shot cut within CUT_TOLERANCE when both windows beside it stay within the model's
limits, so a crossfade rarely blends two shots. Everything here is in frames of the picture the model
sees (the proxy's, or the frames'), so a window starts on a frame and its sound lines up to the sample.

Joins: an equal-power crossfade over the overlap (gains √(1−t) and √t); at a shot cut, the same over
CUT_FADE seconds centred on the cut. The joined sound has exactly the clip's length in samples.
Numpy only: a file's pictures are read, and its windows written, in window_cutter.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..catalog import Window

# ---------------------------------------------------------------- windows of a long clip

_LUMA_SIZE = (64, 36)  # the thumbnail shot cuts are looked for on


_LUMA_BINS = 32


def frames_luma_histograms(frames: np.ndarray) -> np.ndarray:
    """Each frame's luma histogram [N, bins] (summing to 1), for [N, H, W, 3] frames in 0..1, from every few pixels
    of each: what find_cuts looks for shot cuts in (window_cutter takes a file's from a thumbnail of each frame)."""
    step = max(1, min(frames.shape[1], frames.shape[2]) // _LUMA_SIZE[1])
    out = np.empty((frames.shape[0], _LUMA_BINS), np.float64)
    for i in range(frames.shape[0]):
        rgb = frames[i, ::step, ::step].astype(np.float32)
        luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        bins = np.clip((luma * _LUMA_BINS).astype(np.int64), 0, _LUMA_BINS - 1)
        out[i] = np.bincount(bins.ravel(), minlength=_LUMA_BINS) / bins.size
    return out


OVERLAP = Fraction(1)  # seconds two neighbouring windows share (half on each side of their boundary)


CUT_TOLERANCE = Fraction(2)  # seconds a boundary may move to reach a shot cut


CUT_FADE = Fraction(1, 50)  # seconds of the short crossfade at a cut


CUT_JUMP = 0.4  # share of the luma histogram that moves from one frame to the next at a shot cut


CUT_HOLD = 2  # frames after a jump that must stay unlike the frame before it (a flash is no cut)


@dataclass(frozen=True)
class Span:
    """One window: frames [start, end) of the picture, and whether its boundaries sit on shot cuts."""

    start: int
    end: int
    cut_before: bool = False
    cut_after: bool = False

    def seconds(self, fps: Fraction) -> tuple[Fraction, Fraction]:
        return Fraction(self.start) / fps, Fraction(self.end) / fps


def is_long(window: Window | None, seconds: float) -> bool:
    """Whether a clip this long is done in windows."""
    return window is not None and seconds > window.longest


def plan(frames: int, fps: Fraction, window: Window, cuts: list[int]) -> list[Span]:
    """The windows for `frames` frames at `fps` (see the module docstring). `cuts`: frames that start a
    new shot. Every window is from window.shortest to window.longest seconds long."""
    planner = Planner(frames, fps, window)
    while planner.next < planner.count:
        planner.decide(cuts)
    return [planner.span(k) for k in range(planner.count)]


class Planner:
    """plan(), one boundary at a time, for a clip whose frames are still being read: boundary k is decided once
    the cuts up to CUT_TOLERANCE past its even place are known (frame `due` has been seen), from the boundary
    before it (decided) and the one after it (still at its even place), as plan() decides it. Frames before
    `zone` (the earliest any undecided boundary's windows can reach) belong to decided windows only."""

    def __init__(self, frames: int, fps: Fraction, window: Window) -> None:
        self.frames = frames
        self.half = max(1, math.floor(OVERLAP * fps / 2))  # at least a frame: below 2 fps a second's overlap is none
        self.longest, self.shortest = math.floor(window.longest * fps), math.ceil(window.shortest * fps)
        target = min(self.longest, math.floor((window.preferred or window.longest) * fps))
        if target <= 2 * self.half:  # no window could hold its share of the clip (a rate below models.MIN_FPS)
            raise ValueError(f"no {float(window.longest):g} s window holds a frame of its own at {float(fps):.6g} fps")
        self.count = max(1, math.ceil(frames / (target - 2 * self.half)))  # the fewest windows of at most `target`
        self.bounds = [round(k * frames / self.count) for k in range(self.count + 1)]
        self.snapped = [False] * (self.count + 1)
        self.tolerance = math.floor(CUT_TOLERANCE * fps)
        self.next = 1  # the next boundary to decide (the first and the last are the clip's ends)

    @property
    def due(self) -> int:
        """Frames that must have been seen (their cuts known: find_cuts looks CUT_HOLD frames ahead) before the next
        boundary is decided."""
        return min(self.frames, self.bounds[self.next] + self.tolerance + CUT_HOLD + 1)

    @property
    def zone(self) -> int:
        """The first frame whose windows are not known yet (the frames' count once every boundary is decided)."""
        if self.next >= self.count:
            return self.frames
        return max(0, self.bounds[self.next] - self.tolerance - self.half)

    def decide(self, cuts: list[int]) -> None:
        """The next boundary: moved to the nearest of `cuts` within CUT_TOLERANCE where both windows beside it stay
        within the model's limits."""
        k, bounds = self.next, self.bounds
        near = sorted((c for c in cuts if abs(c - bounds[k]) <= self.tolerance), key=lambda c: abs(c - bounds[k]))
        for cut in near:
            moved = bounds[:k] + [cut] + bounds[k + 1:]
            lengths = [_span(moved, j, self.frames, self.half) for j in (k - 1, k)]
            if moved[k - 1] < cut < moved[k + 1] and all(self.shortest <= e - s <= self.longest for s, e in lengths):
                self.bounds, self.snapped[k] = moved, True
                break
        self.next += 1

    def span(self, k: int) -> Span:
        """Window k (its boundaries decided: k + 1 < next, or every boundary is)."""
        return Span(*_span(self.bounds, k, self.frames, self.half), self.snapped[k], self.snapped[k + 1])

    def windows_of(self, frame: int) -> list[int]:
        """The windows a frame before `zone` belongs to."""
        spans = (_span(self.bounds, k, self.frames, self.half) for k in range(min(self.next, self.count)))
        return [k for k, (start, end) in enumerate(spans) if start <= frame < end]


def _span(bounds: list[int], k: int, frames: int, half: int) -> tuple[int, int]:
    return max(0, bounds[k] - half), min(frames, bounds[k + 1] + half)


def find_cuts(histograms: np.ndarray) -> list[int]:
    """Frames that start a new shot, from each frame's normalised luma histogram [N, bins]: more than
    CUT_JUMP of the histogram moved from the frame before, the next CUT_HOLD frames still unlike that
    frame, and that frame like the one before it (a one-frame flash jumps there and back: neither its
    jump nor the one back is a cut)."""
    h = np.asarray(histograms, dtype=np.float64)

    def moved(a: int, b: int) -> float:
        return 0.5 * float(np.abs(h[a] - h[b]).sum())

    cuts = []
    for i in range(1, len(h) - CUT_HOLD):
        steady = i < 2 or moved(i - 1, i - 2) <= CUT_JUMP
        if steady and all(moved(i + j, i - 1) > CUT_JUMP for j in range(CUT_HOLD + 1)):
            cuts.append(i)
    return cuts


def joined(sounds: Iterable[Iterable[np.ndarray]], spans: list[Span], fps: Fraction, rate: int,
           seconds: Fraction) -> Iterator[np.ndarray]:
    """One sound of exactly round(seconds * rate) samples, as blocks [C, n] in order, from each window's sound (its
    blocks [C, n] in order; the windows' sounds taken from `sounds` in the windows' order), fitted to its window
    and placed at its first frame's sample. A window's sound is taken only once every sample before its first is
    given out, and read as it goes: each of its blocks is given out once no later window adds to it, so what is
    held at once is a block and the overlap of two windows, however long the windows and the clip."""
    total = round(seconds * rate)
    placed = [(_sample(s.start, fps, rate), _sample(s.end, fps, rate)) for s in spans]
    placed[0], placed[-1] = (0, placed[0][1]), (placed[-1][0], total)  # the clip's ends, to the sample
    held = _Held()  # what is not given out yet, from its `start` on
    given = iter(sounds)
    for k, (first, last) in enumerate(placed):
        if first > held.start:  # nothing from here on reaches back before this window's start
            yield held.give_out(first)
        rising = _join_region(spans, placed, k - 1, fps, rate) if k > 0 else None
        falling = _join_region(spans, placed, k, fps, rate) if k < len(spans) - 1 else None
        free = falling[0] if falling is not None else total  # the next window adds from here on (silent before)
        at = first
        for block in _fitted(next(given), last - first):
            a, b = at, at + block.shape[1]
            at = b
            if rising is not None and a < rising[1] or falling is not None and b > falling[0]:
                block = np.array(block, np.float32)  # its own copy, faded in place
                if rising is not None:
                    _fade(block, a, *rising, rising=True)
                if falling is not None:
                    _fade(block, a, *falling, rising=False)
            if b <= held.start:  # before what is not given out yet: silent there (a rising fade's start)
                continue
            if a < held.start:
                block, a = block[:, held.start - a:], held.start
            split = min(b, max(a, free))
            if split > a:
                yield held.give_out(split, block[:, :split - a])
            if b > split:
                held.add(split, block[:, split - a:])
    if total > held.start:
        yield held.give_out(total)


class _Held:
    """Samples from `start` on that later windows may still add to; everything before `start` is given out."""

    def __init__(self) -> None:
        self.start = 0
        self.samples: np.ndarray | None = None

    def add(self, at: int, block: np.ndarray) -> None:
        """`block` added at sample `at` (not before `start`)."""
        end = at + block.shape[1] - self.start
        if self.samples is None:
            self.samples = np.zeros((block.shape[0], 0), np.float32)
        if end > self.samples.shape[1]:
            self.samples = _fit(self.samples, end)
        self.samples[:, at - self.start:end] += block

    def give_out(self, until: int, block: np.ndarray | None = None) -> np.ndarray:
        """Samples [start, until) given out: what is held there, plus `block` (from `start`) when given."""
        n = until - self.start
        if block is None:  # the first window's sound came before: samples is set
            out = np.zeros((self.samples.shape[0], n), np.float32)
        else:
            out = block[:, :n]
            if self.samples is None:
                self.samples = np.zeros((block.shape[0], 0), np.float32)
        if self.samples.shape[1] > 0:
            mine = self.samples[:, :n]
            out = np.array(out, np.float32)
            out[:, :mine.shape[1]] += mine
            self.samples = self.samples[:, mine.shape[1]:]
        self.start = until
        return out


def _fitted(blocks: Iterable[np.ndarray], length: int) -> Iterator[np.ndarray]:
    """The first `length` samples of a sound given as blocks, padded with silence if it is shorter. The blocks
    after them are not read: their source is closed."""
    done, channels = 0, 1
    try:
        for block in blocks:
            channels = block.shape[0]
            if done + block.shape[1] > length:
                block = block[:, :length - done]
            if block.shape[1]:
                yield block
                done += block.shape[1]
            if done >= length:
                return
    finally:
        close = getattr(blocks, "close", None)  # a generator decoding a file: the file closed now
        if close is not None:
            close()
    while done < length:
        n = min(1 << 16, length - done)
        yield np.zeros((channels, n), np.float32)
        done += n


def _sample(frame: int, fps: Fraction, rate: int) -> int:
    return round(Fraction(frame) / fps * rate)


def _join_region(spans: list[Span], placed: list[tuple[int, int]], k: int, fps: Fraction,
                 rate: int) -> tuple[int, int]:
    """Samples [p, q) where window k hands over to window k+1: their overlap, or CUT_FADE at a cut."""
    if spans[k].cut_after:
        cut = _sample(math.ceil((spans[k].end + spans[k + 1].start) / 2), fps, rate)
        half = round(CUT_FADE * rate / 2)
        return cut - half, cut + half
    return placed[k + 1][0], placed[k][1]


def _fade(piece: np.ndarray, first: int, p: int, q: int, rising: bool) -> None:
    """Equal-power gain on a window's sound (its sample 0 at `first`), in place: √t rising (silent before p,
    whole from q on), or √(1−t) falling (whole before p, silent from q on), t going 0 → 1 over [p, q). Only
    the fade itself is computed, so a long window costs no more than its overlap."""
    n = piece.shape[1]
    a, b = min(n, max(0, p - first)), min(n, max(0, q - first))
    t = (np.arange(first + a, first + b, dtype=np.float64) - p) / max(1, q - p)
    piece[:, a:b] *= np.sqrt(t if rising else 1.0 - t).astype(np.float32)
    if rising:
        piece[:, :a] = 0
    else:
        piece[:, b:] = 0


def _fit(sound: np.ndarray, length: int) -> np.ndarray:
    if sound.shape[-1] >= length:
        return sound[:, :length]
    return np.pad(sound, [(0, 0), (0, length - sound.shape[-1])])
