"""Put a sound on a video locally (the Mux Audio node): replace its soundtrack, or mix with it.

The picture stream is copied, never re-encoded; the sound is fitted to the picture's exact length.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..catalog import GAIN_DB
from ..errors import ValidationError
from ..loudness_target import Target
from . import loudness as meter
from .audio import decode_audio, fit_length, resample
from .mux import mux
from .video import probe

MODES = ("replace", "mix")


log = logging.getLogger("sonify")


def gain(db: float) -> float:
    return float(10 ** (db / 20))


def match_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Mono is spread to every channel; otherwise extra channels are dropped, missing ones silent."""
    have = audio.shape[0]
    if have == channels:
        return audio
    if have == 1:
        return np.repeat(audio, channels, axis=0)
    if have > channels:
        return audio[:channels]
    return np.concatenate([audio, np.zeros((channels - have, audio.shape[1]), audio.dtype)])


def put_on_video(
    video_path: str | Path,
    audio: np.ndarray,
    sample_rate: int,
    out_path: str | Path,
    *,
    mode: str = "replace",
    audio_gain_db: float = 0.0,
    video_gain_db: float = 0.0,
    video_sound: tuple[np.ndarray, int] | None = None,
    loudness: Target | None = None,
) -> str:
    """Write `out_path`: the video's picture (copied) with `audio` instead of, or mixed into, its
    sound — the file's own, or `video_sound` (samples, rate) when the picture came as frames — brought to
    `loudness` as a whole (None: as the gains leave it), encoded once as AAC."""
    if mode not in MODES:
        raise ValidationError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    for name, db in (("audio_gain_db", audio_gain_db), ("video_gain_db", video_gain_db)):
        if not GAIN_DB[0] <= db <= GAIN_DB[1]:
            raise ValidationError(name, f"must be from {GAIN_DB[0]:g} to {GAIN_DB[1]:g} dB, got {db}")
    info = probe(video_path)
    sound, rate = np.asarray(audio, np.float32), sample_rate
    if mode == "mix" and video_sound is None and info.has_audio:
        video_sound = decode_audio(video_path)
    if mode == "mix" and video_sound is not None:
        original, original_rate = video_sound
        rate = max(sample_rate, original_rate)  # resample the lower rate up: nothing is lost
        sound = resample(sound, sample_rate, rate) * gain(audio_gain_db)
        original = resample(original, original_rate, rate) * gain(video_gain_db)
        channels = max(sound.shape[0], original.shape[0])
        sound = fit_length(match_channels(sound, channels), rate, info.duration)
        sound = sound + fit_length(match_channels(original, channels), rate, info.duration)
    else:
        sound = fit_length(sound * gain(audio_gain_db), rate, info.duration)
    if loudness is not None:
        sound, applied = meter.normalise(sound, rate, loudness)
        log.info("mux: the soundtrack's loudness %s", applied.as_dict())
    return mux(video_path, np.clip(sound, -1.0, 1.0), rate, out_path)
