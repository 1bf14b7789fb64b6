"""A video's facts and checks: probe (exact rates, rotation, frame count), the picture and source checks made
before anything is sent, and frames decoded from a file."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..catalog import MAX_FPS, MIN_FPS
from ..errors import ValidationError

log = logging.getLogger("sonify")


PathLike = str | os.PathLike


_MP4_FORMATS = {"mov", "mp4"}


_PLAIN_PIX_FMTS = ("yuv420p", "yuvj420p")  # 8-bit 4:2:0: what every decoder takes


_STANDARD_RATES = tuple(Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60"))


@dataclass(frozen=True)
class VideoInfo:
    width: int  # display size, after rotation metadata
    height: int
    fps: Fraction  # exact; the stream's average rate
    frames: int  # frame count (packets counted if the container does not say)
    duration: Fraction  # seconds of picture: frames / fps
    codec: str
    pix_fmt: str
    has_audio: bool
    size_bytes: int
    container: str = ""  # the demuxer's names ("mov,mp4,m4a,3gp,3g2,mj2"); "" for frames
    steady_rate: bool = False  # the stream's average and nominal rates agree: constant, no packet need be read


@dataclass
class VideoSource:
    """What a node hands the engine: a file, or frames with their exact rate."""

    path: str | None = None
    frames: np.ndarray | None = None  # [N,H,W,3] float32 in [0,1] (or uint8)
    fps: Fraction | None = None  # required with frames


MIN_SIDE, MAX_SIDE = 16, 8192  # pixels; H.264's largest levels stop at 8192×4320


def validate_source(video: VideoSource) -> None:
    """Exactly one of a file or frames; frames of a usable shape and size, with a sane fps."""
    if (video.path is None) == (video.frames is None):
        raise ValidationError("video", "connect exactly one of `video` or `images` (+ `fps`)")
    if video.frames is None:
        return
    frames = video.frames
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValidationError("images", f"must be [frames, height, width, 3], got shape {list(frames.shape)}")
    if frames.shape[0] < 2:
        raise ValidationError("images", f"needs at least 2 frames, got {frames.shape[0]}")
    check_picture_size(frames.shape[2], frames.shape[1], "images")
    # every value (finite, 0..1) is checked by frames.fingerprint, in the pass that hashes the frames
    if video.fps is None:
        raise ValidationError("fps", "is required with images")
    check_frame_rate(video.fps, "fps")


def check_frame_rate(fps: Fraction, name: str) -> None:
    """MIN_FPS to MAX_FPS frames a second (models.MIN_FPS says why not slower)."""
    if not MIN_FPS <= fps <= MAX_FPS:
        raise ValidationError(name, f"the frame rate must be from {MIN_FPS} to {MAX_FPS} fps (the models sample the "
                                    f"picture at 8 and 25 fps), got {float(fps):.6g} fps")


def check_picture_size(width: int, height: int, name: str) -> None:
    """16 px to MAX_SIDE px a side: smaller is no picture to look at, larger no encoder or model takes."""
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise ValidationError(name, f"frames must be {MIN_SIDE} to {MAX_SIDE} pixels a side, got {width}×{height}")


# ---------------------------------------------------------------- probing


def exact_fps(value: Fraction | float | str) -> Fraction:
    """A frame rate as an exact Fraction. Floats near an NTSC rate (23.976, 29.97, 59.94...) snap to
    n*1000/1001, because that is what the float meant; other floats keep up to 1/1001 precision. A
    Fraction made from such a float (ComfyUI's CreateVideo builds `Fraction(29.97)`, i.e.
    1054476685978981/35184372088832, which no encoder takes) is snapped the same way."""
    if isinstance(value, Fraction) and value.denominator > 1001:
        value = float(value)
    if isinstance(value, (Fraction, int)) or (isinstance(value, str) and "/" in value):
        fps = Fraction(value)
    else:
        x = float(value)
        if not math.isfinite(x) or x <= 0:
            raise ValidationError("fps", f"must be a positive number, got {value!r}")
        ntsc = Fraction(round(x * 1.001) * 1000, 1001)
        near = abs(float(ntsc) - x) < 0.0015 and ntsc.denominator != 1 and not x.is_integer()  # 1.0 is not 1000/1001
        fps = ntsc if near else Fraction(x).limit_denominator(1001)
    if fps <= 0:
        raise ValidationError("fps", f"must be positive, got {value!r}")
    return fps


def probe(path: PathLike) -> VideoInfo:
    """Facts about a video file. Reads at most one frame (for its rotation) and no more than the packets
    needed to count frames when the container does not store the count."""
    container = _open_input(path, "video")
    try:
        if not container.streams.video:
            raise ValidationError("video", f"{Path(path).name} has no video stream")
        stream = container.streams.video[0]
        fps = _stream_rate(stream, path)
        average, nominal = stream.average_rate, stream.base_rate or stream.guessed_rate
        frames, rotation = _count_and_rotation(container, stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation % 180 == 90:
            width, height = height, width
        return VideoInfo(
            width=width,
            height=height,
            fps=fps,
            frames=frames,
            duration=Fraction(frames) / fps,
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt or "",
            has_audio=bool(container.streams.audio),
            size_bytes=os.path.getsize(path),
            container=container.format.name,
            steady_rate=bool(average and nominal and abs(average - nominal) <= nominal / 1000),
        )
    finally:
        container.close()


def title(path: PathLike) -> str:
    """The file's title tag ("" when it has none)."""
    return tags(path).get("title", "")


def tags(path: PathLike) -> dict[str, str]:
    """The file's container metadata (its tags: title, comment, ComfyUI's workflow, Sonify's receipt)."""
    with _open_input(path, "file") as container:
        return dict(container.metadata)


def check_picture(path: PathLike, max_size: tuple[int, int], max_frames: int, max_bytes: int) -> VideoInfo:
    """A video made elsewhere (a provider's), checked before any frame is decoded into arrays: it has a
    picture no larger than `max_size` (either way round: rotation may be in pixels or in metadata), at
    most `max_frames` packets — counted, not taken from what the container claims — and its frames as
    float32 IMAGE need at most `max_bytes`."""
    info = probe(path)
    name = Path(path).name
    if max(info.width, info.height) > max(max_size) or min(info.width, info.height) > min(max_size):
        raise ValidationError("video", f"{name} is {info.width}×{info.height}, larger than the {max_size[0]}×"
                                       f"{max_size[1]} picture expected")
    frame_bytes = 4 * 3 * info.width * info.height
    with _open_input(path, "video") as container:
        counted = 0
        for packet in container.demux(container.streams.video[0]):
            counted += bool(packet.size)
            if counted > max_frames or counted * frame_bytes > max_bytes:
                raise ValidationError("video", f"{name} has more than the {min(max_frames, max_bytes // frame_bytes)} "
                                               f"{info.width}×{info.height} frames expected")
    return info


# What reading a broken file can raise: PyAV's own errors, and a UnicodeDecodeError where FFmpeg's message
# quotes the file's bytes (found by tests/test_properties.py).
_UNREADABLE = (av.FFmpegError, OSError, UnicodeDecodeError)


def _open_input(path: PathLike, what: str) -> av.container.InputContainer:
    try:
        return av.open(os.fspath(path))
    except _UNREADABLE as exc:
        raise ValidationError(what, f"cannot read {Path(path).name}: {exc}") from exc


def _stream_rate(stream: av.VideoStream, path: PathLike) -> Fraction:
    """The exact average rate. A nominal rate within 0.1 % of it wins: a file whose last frame has no
    duration must still read as 30000/1001, not as a fraction with a five-digit denominator."""
    average, nominal = stream.average_rate, stream.base_rate or stream.guessed_rate
    if average and nominal and abs(average - nominal) <= nominal / 1000:
        return Fraction(nominal)
    rate = average or nominal
    if not rate:
        raise ValidationError("video", f"{Path(path).name}: the frame rate is unknown")
    return Fraction(rate)


def _count_and_rotation(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[int, int]:
    """(frame count, rotation in degrees counter-clockwise). Decodes only the first frame; counts
    packets (without decoding them) only when the container has no frame count."""
    frames = stream.frames
    rotation: int | None = None
    counted = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            counted += 1
            if rotation is None:
                decoded = packet.decode()
                rotation = decoded[0].rotation if decoded else None
            if rotation is not None and frames:
                break
        if rotation is None:
            decoded = stream.decode(None)
            rotation = decoded[0].rotation if decoded else 0
    except _UNREADABLE as exc:
        raise ValidationError("video", f"cannot decode {Path(container.name).name}: {exc}") from exc
    frames = frames or counted
    if not frames:
        raise ValidationError("video", f"{Path(container.name).name} has no frames")
    return frames, int(rotation) % 360


# ---------------------------------------------------------------- frames out


def decode_frames(path: PathLike, max_frames: int | None = None) -> tuple[np.ndarray, Fraction]:
    """All frames as [N,H,W,3] float32 in [0,1] (upright, by the rotation metadata) and the exact fps.
    Decodes into one array sized by the probed frame count (at most `max_frames`); grows only if that count was
    short. Every frame must be the size the stream says (a frame may carry its own, as a PNG does: a small file
    whose frames decode far larger) and there are at most `max_frames` of them, or ValidationError("video")."""
    info = probe(path)
    name = Path(path).name
    out = np.empty((min(info.frames, max_frames or info.frames), info.height, info.width, 3), np.float32)
    n = 0
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if (frame.width, frame.height) not in ((info.width, info.height), (info.height, info.width)):
                raise ValidationError("video", f"{name}: frame {n + 1} is {frame.width}×{frame.height}, not the "
                                               f"{info.width}×{info.height} its stream says")
            if max_frames is not None and n == max_frames:
                raise ValidationError("video", f"{name} has more than the {max_frames} frames expected")
            rgb = frame.to_ndarray(format="rgb24")
            if frame.rotation % 360:
                rgb = np.rot90(rgb, k=(frame.rotation % 360) // 90)
            if rgb.shape[:2] != out.shape[1:3]:
                raise ValidationError("video", f"{name}: frame {n + 1} is turned unlike the others")
            if n == out.shape[0]:
                out = _grow(out, max_frames)
            np.multiply(rgb, np.float32(1 / 255), out=out[n], casting="unsafe")
            n += 1
    if n == 0:
        raise ValidationError("video", f"{Path(path).name}: no frame could be decoded")
    if n != info.frames:
        log.debug("%s: probed %d frames, decoded %d", Path(path).name, info.frames, n)
    return out[:n], info.fps


def _grow(array: np.ndarray, most: int | None = None) -> np.ndarray:
    length = max(1, array.shape[0] + array.shape[0] // 4 + 1)
    bigger = np.empty((min(length, most or length),) + array.shape[1:], array.dtype)
    bigger[: array.shape[0]] = array
    return bigger
