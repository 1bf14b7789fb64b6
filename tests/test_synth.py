"""The emulator's synthetic sound: in sync with the picture, at each model's layout and length."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import click_audio, frame_brightness, onset_time, video_packets, write_clip

from sonify import media
from sonify.catalog import KLING_V2A, MMAUDIO_V2, SYNC_LIPSYNC, THINKSOUND_FAL, THINKSOUND_WAVESPEED
from sonify.errors import ValidationError
from sonify_devtools.emulator import synth

V2A = {m.key: m for m in (MMAUDIO_V2, THINKSOUND_WAVESPEED, THINKSOUND_FAL, KLING_V2A)}
LAYOUT = {
    "mmaudio-v2": (44100, 1),
    "thinksound-wavespeed": (44100, 2),
    "thinksound-fal": (44100, 2),
    "kling-video-to-audio": (48000, 2),
}


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30000, 1001)], ids=str)
@pytest.mark.parametrize("key", sorted(V2A))
def test_a_flash_sounds_at_its_time(tmp_path, key, fps):
    flash = 17
    clip = write_clip(tmp_path / "clip.mp4", 36, fps, 96, 64, flash_at=(flash,))

    (out,) = synth.render(V2A[key], {"prompt": "a bang", "duration": 0}, str(clip), None, str(tmp_path / "o"), "mp4")

    audio, rate = media.decode_audio(out)
    assert (rate, audio.shape[0]) == V2A[key].native_audio == LAYOUT[key]
    assert abs(onset_time(audio, rate, 0.5) - flash / fps) < 1 / fps
    assert video_packets(out) == video_packets(clip)  # the picture is the input's, copied


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "m4a", "mp4"])
def test_every_format_is_labelled_as_the_emulator(tmp_path, fmt):
    clip = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 48, flash_at=(6,))

    (out,) = synth.render(KLING_V2A, {}, str(clip), None, str(tmp_path / "o"), fmt)

    assert Path(out).name.startswith("emulator-") and Path(out).suffix == f".{fmt}"
    assert Path(out).parent == tmp_path / "o"
    with av.open(out) as container:
        assert container.metadata.get("title") == synth.TITLE
        assert bool(container.streams.video) == (fmt == "mp4")
    audio, rate = media.decode_audio(out)
    assert rate == 48000 and abs(onset_time(audio, rate, 0.5) - 0.25) < 1 / 24


@pytest.mark.parametrize(("duration", "seconds"), [(0, Fraction(3, 2)), (2, Fraction(2)), (1, Fraction(1))])
def test_mmaudio_runs_long_to_whole_latents(tmp_path, duration, seconds):
    clip = write_clip(tmp_path / "clip.mp4", 36, Fraction(24), 64, 48)  # 1.5 s

    (out,) = synth.render(MMAUDIO_V2, {"prompt": "rain", "duration": duration}, str(clip), None, str(tmp_path), "wav")

    audio, rate = media.decode_audio(out)
    assert audio.shape[1] == math.ceil(seconds * rate / 1024) * 1024
    assert 0 < audio.shape[1] - seconds * rate <= 1024


@pytest.mark.parametrize("key", ["thinksound-fal", "kling-video-to-audio"])
def test_other_models_match_the_video_length(tmp_path, key):
    fps = Fraction(30000, 1001)
    clip = write_clip(tmp_path / "clip.mp4", 40, fps, 64, 48, flash_at=(20,))
    (out,) = synth.render(V2A[key], {}, str(clip), None, str(tmp_path), "flac")
    audio, rate = media.decode_audio(out)
    assert audio.shape[1] == round(Fraction(40) / fps * rate)


def test_motion_envelope(tmp_path):
    fps = Fraction(25)
    clip = write_clip(tmp_path / "clip.mp4", 20, fps, 64, 48, flash_at=(8,))

    times, energy = synth.motion_envelope(str(clip))

    assert times.tolist() == [float(i / fps) for i in range(20)]
    assert energy.max() == 1.0 and np.flatnonzero(energy > 0.5).tolist() == [8, 9]  # into and out of the flash
    assert energy[0] == 0 and np.delete(energy, [8, 9]).max() < 0.1


def test_a_still_clip_stays_quiet(tmp_path):
    frames = np.full((12, 32, 32, 3), 0.3, np.float32)
    media.frames_to_mp4(frames, Fraction(24), tmp_path / "still.mp4")
    _, energy = synth.motion_envelope(str(tmp_path / "still.mp4"))
    assert energy.max() < 0.05


def test_hold_envelope_holds_each_frame_until_the_next():
    envelope = synth.hold_envelope(np.array([0.0, 0.5, 1.0]), np.array([0.2, 1.0, 0.4], np.float32), 10, 20)
    assert envelope.tolist() == pytest.approx([0.2] * 5 + [1.0] * 5 + [0.4] * 5 + [0.0] * 5)


# ---------------------------------------------------------------- lipsync


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("cut_off", [0, 1, 2]),
        ("loop", [0, 1, 2, 3, 0, 1, 2]),
        ("bounce", [0, 1, 2, 3, 2, 1, 0]),
        ("silence", [0, 1, 2, 3, 3, 3, 3]),
        ("remap", [0, 0, 1, 1, 2, 2, 3]),
    ],
)
def test_lipsync_frame_map_for_longer_audio(mode, expected):
    audio_seconds = Fraction(3) if mode == "cut_off" else Fraction(7)
    assert synth.lipsync_frame_map(4, Fraction(1), Fraction(4), audio_seconds, mode) == expected


def test_lipsync_frame_map_for_shorter_audio():
    assert synth.lipsync_frame_map(4, Fraction(1), Fraction(4), Fraction(2), "silence") == [0, 1, 2, 3]
    assert synth.lipsync_frame_map(4, Fraction(1), Fraction(4), Fraction(2), "loop") == [0, 1]
    assert synth.lipsync_frame_map(4, Fraction(1), Fraction(4), Fraction(2), "remap") == [0, 2]
    assert synth.lipsync_frame_map(1, Fraction(1), Fraction(1), Fraction(3), "bounce") == [0, 0, 0]
    with pytest.raises(ValidationError, match="sync_mode"):
        synth.lipsync_frame_map(4, Fraction(1), Fraction(4), Fraction(2), "stretch")


def test_the_emulator_takes_the_catalogs_sync_modes():
    assert synth.SYNC_MODES == SYNC_LIPSYNC.param("sync_mode").choices
    for mode in SYNC_LIPSYNC.param("sync_mode").choices:
        assert synth.lipsync_frame_map(4, Fraction(1), Fraction(4), Fraction(2), mode)


@pytest.mark.parametrize(
    ("mode", "audio_seconds", "seconds"),
    [
        ("cut_off", 1.5, 1.0),
        ("cut_off", 0.5, 0.5),
        ("loop", 1.5, 1.5),
        ("loop", 0.5, 0.5),
        ("bounce", 1.5, 1.5),
        ("silence", 1.5, 1.5),
        ("silence", 0.5, 1.0),
        ("remap", 1.5, 1.5),
        ("remap", 0.5, 0.5),
    ],
)
def test_lipsync_output_length_follows_sync_mode(tmp_path, mode, audio_seconds, seconds):
    fps = Fraction(24)
    clip = write_clip(tmp_path / "face.mp4", 24, fps, 64, 48, flash_at=(5,))  # 1 s
    media.write_wav(click_audio(audio_seconds, 44100, 2, click_at=0.25), 44100, tmp_path / "voice.wav")

    (out,) = synth.render(
        SYNC_LIPSYNC, {"sync_mode": mode}, str(clip), str(tmp_path / "voice.wav"), str(tmp_path / "o"), "mp4"
    )

    info = media.probe(out)
    assert Path(out).name.startswith("emulator-") and list((tmp_path / "o").iterdir()) == [Path(out)]
    assert (info.fps, info.width, info.height, info.codec) == (fps, 64, 48, "h264")
    assert info.frames == round(seconds * fps) and info.duration == Fraction(seconds)
    audio, rate = media.decode_audio(out)
    assert rate == 44100 and audio.shape[0] == 2
    assert 0 <= audio.shape[1] - seconds * rate <= 2048  # AAC fills its last frame
    assert abs(onset_time(audio, rate, 0.5) - 0.25) < 0.001
    with av.open(out) as container:
        assert container.metadata.get("title") == synth.TITLE


def test_lipsync_loop_and_bounce_show_the_right_frames(tmp_path):
    clip = write_clip(tmp_path / "face.mp4", 24, Fraction(24), 64, 48, flash_at=(5,))
    media.write_wav(click_audio(2.0, 16000, 1, click_at=0.1), 16000, tmp_path / "voice.wav")
    flashes = {}
    for mode in ("loop", "bounce"):
        (out,) = synth.render(
            SYNC_LIPSYNC, {"sync_mode": mode}, str(clip), str(tmp_path / "voice.wav"), str(tmp_path / mode), "mp4"
        )
        frames, _ = media.decode_frames(out)
        flashes[mode] = np.flatnonzero(frame_brightness(frames) > 0.9).tolist()
    assert flashes == {"loop": [5, 29], "bounce": [5, 41]}  # bounce: 0..23, 22..0 -> frame 5 again at 24+17


def test_render_rejects_what_the_model_cannot_do(tmp_path):
    clip = str(write_clip(tmp_path / "clip.mp4", 6, Fraction(24), 32, 32))
    with pytest.raises(ValueError, match="ogg"):
        synth.render(KLING_V2A, {}, clip, None, str(tmp_path), "ogg")
    with pytest.raises(ValidationError, match="audio"):
        synth.render(SYNC_LIPSYNC, {"sync_mode": "loop"}, clip, None, str(tmp_path), "mp4")
    with pytest.raises(ValueError, match="wav"):
        synth.render(SYNC_LIPSYNC, {"sync_mode": "loop"}, clip, clip, str(tmp_path), "wav")
