"""Test media made on the fly with PyAV: clips with white flashes at known frames, clicks at known times.

Import as ``from clips import ...`` (pytest puts tests/ on sys.path: tests/ has no __init__.py) or as
``from tests.clips import ...`` when the project root is on sys.path (``python -m pytest`` from the root).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

AUDIO_RATE = 48000  # the audio track of write_clip(..., with_audio=True): a stereo 440 Hz tone


def _background(n: int, width: int, height: int, i: int) -> np.ndarray:
    """A dark frame [H, W, 3] float32 (values 0.05..0.2) that drifts slowly from frame to frame."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    phase = np.float32(i / max(n, 1))
    level = 0.05 + 0.15 * (0.5 + 0.5 * np.sin(2 * np.pi * (x + 0.5 * y + phase)))
    return np.repeat(level[..., None], 3, axis=2).astype(np.float32)


def flash_frames(n: int, width: int, height: int, flash_frames: Iterable[int] = ()) -> np.ndarray:
    """[N, H, W, 3] float32 in [0, 1]: a dark, slowly varying picture; frames in flash_frames are white."""
    flashes = set(flash_frames)
    out = np.empty((n, height, width, 3), np.float32)
    for i in range(n):
        out[i] = 1.0 if i in flashes else _background(n, width, height, i)
    return out


def write_clip(
    path: str | os.PathLike,
    n: int,
    fps: Fraction,
    width: int,
    height: int,
    flash_at: Iterable[int] = (),
    with_audio: bool = False,
    grain: int = 0,
) -> Path:
    """An H.264 mp4 of flash_frames(...), frame i at exactly i/fps (written frame by frame, so a 1080p
    clip costs little memory). with_audio adds a quiet stereo 440 Hz AAC tone as long as the picture.
    grain > 0 adds that much random noise (out of 255) to every pixel: the file is then as large as
    footage of that size (megabytes a second), not a few kilobytes."""
    path = Path(path)
    flashes = set(flash_at)
    fps = Fraction(fps)
    noise = np.random.default_rng(1)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "18"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = 1 / fps
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo") if with_audio else None
        for i in range(n):
            picture = np.ones((height, width, 3), np.float32) if i in flashes else _background(n, width, height, i)
            pixels = (picture * 255 + 0.5).astype(np.uint8)
            if grain:
                pixels = np.minimum(pixels.astype(np.int16) + noise.integers(0, grain, pixels.shape[:2])[..., None],
                                    255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            samples = round(Fraction(n) / fps * AUDIO_RATE)
            tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / AUDIO_RATE, dtype=np.float64)
            frame = av.AudioFrame.from_ndarray(
                np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, 0, Fraction(1, AUDIO_RATE)
            container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path


def click_audio(seconds: float, rate: int, channels: int, click_at: float, click_seconds: float = 0.05) -> np.ndarray:
    """[C, T] float32: silence with one 1 kHz burst (amplitude 0.5) starting at click_at seconds."""
    audio = np.zeros((channels, round(seconds * rate)), np.float32)
    start, length = round(click_at * rate), round(click_seconds * rate)
    burst = 0.5 * np.sin(2 * np.pi * 1000 * (np.arange(length) + 0.25 * rate / 1000) / rate)  # starts at a peak
    audio[:, start : start + length] = burst[: audio.shape[1] - start]
    return audio


def onset_time(audio: np.ndarray, sample_rate: int, threshold: float) -> float:
    """Seconds to the first sample whose magnitude (over all channels) reaches threshold × the peak."""
    audio = np.asarray(audio)
    envelope = np.abs(audio.reshape(-1, audio.shape[-1])).max(axis=0)
    peak = float(envelope.max(initial=0))
    if peak == 0:
        raise AssertionError("the audio is silent")
    return int(np.argmax(envelope >= threshold * peak)) / sample_rate


def video_packets(path: str | os.PathLike) -> list[bytes]:
    """The bytes of every picture packet, in file order."""
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def frame_brightness(frames: np.ndarray) -> np.ndarray:
    """Mean value of each frame of [N, H, W, 3]: flashes stand out near 1, the background stays below 0.25."""
    return frames.reshape(frames.shape[0], -1).mean(axis=1)
