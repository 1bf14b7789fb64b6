"""What crosses the wire and what comes back, checked functionally: the upload proxy keeps duration and
frame count; the returned VIDEO copies the source's picture packets and, when the provider's sound is
AAC, its audio packets too."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import video_packets, write_clip

from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


# ---------------------------------------------------------------- the upload proxy


@pytest.mark.parametrize(("fps", "frames"), [(Fraction(30), 45), (Fraction(24), 36), (Fraction(60), 90)], ids=str)
def test_proxy_keeps_duration_and_frame_count_within_one_frame(tmp_path, fps, frames):
    source = write_clip(tmp_path / "hd.mp4", frames, fps, 1920, 1080, flash_at=(10,))
    proxy, made = media.prepare_upload(source, MMAUDIO_V2.proxy, tmp_path / "work")
    a, b = media.probe(source), media.probe(proxy)
    assert made and min(b.width, b.height) == MMAUDIO_V2.proxy.short_side
    assert abs(a.duration - b.duration) <= 1 / b.fps
    assert abs(b.frames - round(a.duration * b.fps)) <= 1


# ---------------------------------------------------------------- copying the provider's sound


def provider_file(tmp_path: Path, source: Path, seconds: float, rate: int = 44100) -> Path:
    """An mp4 like a provider's: the picture with an AAC sound `seconds` long."""
    sound = (0.3 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * rate)) / rate)).astype(np.float32)[None]
    return Path(media.mux(source, sound, rate, tmp_path / "provider.mp4"))


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30000, 1001)], ids=str)
def test_copy_mux_copies_both_streams_and_ends_the_sound_with_the_picture(tmp_path, fps):
    source = write_clip(tmp_path / "clip.mp4", 50, fps, 160, 120)
    seconds = media.probe(source).duration
    given = provider_file(tmp_path, source, float(seconds) + 0.3)  # runs long, as MMAudio does

    assert media.copy_mux(source, given, tmp_path / "out.mp4", seconds)

    out = tmp_path / "out.mp4"
    assert video_packets(out) == video_packets(source)
    kept = audio_packets(out)
    assert kept == audio_packets(given)[: len(kept)]
    with av.open(str(out)) as container:  # the container says where the sound ends: with the picture
        stream = container.streams.audio[0]
        assert stream.duration * stream.time_base == Fraction(round(seconds * 44100), 44100)
    decoded, rate = media.decode_audio(out)
    reference, _ = media.decode_audio(given)
    n = round(seconds * rate)
    assert decoded.shape[1] >= n and np.array_equal(decoded[:, :n], reference[:, :n])


def test_copy_mux_declines_a_short_or_non_aac_sound(tmp_path):
    source = write_clip(tmp_path / "clip.mp4", 48, Fraction(24), 160, 120)
    short = provider_file(tmp_path, source, 1.5)
    wav = Path(media.write_wav(np.zeros((1, 44100 * 3), np.float32), 44100, tmp_path / "sound.wav"))
    for sound in (short, wav):
        assert not media.copy_mux(source, sound, tmp_path / "out.mp4", Fraction(2))
        assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(("fmt", "copied"), [("mp4", True), ("wav", False)])
def test_the_returned_video_copies_the_picture_and_the_providers_aac(emulator, wavespeed_env, tmp_path, fmt, copied):
    emulator.formats[MMAUDIO_V2.model_id] = fmt
    source = write_clip(tmp_path / "clip.mp4", 60, Fraction(24), 160, 120, flash_at=(30,))
    seen: dict[str, float] = {}
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(source)), out_dir=tmp_path / "out",
                          observe=lambda event, info: seen.setdefault(event, time.monotonic()))

    assert result.info["audio_copied"] is copied
    assert video_packets(result.video_path) == video_packets(source)  # zero picture re-encodes
    if copied:
        kept = audio_packets(result.video_path)
        assert kept == audio_packets(Path(result.info["result_file"]))[: len(kept)]
    assert result.audio.shape[1] == round(Fraction(60, 24) * result.sample_rate)  # AUDIO exact to the sample
    assert seen["final"] >= emulator.task_completed_at(result.info["task_id"])  # the benchmark's view of the job
    assert "final_seen_monotonic" not in result.info
    assert set(result.info["seconds"]) >= {"prepare", "encode", "upload", "submit", "wait", "download", "decode",
                                           "align", "check", "mux"}
