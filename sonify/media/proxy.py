"""What is uploaded: the source as it is when it fits the model's rule, else a proxy (short side ~480 px, at most
30 fps, no sound) made from the file or straight from frames."""

from __future__ import annotations

import itertools
import logging
import math
import os
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

from ..catalog import ProxyRule
from .decode_ahead import decoded_ahead
from .mux import _remux
from .pictures import _H264_SOURCE, _add_h264, _new_path, _U8Converter
from .video import _MP4_FORMATS, _PLAIN_PIX_FMTS, _STANDARD_RATES, PathLike, VideoInfo, probe

log = logging.getLogger("sonify")


# The models look at <= 384 px. Seen at that size this is closer to the source than veryfast crf 26 was (by about
# 2 dB on the benchmark's clips) for about 15 % less encoder time, at 40-50 % more bytes (0.4-0.7 MB for 10 s).
_H264_PROXY = {"preset": "superfast", "crf": "28"}


_SCALE_THREADS = 2  # frames made ready for the proxy encoder at once (numpy and swscale release the GIL)


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
    """(file to upload, whether it is a new file).

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
            _remux(plan.path, out, None)
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
    """Decode (frame and slice threads, a few frames ahead: decode_ahead), place frames by timestamp at a constant rate (the source's `fps`
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
        with decoded_ahead(src, vin) as decoded:
            for frame, repeats in _resample_frames(decoded, vin.time_base, rate, count):
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
