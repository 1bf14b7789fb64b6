"""Loudness to a target: measured per ITU-R BS.1770-4, set with one gain.

The meter is FFmpeg's `ebur128` filter, run through PyAV (which Sonify has already): K-weighting, the 400 ms
blocks, the absolute (-70 LUFS) and relative (-10 LU) gates, and a true-peak meter that oversamples to 192 kHz.
pyloudnorm, the other well-kept implementation, needs scipy and has no true-peak meter.

Normalising is one gain for the whole sound, never a compressor or a limiter: the gain that brings the integrated
loudness to the target, unless that would put the true peak above the ceiling — then the gain that puts the peak on
the ceiling, and the sound stays quieter than the target (as streaming platforms treat a quiet, peaky track). A
long clip is normalised after its windows are joined, as one sound: no window is louder than its neighbour. Its
joined sound stays in its file (sound_file.py): `measure_file` and `normalise_file` read it block by block, with the
same numbers as `measure` and `normalise` of the whole array.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.filter
import numpy as np

from ..errors import ValidationError
from ..loudness_target import Target
from .audio import MAX_AUDIO_CHANNELS, speaker_layout
from .sound_file import SoundFile

ABSOLUTE_GATE = -70.0  # LUFS: BS.1770's absolute gate; a sound with no block above it has no loudness


_SEGMENT = Fraction(1, 10)  # s: the filter's metering step; it leaves out a last, partial step


_PEAK_STEP = 0.001  # the filter reports a linear true peak to 3 decimals


_CHUNK = 1 << 16  # samples handed to the filter at once


@dataclass(frozen=True)
class Level:
    """A sound's integrated loudness (LUFS; None: nothing above the absolute gate) and true peak (dBTP; None:
    digital silence)."""

    lufs: float | None
    true_peak_dbtp: float | None


@dataclass(frozen=True)
class Applied:
    """What normalising did: the gain, and the loudness and true peak the sound has now. `held`: the ceiling
    kept the gain below the one the target asked for."""

    target: Target
    gain_db: float
    lufs: float | None
    true_peak_dbtp: float | None
    held: bool

    def as_dict(self) -> dict[str, float | bool | None]:
        return {"target_lufs": self.target.lufs, "ceiling_dbtp": self.target.ceiling_dbtp,
                "gain_db": round(self.gain_db, 2), "lufs": _rounded(self.lufs),
                "true_peak_dbtp": _rounded(self.true_peak_dbtp), "held_by_ceiling": self.held}


def measure(samples: np.ndarray, rate: int) -> Level:
    """Integrated loudness and true peak of float32 [C, T] (1 to 8 channels, any rate PyAV takes)."""
    return Level(integrated(samples, rate), true_peak(samples, rate))


def measure_file(sound: SoundFile) -> Level:
    """measure() of a sound kept in its file, read block by block (three times: loudness, sample peak, true peak)."""
    sample_peak = max((_sample_peak(block) for block in sound.blocks()), default=0.0)
    return Level(_lufs(_ebur128(sound.blocks(), sound.channels, sound.rate, peak=False)),
                 _true_peak(sound.blocks(), sound.channels, sound.length, sound.rate, sample_peak))


def integrated(samples: np.ndarray, rate: int) -> float | None:
    """BS.1770-4 integrated loudness in LUFS (channels weighted by their position in the standard layout of their
    count: surrounds +1.5 dB, LFE left out); None when no 400 ms block is above the absolute gate (silence, or a
    sound shorter than one block)."""
    samples = np.asarray(samples, np.float32)
    return _lufs(_ebur128(_chunks(samples), samples.shape[0], rate, peak=False))


def true_peak(samples: np.ndarray, rate: int) -> float | None:
    """BS.1770-4 true peak in dBTP (oversampled to 192 kHz), rounded up to the meter's last digit; None for digital
    silence."""
    samples = np.asarray(samples, np.float32)
    return _true_peak(_chunks(samples), samples.shape[0], samples.shape[1], rate, _sample_peak(samples))


def normalise(samples: np.ndarray, rate: int, goal: Target, level: Level | None = None) -> tuple[np.ndarray, Applied]:
    """`samples` brought to `goal` by one gain (see the module docstring), and what was done. `level`: the sound's
    own, when measured already. A sound with no loudness (silence) is left as it is."""
    applied = _applied(goal, level or measure(samples, rate))
    return (samples if applied.gain_db == 0.0 else _scaled(samples, applied.gain_db)), applied


def normalise_file(sound: SoundFile, goal: Target, level: Level) -> tuple[SoundFile, Applied]:
    """normalise() of a sound kept in its file (`level`: measure_file's): a new file of its blocks, each scaled as
    it is read, or the same file when it is left as it is."""
    applied = _applied(goal, level)
    if applied.gain_db == 0.0:
        return sound, applied
    scaled = (_scaled(block, applied.gain_db) for block in sound.blocks())
    return SoundFile.written(scaled, sound.length, sound.rate), applied


def _applied(goal: Target, level: Level) -> Applied:
    """What one gain does to a sound of `level`: the gain that reaches `goal` unless the ceiling holds it lower;
    none for a sound with no loudness."""
    if level.lufs is None or level.true_peak_dbtp is None:
        return Applied(goal, 0.0, level.lufs, level.true_peak_dbtp, False)
    wanted = goal.lufs - level.lufs
    room = goal.ceiling_dbtp - level.true_peak_dbtp
    gain = min(wanted, room)
    return Applied(goal, gain, level.lufs + gain, level.true_peak_dbtp + gain, room < wanted)


def _scaled(samples: np.ndarray, gain_db: float) -> np.ndarray:
    return (np.asarray(samples, np.float32) * np.float32(10 ** (gain_db / 20))).astype(np.float32, copy=False)


def _lufs(readings: dict[str, str]) -> float | None:
    lufs = float(readings["lavfi.r128.I"]) if readings else ABSOLUTE_GATE
    return lufs if lufs > ABSOLUTE_GATE else None


def _sample_peak(samples: np.ndarray) -> float:
    return float(np.max(np.abs(samples), initial=0.0))


def _true_peak(blocks: Iterable[np.ndarray], channels: int, length: int, rate: int, sample_peak: float) -> float | None:
    """The true peak of the sound of `blocks` ([C, n] each, in order; `length` samples in all), whose sample peak is
    `sample_peak`. It is metered scaled to a sample peak of 1, where the meter's last digit is worth 0.01 dB, and
    followed by silence, so its last partial step is metered too (and the oversampling filter rings out)."""
    if sample_peak == 0.0:
        return None
    step = math.ceil(_SEGMENT * rate)
    silence = np.zeros((channels, (length // step + 2) * step - length), np.float32)
    scaled = itertools.chain((block / np.float32(sample_peak) for block in blocks), (silence,))
    reading = float(_ebur128(scaled, channels, rate, peak=True)["lavfi.r128.true_peak"]) + _PEAK_STEP / 2
    return 20 * math.log10(reading * sample_peak)


def _chunks(samples: np.ndarray) -> Iterator[np.ndarray]:
    """[C, T] as the filter is handed it: _CHUNK samples at a time."""
    return (samples[:, start:start + _CHUNK] for start in range(0, samples.shape[1], _CHUNK))


def _ebur128(blocks: Iterable[np.ndarray], channels: int, rate: int, peak: bool) -> dict[str, str]:
    """The `ebur128` filter's readings after the whole sound of `blocks` ([C, n] float32 each, in order; its last
    metered step's frame metadata), or {} when the sound is shorter than one step."""
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise ValidationError("audio", f"loudness is measured for 1 to {MAX_AUDIO_CHANNELS} channels, got {channels}")
    layout = speaker_layout(channels)
    graph = av.filter.Graph()
    source = graph.add_abuffer(sample_rate=rate, format="flt", layout=layout, time_base=Fraction(1, rate))
    meter = graph.add("ebur128", f"metadata=1:peak={'true' if peak else 'none'}")
    sink = graph.add("abuffersink")
    source.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    last: dict[str, str] = {}

    def drain() -> None:
        nonlocal last
        while True:
            try:
                frame = graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            if frame.metadata:
                last = dict(frame.metadata)

    start = 0
    for block in blocks:
        piece = np.ascontiguousarray(np.asarray(block, np.float32).T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(piece, format="flt", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        graph.push(frame)
        drain()
        start += block.shape[1]
    graph.push(None)
    drain()
    return last


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
