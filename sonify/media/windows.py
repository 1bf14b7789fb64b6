"""Long clips: where the windows go, where the shots cut, and how the windows' sounds join.

A clip longer than a model takes in one job (its catalog Window) is split into overlapping windows of
about equal length: the model's preferred length where it has one, else its longest. A boundary moves
to the nearest shot cut within CUT_TOLERANCE when both windows beside it stay within the model's
limits, so a crossfade rarely blends two shots. Everything here is in frames of the picture the model
sees (the proxy's, or the frames'), so a window starts on a frame and its sound lines up to the sample.

Joins: an equal-power crossfade over the overlap (gains √(1−t) and √t); at a shot cut, the same over
CUT_FADE seconds centred on the cut. The joined sound has exactly the clip's length in samples.
Numpy only: the pictures are read in window_media.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..catalog import Window
from .pictures import _add_h264, _new_path
from .proxy import _H264_PROXY, _copy_rotation
from .video import PathLike, _stream_rate

# ---------------------------------------------------------------- windows of a long clip

_LUMA_SIZE = (64, 36)  # the thumbnail shot cuts are looked for on


_LUMA_BINS = 32


def luma_histograms(path: PathLike) -> tuple[np.ndarray, Fraction]:
    """Each frame's luma histogram [N, bins] (summing to 1), from a thumbnail of it, and the exact fps: what
    windows.find_cuts looks for shot cuts in. Meant for the proxy (small and quick to decode)."""
    rows = []
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = _stream_rate(stream, path)
        for frame in container.decode(stream):
            luma = frame.reformat(width=_LUMA_SIZE[0], height=_LUMA_SIZE[1], format="gray").to_ndarray()
            rows.append(np.bincount(luma.ravel() // (256 // _LUMA_BINS), minlength=_LUMA_BINS) / luma.size)
    return np.array(rows, np.float64).reshape(-1, _LUMA_BINS), rate


def frames_luma_histograms(frames: np.ndarray) -> np.ndarray:
    """luma_histograms for [N, H, W, 3] frames in [0, 1], from every few pixels of each."""
    step = max(1, min(frames.shape[1], frames.shape[2]) // _LUMA_SIZE[1])
    out = np.empty((frames.shape[0], _LUMA_BINS), np.float64)
    for i in range(frames.shape[0]):
        rgb = frames[i, ::step, ::step].astype(np.float32)
        luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        bins = np.clip((luma * _LUMA_BINS).astype(np.int64), 0, _LUMA_BINS - 1)
        out[i] = np.bincount(bins.ravel(), minlength=_LUMA_BINS) / bins.size
    return out


def cut_windows(path: PathLike, spans: list[tuple[int, int]], workdir: PathLike,
                check: Callable[[], None] | None = None) -> list[str]:
    """Frames [start, end) of the constant-rate picture `path` (a proxy) as one file each, in one decoding
    pass: each window is re-encoded (a cut between keyframes cannot be copied), frame i at i/fps, so a
    window starts exactly on its first frame. `check()` before each frame."""
    outs = [_new_path(workdir, f"window-{k + 1}-", ".mp4") for k in range(len(spans))]
    open_: dict[int, tuple[av.container.OutputContainer, av.VideoStream]] = {}
    try:
        with av.open(os.fspath(path)) as src:
            vin = src.streams.video[0]
            vin.thread_type = "AUTO"
            rate = _stream_rate(vin, path)
            for i, frame in enumerate(src.decode(vin)):
                if check is not None:
                    check()
                for k, (start, end) in enumerate(spans):
                    if start <= i < end:
                        if k not in open_:
                            dst = av.open(outs[k], "w", format="mp4", options={"movflags": "+faststart"})
                            open_[k] = (dst, _add_h264(dst, frame.width, frame.height, rate, _H264_PROXY))
                            _copy_rotation(frame, open_[k][1])
                        dst, stream = open_[k]
                        small = frame.reformat(format="yuv420p")
                        small.pts, small.time_base = i - start, stream.codec_context.time_base
                        dst.mux(stream.encode(small))
                    if i == end - 1 and k in open_:
                        _close_encoder(*open_.pop(k))
    except BaseException:
        for dst, _ in open_.values():
            dst.close()
        for out in outs:
            Path(out).unlink(missing_ok=True)
        raise
    for k in list(open_):
        _close_encoder(*open_.pop(k))
    return outs


def _close_encoder(container: av.container.OutputContainer, stream: av.VideoStream) -> None:
    container.mux(stream.encode(None))
    container.close()


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
    half = max(1, math.floor(OVERLAP * fps / 2))  # at least a frame: below 2 fps a second's overlap rounds to none
    longest = math.floor(window.longest * fps)
    shortest = math.ceil(window.shortest * fps)
    target = min(longest, math.floor((window.preferred or window.longest) * fps))
    if target <= 2 * half:  # no window could hold its share of the clip (a rate below models.MIN_FPS)
        raise ValueError(f"no {float(window.longest):g} s window holds a frame of its own at {float(fps):.6g} fps")
    count = max(1, math.ceil(frames / (target - 2 * half)))  # the fewest windows of at most `target` frames
    bounds = [round(k * frames / count) for k in range(count + 1)]
    snapped = [False] * (count + 1)
    tolerance = math.floor(CUT_TOLERANCE * fps)
    for k in range(1, count):
        near = sorted((c for c in cuts if abs(c - bounds[k]) <= tolerance), key=lambda c: abs(c - bounds[k]))
        for cut in near:
            moved = bounds[:k] + [cut] + bounds[k + 1:]
            lengths = [_span(moved, j, frames, half) for j in (k - 1, k)]
            if moved[k - 1] < cut < moved[k + 1] and all(shortest <= e - s <= longest for s, e in lengths):
                bounds, snapped[k] = moved, True
                break
    return [Span(*_span(bounds, k, frames, half), snapped[k], snapped[k + 1]) for k in range(count)]


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


def joined(sounds: Iterable[np.ndarray], spans: list[Span], fps: Fraction, rate: int,
           seconds: Fraction) -> Iterator[np.ndarray]:
    """One sound of exactly round(seconds * rate) samples, as blocks [C, n] in order, from each window's sound
    [C, t] (taken from `sounds` in the windows' order), fitted to its window and placed at its first frame's
    sample. A window's sound is taken only once every sample before its first is given out, so no more than
    one window's sound and the overlap before it are held, however long the clip."""
    total = round(seconds * rate)
    placed = [(_sample(s.start, fps, rate), _sample(s.end, fps, rate)) for s in spans]
    placed[0], placed[-1] = (0, placed[0][1]), (placed[-1][0], total)  # the clip's ends, to the sample
    held: np.ndarray | None = None  # the samples from `start` on that later windows may still add to
    start = 0
    given = iter(sounds)
    for k, (first, last) in enumerate(placed):
        if held is not None and first > start:  # nothing from here on reaches back before this window's start
            done = _fit(held, first - start)
            yield done
            held, start = held[:, done.shape[1]:], first
        sound = next(given)
        if held is None:
            held = np.zeros((sound.shape[0], 0), np.float32)
        piece = np.array(_fit(sound, last - first), np.float32)  # its own copy, faded in place
        if k > 0:
            _fade(piece, first, *_join_region(spans, placed, k - 1, fps, rate), rising=True)
        if k < len(spans) - 1:
            _fade(piece, first, *_join_region(spans, placed, k, fps, rate), rising=False)
        held = _fit(held, max(held.shape[1], last - start))
        held[:, first - start:last - start] += piece
    if held is not None:
        yield _fit(held, total - start)


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
