"""Frames the user made, written as a file (H.264, near lossless) when a file is needed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np

from ..errors import ValidationError
from .video import PathLike, VideoInfo, VideoSource, exact_fps, probe

_H264_SOURCE = {"preset": "veryfast", "crf": "18"}  # frames the user made: keep them close to lossless


# ---------------------------------------------------------------- writing pictures


def frames_to_mp4(frames: np.ndarray, fps: Fraction | float, path: PathLike,
                  check: Callable[[], None] | None = None) -> VideoInfo:
    """Encode [N,H,W,3] frames (float in [0,1] or uint8) as H.264 yuv420p with frame i at exactly i/fps.
    Odd sizes are padded to even by repeating the last row/column. `check()` before each frame: what it raises
    stops the encode and comes out of here."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValidationError("images", f"must be [N, H, W, 3] with N >= 1, got shape {tuple(frames.shape)}")
    rate = exact_fps(fps)
    n, height, width, _ = frames.shape
    container = av.open(os.fspath(path), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        stream = _add_h264(container, width + width % 2, height + height % 2, rate, _H264_SOURCE)
        to_u8 = _U8Converter(height, width, frames.dtype)
        for i in range(n):
            if check is not None:
                check()
            frame = av.VideoFrame.from_ndarray(to_u8(frames[i]), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    finally:
        container.close()
    return probe(path)


def _add_h264(
    container: av.container.OutputContainer, width: int, height: int, fps: Fraction, options: dict[str, str]
) -> av.VideoStream:
    stream = container.add_stream("libx264", rate=fps, options=dict(options))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = 1 / fps
    stream.codec_context.time_base = 1 / fps
    stream.thread_type = "AUTO"
    return stream


class _U8Converter:
    """Converts one frame to contiguous uint8 RGB of even size, reusing its buffers (round, clip)."""

    def __init__(self, height: int, width: int, dtype: np.dtype) -> None:
        self.h, self.w = height, width
        self.out = np.empty((height + height % 2, width + width % 2, 3), np.uint8)
        self.scratch = None if dtype == np.uint8 else np.empty((height, width, 3), np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w, out = self.h, self.w, self.out
        if self.scratch is None:
            out[:h, :w] = frame
        else:
            np.multiply(frame, 255.0, out=self.scratch, casting="unsafe")
            np.add(self.scratch, 0.5, out=self.scratch)
            np.clip(self.scratch, 0.0, 255.0, out=self.scratch)
            out[:h, :w] = self.scratch  # truncation after +0.5: round half up
        if out.shape[1] != w:
            out[:h, w] = out[:h, w - 1]
        if out.shape[0] != h:
            out[h] = out[h - 1]
        return out


def source_to_file(src: VideoSource, workdir: PathLike) -> str:
    """The source's own file, or its frames encoded into a new mp4 in workdir."""
    if (src.path is None) == (src.frames is None):
        raise ValidationError("video", "connect either a video or images (exactly one of the two)")
    if src.path is not None:
        if not os.path.isfile(src.path):
            raise ValidationError("video", f"file not found: {src.path}")
        return os.fspath(src.path)
    if src.fps is None:
        raise ValidationError("fps", "is required with images")
    path = _new_path(workdir, "frames-", ".mp4")
    frames_to_mp4(src.frames, src.fps, path)
    return path


def _new_path(workdir: PathLike, prefix: str, suffix: str) -> str:
    os.makedirs(workdir, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=workdir)
    os.close(fd)
    return path
