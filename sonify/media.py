"""Video and audio files, with PyAV only (numpy arrays in and out; never torch, never an ffmpeg process).

Frame rates are exact ``Fraction``s everywhere: 30000/1001 stays 30000/1001, so a picture of N frames
lasts exactly N/fps seconds and the sound fitted to it never drifts.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import ValidationError
from .models import MAX_FPS, ProxyRule

log = logging.getLogger("sonify")

PathLike = str | os.PathLike

_MP4_FORMATS = {"mov", "mp4"}
_H264_SOURCE = {"preset": "veryfast", "crf": "18"}  # frames the user made: keep them close to lossless
# The models look at <= 384 px. Seen at that size this is closer to the source than veryfast crf 26 was (by about
# 2 dB on the benchmark's clips) for about 15 % less encoder time, at 40-50 % more bytes (0.4-0.7 MB for 10 s).
_H264_PROXY = {"preset": "superfast", "crf": "28"}
_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# No raw ".aac" (ADTS): it cannot record the encoder's priming, so its sound would start 1024 samples late.
_AUDIO_CODECS = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".m4a": "aac"}
_MAX_CHANNELS = {"libmp3lame": 2}
AUDIO_RATES = (8000, 192000)  # Hz: telephone to studio; outside, surely a mistake (or not a rate)
MAX_AUDIO_CHANNELS = 8  # 7.1: what AAC (and so a video's soundtrack) can carry
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_PLAIN_PIX_FMTS = ("yuv420p", "yuvj420p")  # 8-bit 4:2:0: what every decoder takes
_STANDARD_RATES = tuple(Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60"))
_ENCODE_CHUNK = 4096  # samples per encoder input frame
_SCALE_THREADS = 2  # frames made ready for the proxy encoder at once (numpy and swscale release the GIL)


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
    if video.fps is None or not (0 < video.fps <= MAX_FPS):
        raise ValidationError("fps", f"must be above 0 and at most {MAX_FPS}, got {video.fps}")


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
        fps = ntsc if abs(float(ntsc) - x) < 0.0015 and ntsc.denominator != 1 else Fraction(x).limit_denominator(1001)
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
    with _open_input(path, "file") as container:
        return container.metadata.get("title", "")


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


# ---------------------------------------------------------------- upload proxy


@dataclass(frozen=True)
class UploadPlan:
    """What prepare_upload does with a file, decided from its probe alone (nothing written yet)."""

    path: str
    info: VideoInfo
    rule: ProxyRule  # the rule applied (without one: the picture's own size and rate)
    rate: Fraction  # the picture's constant rate (a variable-rate one is converted to it)
    action: str  # "as is" (the file goes unchanged), "copy" (its picture packets into a silent mp4), "encode"
    unchanged: str | None  # for "encode" of a picture any model takes as it is, only larger or faster than the
    # rule asks (constant-rate H.264 yuv420p): "as is" or "copy", how it would go unchanged instead; else None
    options: dict[str, str]  # the encoder's settings for "encode"

    @property
    def source_megapixel_frames(self) -> float:
        """The decoding work of an encode: every source frame is decoded."""
        return self.info.width * self.info.height * self.info.frames / 1e6

    @property
    def proxy_frames(self) -> int:
        """Frames of an encode's output."""
        return _proxy_frames(self.info, proxy_rate(self.rate, self.rule.max_fps))

    @property
    def proxy_megapixel_frames(self) -> float:
        """The size of an encode's output: its frames times its pixels."""
        width, height = _proxy_size(self.info.width, self.info.height, self.rule.short_side)
        return width * height * self.proxy_frames / 1e6


def plan_upload(path: PathLike, rule: ProxyRule | None, info: VideoInfo | None = None) -> UploadPlan:
    """How prepare_upload treats `path` for `rule` (see there), from its probe (`info`, if the caller has it; else
    probed here: one frame decoded at most)."""
    info = info or probe(path)
    constant = constant_rate_for(path, info)
    rate = constant or info.fps
    if rule is None:
        full = ProxyRule(short_side=min(info.width, info.height), max_fps=math.ceil(rate))
        action = "as is" if constant is None and info.pix_fmt in _PLAIN_PIX_FMTS else "encode"
        return UploadPlan(os.fspath(path), info, full, rate, action, None, _H264_SOURCE)
    plain = constant is None and (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    fits = plain and min(info.width, info.height) <= rule.short_side and info.fps <= rule.max_fps
    as_is = "as is" if not info.has_audio and _is_mp4(path, info) else "copy"
    action = as_is if fits else "encode"
    return UploadPlan(os.fspath(path), info, rule, rate, action, as_is if plain and not fits else None, _H264_PROXY)


def prepare_upload(path: PathLike, rule: ProxyRule | None, workdir: PathLike, *,
                   check: Callable[[], None] | None = None) -> tuple[str, bool]:
    """(file to upload, whether it is a new file). See docs/INTERFACES.md §media for the rule.

    A picture that fits but comes with sound or in another container is copied into a silent mp4
    (packets unchanged); only a picture that is too big, too fast, not H.264 yuv420p or of a variable
    frame rate is re-encoded. Without a rule (full resolution) the file goes as is unless it is of a
    variable rate or not 8-bit 4:2:0 (10-bit, 4:4:4: not every model decodes those); then it is
    re-encoded at its own size and rate, near-losslessly. `check` is called before each frame is
    encoded: what it raises stops the encode (its file is removed) and comes out of here."""
    return make_upload(plan_upload(path, rule), workdir, check=check)


def make_upload(plan: UploadPlan, workdir: PathLike, *, check: Callable[[], None] | None = None) -> tuple[str, bool]:
    """What prepare_upload writes for `plan`: (the file, whether it is new)."""
    return _write_upload(plan, plan.action, workdir, check)


def unchanged_upload(plan: UploadPlan, workdir: PathLike) -> tuple[str, bool]:
    """The picture exactly as it is, in place of the proxy `plan` would encode: the file itself (a silent
    mp4/mov), or its picture packets copied into a silent mp4. ValueError if the picture cannot go as is."""
    if plan.unchanged is None:
        raise ValueError(f"{Path(plan.path).name}: this picture is re-encoded for any upload")
    return _write_upload(plan, plan.unchanged, workdir, None)


def _write_upload(plan: UploadPlan, action: str, workdir: PathLike, check: Callable[[], None] | None) -> tuple[str, bool]:
    if action == "as is":
        return plan.path, False
    out = _new_path(workdir, f"{Path(plan.path).stem}-proxy-", ".mp4")
    try:
        if action == "copy":
            _remux(plan.path, out, None, 0)
        else:
            _encode_proxy(plan.path, plan.info, plan.rule, out, plan.rate, plan.options, check)
    except BaseException:
        Path(out).unlink(missing_ok=True)
        raise
    log.info("upload proxy %s -> %s (%s)", Path(plan.path).name, Path(out).name,
             "copied" if action == "copy" else "encoded")
    return out, True


def constant_rate_for(path: PathLike, info: VideoInfo) -> Fraction | None:
    """None for a constant-rate picture; for a variable-rate one (frames of different lengths, as phones
    record in low light), the standard rate nearest its shortest common frame, to convert it to.

    Only read when the stream's average and nominal rates disagree (its probe says when they agree): then the
    packet timestamps are scanned (not decoded). Jitter of a timestamp tick or two is not variable."""
    if info.steady_rate:
        return None
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        nominal = stream.base_rate or stream.guessed_rate
        if nominal and abs(info.fps - nominal) <= nominal / 1000:
            return None
        times = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
        steps = np.diff(np.array(times, np.float64)) * float(stream.time_base)
    if steps.size < 2:
        return None
    typical = float(np.median(steps))
    if typical <= 0 or float(steps.max() - steps.min()) <= 0.25 * typical:
        return None
    rate = min(_STANDARD_RATES, key=lambda r: abs(float(r) * typical - 1))
    return rate if abs(float(rate) * typical - 1) <= 0.02 else Fraction(max(1, round(1 / typical)))


def _is_mp4(path: PathLike, info: VideoInfo) -> bool:
    if info.container:
        return bool(_MP4_FORMATS & set(info.container.split(",")))
    with av.open(os.fspath(path)) as container:
        return bool(_MP4_FORMATS & set(container.format.name.split(",")))


def proxy_rate(fps: Fraction, max_fps: int) -> Fraction:
    """The proxy's frame rate: the source's own if allowed; else an even fraction of it when that keeps
    at least 24 fps (60 -> 30, 59.94 -> 29.97, 50 -> 25, 120 -> 30), so frames are dropped at a regular
    cadence; else max_fps itself."""
    if fps <= max_fps:
        return fps
    even = fps / math.ceil(fps / max_fps)
    return even if even >= 24 else Fraction(max_fps)


def _proxy_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Coded size of the proxy: short side scaled down to short_side, aspect kept, both even."""
    scale = min(1.0, short_side / min(width, height))

    def even(x: float) -> int:
        return max(2, round(x * scale / 2) * 2)

    return even(width), even(height)


def _proxy_frames(info: VideoInfo, rate: Fraction) -> int:
    """Frames of a proxy at `rate`: the source's duration kept within one frame."""
    return max(1, round(info.duration * rate))


def _encode_proxy(
    path: PathLike, info: VideoInfo, rule: ProxyRule, out: str, fps: Fraction, options: dict[str, str],
    check: Callable[[], None] | None = None,
) -> None:
    """Decode (frame and slice threads), place frames by timestamp at a constant rate (the source's `fps`
    capped by the rule; duration kept) skipping unshown ones before any scaling, scale (bilinear, one
    scaler for the whole clip), encode H.264 8-bit 4:2:0. `check()` before each frame is encoded."""
    rate = proxy_rate(fps, rule.max_fps)
    count = _proxy_frames(info, rate)
    scaler = VideoReformatter()
    with av.open(os.fspath(path)) as src, av.open(out, "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        width, height = _proxy_size(vin.codec_context.width, vin.codec_context.height, rule.short_side)
        vout = _add_h264(dst, width, height, rate, options)
        written = 0
        for frame, repeats in _resample_frames(src.decode(vin), vin.time_base, rate, count):
            if check is not None:
                check()
            small = scaler.reformat(frame, width=width, height=height, format="yuv420p", interpolation="BILINEAR")
            if written == 0:
                _copy_rotation(frame, vout)
            small.time_base = vout.codec_context.time_base
            for _ in range(repeats):
                small.pts = written
                dst.mux(vout.encode(small))
                written += 1
        dst.mux(vout.encode(None))


def _resample_frames(
    frames: Iterator[av.VideoFrame], time_base: Fraction, rate: Fraction, count: int
) -> Iterator[tuple[av.VideoFrame, int]]:
    """Sample-and-hold by timestamp: output frame j (at j/rate) shows the last source frame that started
    at or before j/rate. Yields (frame, how many output frames show it); frames shown 0 times are
    skipped before any scaling is spent on them. Exactly `count` output frames in all."""
    held: av.VideoFrame | None = None
    start: Fraction | None = None
    j = 0
    for frame in frames:
        t = Fraction(frame.pts) * time_base if frame.pts is not None else None
        if start is None:
            start = t if t is not None else Fraction(0)
        if held is not None and t is not None:
            upto = min(count, math.ceil((t - start) * rate))  # output frames strictly before t
            if upto > j:
                yield held, upto - j
                j = upto
        held = frame
        if j >= count:
            return
    if held is not None and count > j:
        yield held, count - j


def frames_info(frames: np.ndarray, fps: Fraction) -> VideoInfo:
    """What probe() would say of these frames encoded: frame i at exactly i/fps."""
    n, height, width = frames.shape[:3]
    return VideoInfo(width=width, height=height, fps=fps, frames=n, duration=Fraction(n) / fps, codec="",
                     pix_fmt="", has_audio=False, size_bytes=0)


def frames_to_proxy(frames: np.ndarray, fps: Fraction, rule: ProxyRule, workdir: PathLike) -> str:
    """The model's proxy made straight from frames, with no full-resolution file: each frame turned into
    8-bit RGB in a per-thread buffer and scaled on the way, _SCALE_THREADS frames at a time, in order into
    the encoder. The rate is capped as for a file (proxy_rate, sample-and-hold); the duration is kept."""
    n = frames.shape[0]
    rate = proxy_rate(fps, rule.max_fps)
    count = max(1, round(Fraction(n) / fps * rate))
    shown = [min(n - 1, math.floor(j * fps / rate)) for j in range(count)]  # output frame j shows frame shown[j]
    runs = iter([(i, len(list(group))) for i, group in itertools.groupby(shown)])
    size = _proxy_size(frames.shape[2], frames.shape[1], rule.short_side)
    scale = _FrameScaler(frames, size)
    out = _new_path(workdir, "frames-proxy-", ".mp4")
    with av.open(out, "w", format="mp4", options={"movflags": "+faststart"}) as dst, \
            ThreadPoolExecutor(_SCALE_THREADS, thread_name_prefix="sonify-proxy") as pool:
        stream = _add_h264(dst, *size, rate, _H264_PROXY)
        pending: deque[tuple[Future[av.VideoFrame], int]] = deque()
        written = 0
        while True:
            while len(pending) < 2 * _SCALE_THREADS and (run := next(runs, None)) is not None:
                pending.append((pool.submit(scale, run[0]), run[1]))  # bounded look-ahead: bounded memory
            if not pending:
                break
            future, repeats = pending.popleft()
            small = future.result()
            for _ in range(repeats):
                small.pts = written
                dst.mux(stream.encode(small))
                written += 1
        dst.mux(stream.encode(None))
    return out


class _FrameScaler:
    """One frame of `frames` as a small yuv420p VideoFrame; callable from several threads at once (each
    has its own 8-bit buffer: PyAV and numpy release the GIL while they work)."""

    def __init__(self, frames: np.ndarray, size: tuple[int, int]) -> None:
        self.frames, self.size = frames, size
        self._local = threading.local()

    def __call__(self, index: int) -> av.VideoFrame:
        to_u8 = getattr(self._local, "to_u8", None)
        if to_u8 is None:
            to_u8 = self._local.to_u8 = _U8Converter(self.frames.shape[1], self.frames.shape[2], self.frames.dtype)
        rgb = av.VideoFrame.from_ndarray(to_u8(self.frames[index]), format="rgb24")
        width, height = self.size
        return rgb.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")


def _copy_rotation(frame: av.VideoFrame, stream: av.VideoStream) -> None:
    """Keep the source's display matrix: phone clips stay upright without rotating pixels."""
    for side in frame.side_data:
        if side.type.name == "DISPLAYMATRIX":
            stream.set_display_matrix(np.frombuffer(bytes(side), dtype=np.int32).tolist())


# ---------------------------------------------------------------- audio


def decode_audio(path: PathLike, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """decode_result's sound and rate (see there)."""
    audio, rate, _ = decode_result(path, max_seconds)
    return audio, rate


def decode_result(path: PathLike, max_seconds: float | None = None) -> tuple[np.ndarray, int, str]:
    """The first audio stream as float32 [C, T] at its native rate and layout, and the file's title tag ("" when it
    has none), read in one opening of the file.

    Samples are placed by their timestamps relative to the file's start, so encoder priming (negative
    timestamps) is dropped and a stream that starts late is preceded by silence: sample 0 is t = 0,
    in sync with the picture of the same file. With `max_seconds` (a provider's result) the layout is
    checked before anything is decoded (1 to MAX_AUDIO_CHANNELS channels, AUDIO_RATES), and a sound that
    would run longer — or a timestamp that jumps past it — is refused before it is stored, so the array
    never outgrows the bound."""
    name = Path(path).name
    container = _open_input(path, "audio")
    try:
        if not container.streams.audio:
            raise ValidationError("audio", f"{name} has no audio stream")
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            raise ValidationError("audio", f"{name}: its sound is in a format PyAV cannot decode")
        if max_seconds is not None:
            _check_layout(stream.codec_context.channels, stream.codec_context.sample_rate, name)
        origin = max(0, container.start_time or 0) / av.time_base  # µs -> s
        audio, rate = _decode_into_buffer(container, stream, origin, max_seconds, name)
        tag = container.metadata.get("title", "")
    except _UNREADABLE as exc:
        raise ValidationError("audio", f"cannot decode {name}: {exc}") from exc
    finally:
        container.close()
    if audio.shape[1] == 0:
        raise ValidationError("audio", f"{name} has no audio samples")
    return audio, rate, tag


def _check_layout(channels: int, rate: int, name: str) -> None:
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise ValidationError("audio", f"{name} has {channels} channels (1 to {MAX_AUDIO_CHANNELS} are taken)")
    if not AUDIO_RATES[0] <= rate <= AUDIO_RATES[1]:
        raise ValidationError("audio", f"{name} is sampled at {rate} Hz ({AUDIO_RATES[0]} to {AUDIO_RATES[1]} are taken)")


def _decode_into_buffer(
    container: av.container.InputContainer, stream: av.AudioStream, origin: float, max_seconds: float | None,
    name: str,
) -> tuple[np.ndarray, int]:
    """Every decoded frame, placed at its start sample in one growing array (at most max_seconds long).
    Frames are converted to packed float and de-interleaved here: PyAV crashes reading planar frames of 8
    or more channels."""
    buffer: _SampleBuffer | None = None
    resampler: av.AudioResampler | None = None
    rate, channels, position = stream.rate, 0, 0
    for frame in container.decode(stream):
        if resampler is None:
            rate, channels = frame.sample_rate, len(frame.layout.channels)
            limit = None
            if max_seconds is not None:
                _check_layout(channels, rate, name)
                limit = math.ceil(max_seconds * rate)
            buffer = _SampleBuffer(channels, limit, f"{name} runs longer than the {max_seconds} s expected")
            resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=rate)
        if frame.pts is not None and frame.time_base is not None:
            position = round((float(frame.pts * frame.time_base) - origin) * rate)
        packed = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        if packed:
            block = np.concatenate(packed).reshape(-1, channels).T
            buffer.put(position, block)
            position += block.shape[1]
    return (buffer.samples() if buffer is not None else np.zeros((1, 0), np.float32)), rate


class _SampleBuffer:
    """[C, T] float32 samples placed by start sample. With a `limit` (a result) the array is allocated at
    that bound once — np.zeros takes pages only as they are written — and a sample past it is refused
    (ValidationError `too_long`); without one it grows by a quarter as needed. Samples before 0 are dropped."""

    def __init__(self, channels: int, limit: int | None, too_long: str) -> None:
        self.limit, self.too_long = limit, too_long
        self.array = np.zeros((channels, limit if limit is not None else 1 << 20), np.float32)
        self.length = 0

    def put(self, start: int, block: np.ndarray) -> None:
        skip = max(0, -start)
        end = start + block.shape[1]
        if skip >= block.shape[1]:
            return
        if self.limit is not None and end > self.limit:
            raise ValidationError("audio", self.too_long)
        if end > self.array.shape[1]:
            size = max(end, self.array.shape[1] + self.array.shape[1] // 4)
            grown = np.zeros((self.array.shape[0], min(size, self.limit or size)), np.float32)
            grown[:, : self.length] = self.array[:, : self.length]
            self.array = grown
        self.array[:, start + skip : end] = block[:, skip:]
        self.length = max(self.length, end)

    def samples(self) -> np.ndarray:
        return self.array[:, : self.length].copy() if self.length < self.array.shape[1] else self.array


def check_audio(samples: np.ndarray, sample_rate: int, name: str = "audio") -> np.ndarray:
    """An AUDIO's samples as float32 [C, T], or ValidationError(name) saying what is wrong with them.

    [T] is mono; 1 to MAX_AUDIO_CHANNELS channels; at least one sample; a rate from 8 to 192 kHz.
    Float samples of any width are taken (NaN/Inf refused; beyond ±1 clipped when written); integer PCM
    (int16 as some loaders give it, int32, uint8...) is scaled to ±1 by its type's full scale."""
    array = np.asarray(samples)
    if isinstance(sample_rate, float) and sample_rate.is_integer():
        sample_rate = int(sample_rate)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not (
        AUDIO_RATES[0] <= sample_rate <= AUDIO_RATES[1]
    ):
        raise ValidationError(name, f"sample rate must be {AUDIO_RATES[0]} to {AUDIO_RATES[1]} Hz, got {sample_rate!r}")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise ValidationError(name, f"must be [channels, samples], got shape {list(array.shape)}")
    if not 1 <= array.shape[0] <= MAX_AUDIO_CHANNELS:
        raise ValidationError(name, f"must have 1 to {MAX_AUDIO_CHANNELS} channels, got {array.shape[0]}")
    if array.shape[1] == 0:
        raise ValidationError(name, "has no samples")
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        bits = array.dtype.itemsize * 8
        offset = 0 if np.issubdtype(array.dtype, np.signedinteger) else 2 ** (bits - 1)
        return ((array.astype(np.float64) - offset) / 2 ** (bits - 1)).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValidationError(name, f"samples must be float or integer PCM, got {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValidationError(name, "contains NaN or infinite samples")
    return array


def fit_length(audio: np.ndarray, sample_rate: int, seconds: Fraction | float) -> np.ndarray:
    """Trim or zero-pad the last axis to exactly round(seconds * sample_rate) samples."""
    n = round(Fraction(seconds) * sample_rate)
    have = audio.shape[-1]
    if have >= n:
        return np.ascontiguousarray(audio[..., :n])
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, n - have)]
    return np.pad(audio, pad)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """[C, T] float32 at `to_rate` through FFmpeg's resampler (band-limited, not linear
    interpolation), exactly round(T * to_rate / from_rate) samples long and aligned at t = 0."""
    audio = _as_channels(audio)
    if from_rate == to_rate:
        return audio
    channels, length = audio.shape
    layout = _layout(channels, "aac")
    resampler = av.AudioResampler(format="flt", layout=layout, rate=to_rate)
    pieces: list[np.ndarray] = []
    for i in range(0, length, _ENCODE_CHUNK):
        packed = np.ascontiguousarray(audio[:, i : i + _ENCODE_CHUNK].T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = from_rate, i, Fraction(1, from_rate)
        pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    out = np.concatenate(pieces).reshape(-1, channels).T if pieces else np.zeros((channels, 0), np.float32)
    return fit_length(out, to_rate, Fraction(length, from_rate))


def _as_channels(audio: np.ndarray) -> np.ndarray:
    """[C, T] float32 clipped to [-1, 1]; a 1-D array is mono."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[0] == 0:
        raise ValidationError("audio", f"must be [channels, samples], got shape {tuple(audio.shape)}")
    return np.clip(audio, -1.0, 1.0)


def _layout(channels: int, codec: str) -> str:
    if codec.startswith("pcm_") and channels > 2:
        return f"{channels} channels"  # any count: wav stores no speaker positions we could know
    if channels in _LAYOUTS and channels <= _MAX_CHANNELS.get(codec, 8):
        return _LAYOUTS[channels]
    raise ValidationError("audio", f"{codec} cannot store {channels} channels")


def _add_audio(container: av.container.OutputContainer, codec: str, sample_rate: int, channels: int) -> av.AudioStream:
    stream = container.add_stream(codec, rate=sample_rate, layout=_layout(channels, codec))
    if codec == "aac":
        stream.bit_rate = 96_000 * min(channels, 2) if channels <= 2 else 64_000 * channels
    return stream


def _audio_packets(stream: av.AudioStream, audio: np.ndarray, sample_rate: int) -> Iterator[av.Packet]:
    """Encode [C, T] float32 from t = 0 (the codec's priming is left to the muxer's edit list). Frames are
    handed over packed ("flt"): PyAV cannot build planar frames of more than 8 channels."""
    layout = stream.codec_context.layout
    for i in range(0, audio.shape[1], _ENCODE_CHUNK):
        packed = np.ascontiguousarray(audio[:, i : i + _ENCODE_CHUNK].T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, i, Fraction(1, sample_rate)
        yield from stream.encode(frame)
    yield from stream.encode(None)


def write_audio(
    audio: np.ndarray,
    sample_rate: int,
    path: PathLike,
    *,
    codec: str | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Sound alone in a file; the codec follows the suffix (.wav pcm_s16le, .flac, .mp3, .m4a AAC)."""
    audio = _as_channels(audio)
    suffix = Path(path).suffix.lower()
    codec = codec or _AUDIO_CODECS.get(suffix)
    if codec is None:
        raise ValidationError("audio", f"no audio codec for {suffix!r} files")
    if codec == "aac":
        audio, sample_rate = _for_aac(audio, sample_rate)
    fmt = "ipod" if suffix == ".m4a" else None
    with av.open(os.fspath(path), "w", format=fmt) as container:
        container.metadata.update(metadata or {})
        stream = _add_audio(container, codec, sample_rate, audio.shape[0])
        for packet in _audio_packets(stream, audio, sample_rate):
            container.mux(packet)
    return os.fspath(path)


def write_wav(audio: np.ndarray, sample_rate: int, path: PathLike) -> str:
    """Lossless 16-bit PCM wav, any channel count; samples clipped to [-1, 1]."""
    return write_audio(audio, sample_rate, path, codec="pcm_s16le")


# ---------------------------------------------------------------- mux


def mux(
    video_path: PathLike,
    audio: np.ndarray,
    sample_rate: int,
    out_path: PathLike,
    *,
    metadata: dict[str, str] | None = None,
) -> str:
    """The picture of video_path, packets copied unchanged, with `audio` as its only sound (AAC, from
    t = 0). Old audio and other streams are dropped. The format follows out_path (mp4 unless .mov/.mkv)."""
    _remux(video_path, out_path, *_for_aac(_as_channels(audio), sample_rate), metadata)
    return os.fspath(out_path)


def _for_aac(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """AAC takes only the standard rates up to 96 kHz: any other rate is resampled to the next standard
    one up (nothing lost), and 96 kHz is the ceiling (above it, nothing anyone hears)."""
    if sample_rate in _AAC_RATES:
        return audio, sample_rate
    target = min((r for r in _AAC_RATES if r >= sample_rate), default=max(_AAC_RATES))
    return resample(audio, sample_rate, target), target


def _remux(
    video_path: PathLike,
    out_path: PathLike,
    audio: np.ndarray | None,
    sample_rate: int,
    metadata: dict[str, str] | None = None,
) -> None:
    """Copy the first picture stream into out_path, with `audio` encoded as AAC if given."""
    suffix = Path(out_path).suffix.lower()
    # use_metadata_tags: keys of any name are kept (ComfyUI's SaveVideo stores the workflow as "prompt" and
    # "workflow"), not only the ones the MP4 format names
    flags = "+faststart+use_metadata_tags" if metadata else "+faststart"
    options = {"movflags": flags} if suffix in ("", ".mp4", ".mov", ".m4v") else {}
    with _open_input(video_path, "video") as src:
        if not src.streams.video:
            raise ValidationError("video", f"{Path(video_path).name} has no video stream")
        vin = src.streams.video[0]
        with av.open(os.fspath(out_path), "w", format=None if suffix else "mp4", options=options) as dst:
            dst.metadata.update(metadata or {})
            vout = dst.add_stream_from_template(vin)
            packets: Iterator[av.Packet] = iter(())
            if audio is not None:
                packets = _audio_packets(_add_audio(dst, "aac", sample_rate, audio.shape[0]), audio, sample_rate)
            _interleave(dst, src.demux(vin), vout, packets)


def _interleave(
    dst: av.container.OutputContainer, video: Iterator[av.Packet], vout: av.VideoStream, audio: Iterator[av.Packet]
) -> None:
    """Write copied picture packets and new audio packets in time order (good interleaving for players
    that stream the file)."""
    pending = next(audio, None)
    for packet in video:
        if packet.dts is None or packet.size == 0:
            continue
        t = packet.dts * packet.time_base
        while pending is not None and pending.pts is not None and pending.pts * pending.time_base <= t:
            dst.mux(pending)
            pending = next(audio, None)
        packet.stream = vout
        dst.mux(packet)
    while pending is not None:
        dst.mux(pending)
        pending = next(audio, None)


def copy_mux(video_path: PathLike, audio_path: PathLike, out_path: PathLike, seconds: Fraction,
             metadata: dict[str, str] | None = None) -> bool:
    """The picture of video_path with the AAC sound of audio_path, both copied packet for packet (no
    re-encode), the sound cut at `seconds`: packets from t = 0 on (priming kept), the last one's duration
    shortened so that the mp4 edit list (in samples) ends the sound with the picture. Sample 0 is t = 0 of
    audio_path's timeline, as decode_audio places it. Returns False and writes nothing when the sound is
    not AAC or ends before `seconds`: padding needs an encoder (use mux with fitted samples). metadata:
    container tags, as mux writes them."""
    with _open_input(audio_path, "audio") as asrc:
        if not asrc.streams.audio or asrc.streams.audio[0].codec_context.name != "aac":
            return False
        ain = asrc.streams.audio[0]
        shift = round(Fraction(max(0, asrc.start_time or 0), av.time_base) / ain.time_base)
        end = round(Fraction(seconds) / ain.time_base)
        packets = [p for p in asrc.demux(ain) if p.size and p.pts is not None and p.pts - shift < end]
        if not packets or max(p.pts + (p.duration or 0) for p in packets) - shift < end:
            return False
        suffix = Path(out_path).suffix.lower()
        options = {}
        if suffix in ("", ".mp4", ".mov", ".m4v"):  # edit lists counted in samples: the cut is exact
            options = {"movflags": "+faststart", "movie_timescale": str(ain.codec_context.sample_rate)}
        with _open_input(video_path, "video") as vsrc, av.open(
            os.fspath(out_path), "w", format=None if suffix else "mp4", options=options
        ) as dst:
            dst.metadata.update(metadata or {})
            vin = vsrc.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            aout = dst.add_stream_from_template(ain)
            _interleave(dst, vsrc.demux(vin), vout, _cut_packets(packets, aout, shift, end))
    return True


def rewrap(path: PathLike, out_path: PathLike) -> str:
    """The same picture and sound (the first stream of each) in the container out_path's suffix names,
    packets copied unchanged."""
    suffix = Path(out_path).suffix.lower()
    options = {"movflags": "+faststart"} if suffix in (".mp4", ".mov") else {}
    with _open_input(path, "video") as src, av.open(os.fspath(out_path), "w", options=options) as dst:
        streams = [s[0] for s in (src.streams.video, src.streams.audio) if s]
        outs = {stream.index: dst.add_stream_from_template(stream) for stream in streams}
        for packet in src.demux(streams):
            if packet.dts is None or packet.size == 0:
                continue
            packet.stream = outs[packet.stream.index]
            dst.mux(packet)
    return os.fspath(out_path)


def _cut_packets(packets: list[av.Packet], stream: av.AudioStream, shift: int, end: int) -> Iterator[av.Packet]:
    """The packets moved `shift` ticks earlier, onto `stream`, the last one ending at `end`."""
    for packet in packets:
        packet.pts -= shift
        packet.dts = packet.pts if packet.dts is None else packet.dts - shift
        if packet.pts + packet.duration > end:
            packet.duration = end - packet.pts
        packet.stream = stream
        yield packet


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
