"""Sound: decode a result to float32 at its own rate, check a voice, fit the sound to the picture's exact length,
resample, write WAV/FLAC/MP3/M4A."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .. import settings
from ..errors import ValidationError
from .video import _UNREADABLE, PathLike, _open_input

log = logging.getLogger("sonify")


_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


# No raw ".aac" (ADTS): it cannot record the encoder's priming, so its sound would start 1024 samples late.
_AUDIO_CODECS = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".m4a": "aac"}


_MAX_CHANNELS = {"libmp3lame": 2}


# Lossless sound in a video (the command line's --audio-codec): the encoder's sample format. FLAC is 24-bit; PCM
# is 32-bit float, the decoded samples themselves.
_LOSSLESS_FORMATS = {"pcm_f32le": "flt", "flac": "s32"}


AUDIO_RATES = (8000, 192000)  # Hz: telephone to studio; outside, surely a mistake (or not a rate)


MAX_AUDIO_CHANNELS = 8  # 7.1: what AAC (and so a video's soundtrack) can carry


_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


_ENCODE_CHUNK = 4096  # samples per encoder input frame


# ---------------------------------------------------------------- audio


def decode_audio(path: PathLike, max_seconds: float | None = None, keep: bool = True) -> tuple[np.ndarray, int]:
    """decode_result's sound and rate (see there)."""
    audio, rate, _ = decode_result(path, max_seconds, keep)
    return audio, rate


def decode_result(path: PathLike, max_seconds: float | None = None,
                  keep: bool = True) -> tuple[np.ndarray, int, str]:
    """The first audio stream as float32 [C, T] at its native rate and layout, and the file's title tag ("" when it
    has none), read in one opening of the file.

    Samples are placed by their timestamps relative to the file's start, so encoder priming (negative
    timestamps) is dropped and a stream that starts late is preceded by silence: sample 0 is t = 0,
    in sync with the picture of the same file. With `max_seconds` (a provider's result) the layout is
    checked before anything is decoded (1 to MAX_AUDIO_CHANNELS channels, AUDIO_RATES), and a sound that
    would run longer — or a timestamp that jumps past it — is refused before it is stored, so the array
    never outgrows the bound. `keep=False`: all of it is checked, none of it kept (the sound comes back
    [C, 0]): a long clip's window, verified when it arrives and decoded again when it is joined."""
    name = Path(path).name
    with _opened_sound(path, max_seconds) as (container, stream, origin):
        audio, rate = _decode_into_buffer(container, stream, origin, max_seconds, name, keep)
        return audio, rate, container.metadata.get("title", "")


@contextlib.contextmanager
def _opened_sound(path: PathLike, max_seconds: float | None) -> Iterator[tuple[av.container.InputContainer,
                                                                              av.AudioStream, float]]:
    """The file's first audio stream, checked (and, with `max_seconds`, a result's layout), and where the file's
    timeline starts (seconds); what PyAV cannot read in it is a ValidationError naming the file."""
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
        yield container, stream, max(0, container.start_time or 0) / av.time_base  # µs -> s
    except _UNREADABLE as exc:
        raise ValidationError("audio", f"cannot decode {name}: {exc}") from exc
    finally:
        container.close()


def _check_layout(channels: int, rate: int, name: str) -> None:
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise ValidationError("audio", f"{name} has {channels} channels (1 to {MAX_AUDIO_CHANNELS} are taken)")
    if not AUDIO_RATES[0] <= rate <= AUDIO_RATES[1]:
        raise ValidationError("audio", f"{name} is sampled at {rate} Hz ({AUDIO_RATES[0]} to {AUDIO_RATES[1]} are taken)")


def _decode_into_buffer(
    container: av.container.InputContainer, stream: av.AudioStream, origin: float, max_seconds: float | None,
    name: str, keep: bool,
) -> tuple[np.ndarray, int]:
    """Every decoded frame, placed at its start sample in one growing array (at most max_seconds long)."""
    buffer: _SampleBuffer | None = None
    rate = stream.rate
    for rate, position, block in _placed_frames(container, stream, origin, max_seconds, name):
        if buffer is None:
            limit = math.ceil(max_seconds * rate) if max_seconds is not None else None
            buffer = _SampleBuffer(block.shape[0], limit, _too_long(name, max_seconds), keep)
        buffer.put(position, block)
    if buffer is None or buffer.length == 0:
        raise ValidationError("audio", f"{Path(container.name).name} has no audio samples")
    return buffer.samples(), rate


def _placed_frames(
    container: av.container.InputContainer, stream: av.AudioStream, origin: float, max_seconds: float | None,
    name: str,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Each decoded frame as (its rate, the sample it starts at by its timestamp, its samples float32 [C, n]); with
    `max_seconds`, the layout checked on the first frame. Frames are converted to packed float and de-interleaved
    here: PyAV crashes reading planar frames of 8 or more channels."""
    resampler: av.AudioResampler | None = None
    rate, channels, position = stream.rate, 0, 0
    for frame in container.decode(stream):
        if resampler is None:
            rate, channels = frame.sample_rate, len(frame.layout.channels)
            if max_seconds is not None:
                _check_layout(channels, rate, name)
            resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=rate)
        if frame.pts is not None and frame.time_base is not None:
            position = round((float(frame.pts * frame.time_base) - origin) * rate)
        packed = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        if packed:
            block = np.concatenate(packed).reshape(-1, channels).T
            yield rate, position, block
            position += block.shape[1]


def _too_long(name: str, max_seconds: float | None) -> str:
    return f"{name} runs longer than the {max_seconds} s expected"


def decode_blocks(path: PathLike, max_seconds: float, size: int = 1 << 16) -> Iterator[np.ndarray]:
    """decode_audio(path, max_seconds)'s sound as float32 [C, n] blocks of `size` samples (the last one shorter),
    in order from sample 0, given out as the file is decoded: no more than about two blocks are held, however long
    the sound. Samples are placed as decode_audio places them, except that a frame stepping back before the
    samples not given out yet adds only what lies after them. A result verified by decode_audio is what this
    gives (its rate: decode_audio's)."""
    name = Path(path).name
    with _opened_sound(path, max_seconds) as (container, stream, origin):
        in_order: _InOrder | None = None
        for rate, position, block in _placed_frames(container, stream, origin, max_seconds, name):
            if in_order is None:
                in_order = _InOrder(block.shape[0], math.ceil(max_seconds * rate), size, _too_long(name, max_seconds))
            yield from in_order.put(position, block)
        if in_order is None or in_order.length == 0:
            raise ValidationError("audio", f"{name} has no audio samples")
        yield from in_order.rest()


class _InOrder:
    """Blocks placed at their start sample (as _SampleBuffer places them, within `limit`), given out in order as
    [C, size] blocks once `size` samples are placed from the first not given out yet (a gap is silence)."""

    def __init__(self, channels: int, limit: int, size: int, too_long: str) -> None:
        self.limit, self.size, self.too_long = limit, size, too_long
        self.pending = np.zeros((channels, 2 * size), np.float32)  # samples from `done` on; zeros past `filled`
        self.done = self.filled = 0

    @property
    def length(self) -> int:
        return self.done + self.filled

    def put(self, start: int, block: np.ndarray) -> Iterator[np.ndarray]:
        end = start + block.shape[1]
        if end <= self.done:
            return
        if end > self.limit:
            raise ValidationError("audio", self.too_long)
        while start - self.done >= self.size:  # a gap of a whole block or more before it
            yield self._shift()
        if end - self.done > self.pending.shape[1]:
            self.pending = np.pad(self.pending, [(0, 0), (0, end - self.done - self.pending.shape[1])])
        first = max(start, self.done)
        self.pending[:, first - self.done:end - self.done] = block[:, first - start:]
        self.filled = max(self.filled, end - self.done)
        while self.filled >= self.size:
            yield self._shift()

    def rest(self) -> Iterator[np.ndarray]:
        if self.filled:
            yield self.pending[:, :self.filled].copy()

    def _shift(self) -> np.ndarray:
        """The first block of what is pending, given out; the rest moved to the front."""
        size, pending = self.size, self.pending
        out = pending[:, :size].copy()
        rest = max(0, self.filled - size)
        pending[:, :rest] = pending[:, size:size + rest]
        pending[:, rest:max(rest, self.filled)] = 0
        self.done, self.filled = self.done + size, rest
        return out


class _SampleBuffer:
    """[C, T] float32 samples placed by start sample. With a `limit` (a result) the array is allocated at
    that bound once — np.zeros takes pages only as they are written — and a sample past it is refused
    (ValidationError `too_long`); without one it grows by a quarter as needed. Samples before 0 are dropped.
    Without `keep`, only the length is kept (and checked)."""

    def __init__(self, channels: int, limit: int | None, too_long: str, keep: bool = True) -> None:
        self.limit, self.too_long, self.keep = limit, too_long, keep
        size = (limit if limit is not None else 1 << 20) if keep else 0
        self.array = np.zeros((channels, size), np.float32)
        self.length = 0

    def put(self, start: int, block: np.ndarray) -> None:
        skip = max(0, -start)
        end = start + block.shape[1]
        if skip >= block.shape[1]:
            return
        if self.limit is not None and end > self.limit:
            raise ValidationError("audio", self.too_long)
        if not self.keep:
            self.length = max(self.length, end)
            return
        if end > self.array.shape[1]:
            size = max(end, self.array.shape[1] + self.array.shape[1] // 4)
            grown = np.zeros((self.array.shape[0], min(size, self.limit or size)), np.float32)
            grown[:, : self.length] = self.array[:, : self.length]
            self.array = grown
        self.array[:, start + skip : end] = block[:, skip:]
        self.length = max(self.length, end)

    def samples(self) -> np.ndarray:
        if not self.keep:
            return self.array
        return self.array[:, : self.length].copy() if self.length < self.array.shape[1] else self.array


def check_audio(samples: np.ndarray, sample_rate: int, name: str = "audio") -> np.ndarray:
    """An AUDIO's samples as float32 [C, T], or ValidationError(name) saying what is wrong with them.

    [T] is mono; 1 to MAX_AUDIO_CHANNELS channels; at least one sample; a rate from 8 to 192 kHz.
    Integer PCM (int16 as some loaders give it, int32, uint8...) is scaled to ±1 by its type's full scale.
    Float samples of any width are taken as float32 (NaN/Inf refused) at their level (see _float_level)."""
    try:
        array = np.asarray(samples)
    except (TypeError, ValueError) as exc:  # a tensor of a type numpy lacks (bfloat16): the node converts those
        raise ValidationError(name, f"samples must be float or integer PCM ({exc})") from None
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
    return _float_level(array, name)


FLOAT_HEADROOM = 2.0  # a float sound may peak this high (+6 dB): clipped to ±1 when written


PCM16_SCALE = 32768  # 16-bit PCM's full scale


def _float_level(array: np.ndarray, name: str) -> np.ndarray:
    """Float samples are meant to be within ±1. Up to ±FLOAT_HEADROOM they are taken as they are and clipped
    when written (lossy decoders overshoot full scale a little). Beyond that, whole numbers up to 32768 are
    16-bit PCM that was cast to float without being scaled (a loader's raw samples): scaled by 1/32768, as
    int16 is. Anything else is refused, naming the input: sent as is it would be clipped into a square wave
    that the model would be paid to use."""
    peak = float(np.abs(array).max())
    if peak <= FLOAT_HEADROOM:
        return array
    if peak <= PCM16_SCALE and np.array_equal(array, np.round(array)):
        log.info("%s: whole-number float samples up to %g, read as unscaled 16-bit PCM (scaled by 1/%d)",
                 name, peak, PCM16_SCALE)
        return array / np.float32(PCM16_SCALE)
    raise ValidationError(name, f"float samples must be within -1 to 1 (up to ±{FLOAT_HEADROOM:g} is clipped), or "
                                f"whole numbers up to {PCM16_SCALE} (16-bit PCM, scaled); got a peak of {peak:g}: "
                                "scale the sound to -1..1 first")


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


def speaker_layout(channels: int) -> str:
    """The standard speaker layout of 1 to 8 channels (FFmpeg's name: mono, stereo, ... 5.1, 7.1)."""
    return _LAYOUTS[channels]


def _layout(channels: int, codec: str) -> str:
    if codec.startswith("pcm_") and channels > 2:
        return f"{channels} channels"  # any count: wav stores no speaker positions we could know
    if channels in _LAYOUTS and channels <= _MAX_CHANNELS.get(codec, 8):
        return _LAYOUTS[channels]
    raise ValidationError("audio", f"{codec} cannot store {channels} channels")


def _add_audio(container: av.container.OutputContainer, codec: str, sample_rate: int, channels: int,
               lossless: bool = False) -> av.AudioStream:
    """A sound stream: AAC at SONIFY_AAC_KBPS a channel (settings.current(): the encoders are called from runs and
    from nodes alike, through calls that carry no run); `lossless`: in its _LOSSLESS_FORMATS sample format (else
    the encoder's first: a .flac file stays 16-bit, as it always was)."""
    stream = container.add_stream(codec, rate=sample_rate, layout=_layout(channels, codec))
    if codec == "aac":
        stream.bit_rate = settings.current().aac_kbps * 1000 * channels
    elif lossless:
        stream.codec_context.format = _LOSSLESS_FORMATS[codec]
    return stream


def _audio_packets(stream: av.AudioStream, blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[av.Packet]:
    """Encode float32 blocks [C, n] (one sound, in order) from t = 0, clipped to ±1 (the codec's priming is left
    to the muxer's edit list). Frames are handed over packed ("flt"): PyAV cannot build planar frames of more
    than 8 channels."""
    layout = stream.codec_context.layout
    fmt = "s32" if stream.codec_context.format.name == "s32" else "flt"  # 24-bit FLAC (LOSSLESS); else converted
    position = 0
    for audio in blocks:
        for i in range(0, audio.shape[1], _ENCODE_CHUNK):
            chunk = audio[:, i : i + _ENCODE_CHUNK]
            packed = np.ascontiguousarray(np.clip(chunk.T, -1.0, 1.0)).reshape(1, -1)
            if fmt == "s32":
                packed = to_24_bits(packed)
            frame = av.AudioFrame.from_ndarray(packed, format=fmt, layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, position, Fraction(1, sample_rate)
            position += chunk.shape[1]
            yield from stream.encode(frame)
    yield from stream.encode(None)


def to_24_bits(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 24-bit integers (rounded to the nearest step) in the top of an int32: what a
    24-bit FLAC stores and gives back exactly."""
    steps = np.clip(np.rint(np.asarray(audio, np.float64) * 2**23), -(2**23), 2**23 - 1)
    return steps.astype(np.int32) << 8


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
    options = {"movflags": "use_metadata_tags"} if fmt and metadata else {}  # keys of any name, as in _remux
    with av.open(os.fspath(path), "w", format=fmt, options=options) as container:
        container.metadata.update(metadata or {})
        stream = _add_audio(container, codec, sample_rate, audio.shape[0])
        for packet in _audio_packets(stream, [audio], sample_rate):
            container.mux(packet)
    return os.fspath(path)


def write_wav(audio: np.ndarray, sample_rate: int, path: PathLike) -> str:
    """Lossless 16-bit PCM wav, any channel count; samples clipped to [-1, 1]."""
    return write_audio(audio, sample_rate, path, codec="pcm_s16le")


def aac_rate(sample_rate: int) -> int:
    """The rate AAC stores a sound of `sample_rate` at: the rate itself if standard, else the next standard one
    up (nothing lost); 96 kHz is the ceiling (above it, nothing anyone hears)."""
    if sample_rate in _AAC_RATES:
        return sample_rate
    return min((r for r in _AAC_RATES if r >= sample_rate), default=max(_AAC_RATES))


def _for_aac(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """The sound at its aac_rate."""
    target = aac_rate(sample_rate)
    return (audio, sample_rate) if target == sample_rate else (resample(audio, sample_rate, target), target)
