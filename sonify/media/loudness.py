"""Loudness to a target: measured per ITU-R BS.1770-4, set with one gain.

The meter is FFmpeg's `ebur128` filter, run through PyAV (which Sonify has already): K-weighting, the 400 ms
blocks, the absolute (-70 LUFS) and relative (-10 LU) gates, and a true-peak meter that oversamples to 192 kHz.
pyloudnorm, the other well-kept implementation, needs scipy and has no true-peak meter.

Normalising is one gain for the whole sound, never a compressor or a limiter: the gain that brings the integrated
loudness to the target, unless that would put the true peak above the ceiling — then the gain that puts the peak on
the ceiling, and the sound stays quieter than the target (as streaming platforms treat a quiet, peaky track). A
long clip is normalised after its windows are joined, as one sound: no window is louder than its neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import av
import av.filter
import numpy as np

from ..errors import ValidationError
from ..loudness_target import Target
from .audio import MAX_AUDIO_CHANNELS, speaker_layout

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


def integrated(samples: np.ndarray, rate: int) -> float | None:
    """BS.1770-4 integrated loudness in LUFS (channels weighted by their position in the standard layout of their
    count: surrounds +1.5 dB, LFE left out); None when no 400 ms block is above the absolute gate (silence, or a
    sound shorter than one block)."""
    values = _ebur128(samples, rate, peak=False)
    lufs = float(values["lavfi.r128.I"]) if values else ABSOLUTE_GATE
    return lufs if lufs > ABSOLUTE_GATE else None


def true_peak(samples: np.ndarray, rate: int) -> float | None:
    """BS.1770-4 true peak in dBTP (oversampled to 192 kHz), rounded up to the meter's last digit; None for digital
    silence. The sound is metered scaled to a sample peak of 1, where that digit is worth 0.01 dB, and followed by
    silence, so its last partial step is metered too (and the oversampling filter rings out)."""
    samples = np.asarray(samples, np.float32)
    sample_peak = float(np.max(np.abs(samples), initial=0.0))
    if sample_peak == 0.0:
        return None
    step = math.ceil(_SEGMENT * rate)
    padded = np.zeros((samples.shape[0], (samples.shape[1] // step + 2) * step), np.float32)
    padded[:, :samples.shape[1]] = samples / np.float32(sample_peak)
    values = _ebur128(padded, rate, peak=True)
    reading = float(values["lavfi.r128.true_peak"]) + _PEAK_STEP / 2
    return 20 * math.log10(reading * sample_peak)


def normalise(samples: np.ndarray, rate: int, goal: Target, level: Level | None = None) -> tuple[np.ndarray, Applied]:
    """`samples` brought to `goal` by one gain (see the module docstring), and what was done. `level`: the sound's
    own, when measured already. A sound with no loudness (silence) is left as it is."""
    level = level or measure(samples, rate)
    if level.lufs is None or level.true_peak_dbtp is None:
        return samples, Applied(goal, 0.0, level.lufs, level.true_peak_dbtp, False)
    wanted = goal.lufs - level.lufs
    room = goal.ceiling_dbtp - level.true_peak_dbtp
    gain = min(wanted, room)
    scaled = (np.asarray(samples, np.float32) * np.float32(10 ** (gain / 20))).astype(np.float32, copy=False)
    return scaled, Applied(goal, gain, level.lufs + gain, level.true_peak_dbtp + gain, room < wanted)


def _ebur128(samples: np.ndarray, rate: int, peak: bool) -> dict[str, str]:
    """The `ebur128` filter's readings after the whole sound (its last metered step's frame metadata), or {} when
    the sound is shorter than one step."""
    samples = np.asarray(samples, np.float32)
    channels = samples.shape[0]
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

    for start in range(0, samples.shape[1], _CHUNK):
        piece = np.ascontiguousarray(samples[:, start:start + _CHUNK].T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(piece, format="flt", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return last


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
