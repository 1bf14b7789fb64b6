"""A long clip's windows from one decoding pass of its source.

Each frame is decoded once (a few frames ahead, in a thread of its own: media.decode_ahead), placed at the proxy's rate (sample-and-hold by timestamp) and scaled to the proxy's
size; its thumbnail's luma histogram goes to the shot-cut detection, and the frame itself to the encoder of every
window it belongs to. A window's boundaries are decided as soon as the cuts around them are known
(windows.Planner); the frames whose windows are not known yet (a few seconds around each boundary) wait for that,
then go on in order. So no proxy of the whole clip is made, and nothing is read twice: a window's file is
finished, and handed to `ready`, while the rest of the clip is still being read. What is held at once does not
grow with the clip's length: the frames and luma histograms around one boundary and one encoder per open window.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .. import heap
from ..catalog import Window
from .decode_ahead import decoded_ahead
from .pictures import _add_h264, _new_path
from .proxy import UploadPlan, _proxy_frames, _proxy_size, _resample_frames, proxy_rate
from .windows import _LUMA_BINS, _LUMA_SIZE, Planner, Span, find_cuts

Ready = Callable[[int, Span, Path], None]  # (window index, its span, its file): a window's file is finished


def cut_in_one_pass(upload: UploadPlan, window: Window, workdir: os.PathLike | str,
                    ready: Ready | None = None, check: Callable[[], None] | None = None) -> tuple[Fraction, list[Span],
                                                                                                   list[Path]]:
    """The proxy's rate, every window and its file (the proxy's size and encoder settings), from one pass over the
    source `upload.path` (its plan: rate and rule). `ready(k, span, file)` as each window's file is finished, in
    the windows' order; `check()` before each frame (what it raises stops the pass and removes every file)."""
    info, rule = upload.info, upload.rule
    rate = proxy_rate(upload.rate, rule.max_fps)
    planner = Planner(_proxy_frames(info, rate), rate, window)
    cutter = _Cutter(planner, rate, upload.options, workdir, ready)
    try:
        with av.open(os.fspath(upload.path)) as source:
            stream = source.streams.video[0]
            stream.thread_type = "AUTO"
            size = _proxy_size(stream.codec_context.width, stream.codec_context.height, rule.short_side)
            scaler = VideoReformatter()  # one for the clip: its context is set up once
            with decoded_ahead(source, stream) as decoded:
                for frame, repeats in _resample_frames(decoded, stream.time_base, rate, planner.frames):
                    if check is not None:
                        check()
                    cutter.rotation_of(frame)
                    cutter.add(scaler.reformat(frame, width=size[0], height=size[1], format="yuv420p",
                                               interpolation="BILINEAR"), repeats)
        cutter.finish()
    except BaseException:
        cutter.discard()
        raise
    return rate, [planner.span(k) for k in range(planner.count)], cutter.files


class _Cutter:
    """The frames of the picture the model sees, one by one, into their windows' files (see the module
    docstring)."""

    def __init__(self, planner: Planner, rate: Fraction, options: dict[str, str], workdir: os.PathLike | str,
                 ready: Ready | None) -> None:
        self.planner, self.rate, self.options, self.workdir, self.ready = planner, rate, options, workdir, ready
        # the luma histograms of frames `first` on: those a boundary still to be decided may look at
        self.histograms: deque[np.ndarray] = deque()
        self.first = 0
        self.seen = 0  # frames added
        self.waiting: deque[tuple[int, av.VideoFrame]] = deque()  # frames whose windows are not decided yet
        self.encoders: dict[int, tuple[av.container.OutputContainer, av.VideoStream]] = {}
        self.files = [Path(_new_path(workdir, f"window-{k + 1}-", ".mp4")) for k in range(planner.count)]
        self.matrix: list[int] | None = None  # the source's display matrix (phone clips stay upright)
        self.done = 0  # windows finished

    def rotation_of(self, frame: av.VideoFrame) -> None:
        if self.seen == 0:
            for side in frame.side_data:
                if side.type.name == "DISPLAYMATRIX":
                    self.matrix = np.frombuffer(bytes(side), dtype=np.int32).tolist()

    def add(self, small: av.VideoFrame, repeats: int = 1) -> None:
        """The next frame of the picture, shown `repeats` times (the proxy's rate holds a source frame)."""
        for _ in range(repeats):
            self._add(small)

    def _add(self, small: av.VideoFrame) -> None:
        i = self.seen
        plane = small.planes[0]  # the frame's luma, every few pixels of it (as windows.frames_luma_histograms)
        step = max(1, min(plane.width, plane.height) // _LUMA_SIZE[1])
        luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[::step, :plane.width:step]
        self.histograms.append(np.bincount(luma.ravel() // (256 // _LUMA_BINS), minlength=_LUMA_BINS) / luma.size)
        self.seen += 1
        self.waiting.append((i, small))
        planner = self.planner
        while planner.next < planner.count and self.seen >= planner.due:
            planner.decide(self._cuts_near_next())
        self._route()

    def finish(self) -> None:
        """The last frames into their windows (every boundary is decided by now) and every file finished."""
        planner = self.planner
        while planner.next < planner.count:
            planner.decide(self._cuts_near_next())
        self._route()
        for k in sorted(self.encoders):
            self._close(k)

    def _cuts_near_next(self) -> list[int]:
        """The shot cuts the next boundary may move to, found among the frames from just before the earliest of
        them (find_cuts looks two frames back) to the last seen: the same cuts there as over the whole clip, at a
        cost that does not grow with it."""
        planner = self.planner
        low = max(0, planner.bounds[planner.next] - planner.tolerance - 2)
        while self.first < low and self.histograms:  # no later boundary looks back this far: they lie further on
            self.histograms.popleft()
            self.first += 1
        return [low + c for c in find_cuts(np.array(self.histograms)) if low == 0 or c >= 2]

    def discard(self) -> None:
        for container, _ in self.encoders.values():
            container.close()
        self.encoders.clear()
        for path in self.files:
            path.unlink(missing_ok=True)

    def _route(self) -> None:
        """Frames before the planner's zone go to their windows, in order; a window whose last frame went is
        finished."""
        planner = self.planner
        while self.waiting and self.waiting[0][0] < planner.zone:
            i, small = self.waiting.popleft()
            for k in planner.windows_of(i):
                self._encode(k, i, small)
            for k in [k for k in self.encoders if k + 1 < planner.next or planner.next >= planner.count]:
                if i + 1 >= planner.span(k).end:
                    self._close(k)

    def _encode(self, k: int, i: int, small: av.VideoFrame) -> None:
        if k not in self.encoders:
            container = av.open(os.fspath(self.files[k]), "w", format="mp4", options={"movflags": "+faststart"})
            stream = _add_h264(container, small.width, small.height, self.rate, self.options)
            if self.matrix is not None:
                stream.set_display_matrix(self.matrix)
            self.encoders[k] = (container, stream)
        container, stream = self.encoders[k]
        small.pts, small.time_base = i - self.planner.span(k).start, stream.codec_context.time_base
        container.mux(stream.encode(small))

    def _close(self, k: int) -> None:
        container, stream = self.encoders.pop(k)
        container.mux(stream.encode(None))
        container.close()
        del container, stream  # the encoder freed (PyAV frees it with its stream), and its memory handed back: else
        heap.give_back()  # this thread's heap keeps it, and the next window's encoder adds to it (see heap.py)
        if self.ready is not None:
            self.ready(k, self.planner.span(k), self.files[k])
