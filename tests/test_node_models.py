"""ThinkSound (WaveSpeed), Kling video-to-audio, sync lipsync and Mux Audio, end to end through the
nodes (loaded as ComfyUI loads the pack) against the emulator."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from clips import flash_frames, onset_time, video_packets, write_clip
from pack import load_pack, module, outputs

from sonify.catalog import BY_MODEL_ID, THINKSOUND_WAVESPEED


def node(node_id: str):
    cls = load_pack().NODE_CLASS_MAPPINGS[node_id]
    return outputs(getattr(cls(), cls.FUNCTION))


def file_video(path):
    return module("nodes.comfy").FileVideo(str(path))


def voice(seconds: float, rate: int, channels: int) -> dict:
    """A tone with a click at 0.5 s, as ComfyUI AUDIO."""
    t = np.arange(round(seconds * rate)) / rate
    samples = np.tile(0.2 * np.sin(2 * np.pi * 220 * t, dtype=np.float64), (channels, 1)).astype(np.float32)
    samples[:, round(0.5 * rate) : round(0.5 * rate) + 64] = 0.9
    return {"waveform": torch.from_numpy(samples)[None], "sample_rate": rate}


def assert_aligned(audio: dict, seconds: Fraction, rate: int, channels: int) -> None:
    waveform = audio["waveform"]
    assert audio["sample_rate"] == rate and waveform.dtype == torch.float32
    assert tuple(waveform.shape) == (1, channels, round(seconds * rate))


# ---------------------------------------------------------------- ThinkSound on WaveSpeed


@pytest.mark.parametrize("fmt", ["mp4", "wav", "mp3"])
def test_thinksound_wavespeed_formats(emulator, wavespeed_env, tmp_path, fmt):
    emulator.formats["wavespeed-ai/think-sound"] = fmt
    fps, n, flash = Fraction(25), 50, 30
    source = write_clip(tmp_path / "clip.mp4", n, fps, 128, 96, flash_at=(flash,))
    audio, video, _ = node("SonifyThinkSoundWaveSpeed")(video=file_video(source), prompt="", seed=3)
    assert_aligned(audio, n / fps, 44100, 2)
    assert abs(onset_time(audio["waveform"][0].numpy(), 44100, 0.5) - flash / fps) <= 1 / fps
    assert video_packets(video.get_stream_source()) == video_packets(source)


@pytest.mark.parametrize("rate,channels", [(16000, 1), (16000, 2), (44100, 1), (48000, 2)])
def test_any_rate_and_layout_is_aligned_to_the_sample(emulator, wavespeed_env, monkeypatch, rate, channels):
    # The emulated model's output: the emulator finds its model in the catalog by provider and id.
    key = (THINKSOUND_WAVESPEED.provider, THINKSOUND_WAVESPEED.model_id)
    monkeypatch.setitem(BY_MODEL_ID, key, dataclasses.replace(THINKSOUND_WAVESPEED, native_audio=(rate, channels)))
    fps, n = Fraction(30000, 1001), 45
    frames = torch.from_numpy(flash_frames(n, 96, 64, flash_frames=(20,)))
    audio, _, _ = node("SonifyThinkSoundWaveSpeed")(images=frames, fps=float(fps), prompt="wind", seed=-1)
    assert_aligned(audio, n / fps, rate, channels)
    assert abs(onset_time(audio["waveform"][0].numpy(), rate, 0.5) - 20 / fps) <= 1 / fps


# ---------------------------------------------------------------- Kling


KLING = {"sound_effect_prompt": "footsteps on gravel", "bgm_prompt": "", "asmr_mode": False}


def test_kling_uses_the_audio_file_when_given_several_outputs(emulator, wavespeed_env, tmp_path):
    emulator.formats["kwaivgi/kling-video-to-audio"] = "mp4+wav"
    fps, n = Fraction(24), 96  # 4 s
    source = write_clip(tmp_path / "clip.mp4", n, fps, 1280, 720, flash_at=(48,))
    audio, video, job = node("SonifyKlingVideoToAudio")(video=file_video(source), **KLING)
    info = json.loads(job)
    assert len(info["outputs"]) == 2 and info["cost_usd_estimate"] == pytest.approx(0.035)
    assert_aligned(audio, n / fps, 48000, 2)
    assert video_packets(video.get_stream_source()) == video_packets(source)
    assert info["proxy"] is False  # 720p H.264 already fits Kling's 720 px proxy rule: uploaded as is
    assert [r.path.endswith(".wav") for r in emulator.requests if r.method == "GET" and "/outputs/" in r.path] == [True]


def test_kling_from_image_frames(emulator, wavespeed_env):
    emulator.formats["kwaivgi/kling-video-to-audio"] = "mp3"
    fps, n = Fraction(30000, 1001), 100  # 3.34 s
    frames = torch.from_numpy(flash_frames(n, 96, 64, flash_frames=(40,)))
    audio, _, job = node("SonifyKlingVideoToAudio")(images=frames, fps=float(fps), **KLING)
    assert_aligned(audio, n / fps, 48000, 2)
    assert abs(onset_time(audio["waveform"][0].numpy(), 48000, 0.5) - 40 / fps) <= 1 / fps
    assert json.loads(job)["outputs"][0].endswith(".mp3")


def test_kling_duration_is_checked_before_upload(emulator, wavespeed_env, tmp_path):
    """Too short for one job; a clip over 20 s is done in windows (test_long_clips.py)."""
    n = round(2.5 * 12)
    source = write_clip(tmp_path / "clip.mp4", n, Fraction(12), 64, 48, flash_at=(3,))
    with pytest.raises(module("sonify.errors").ValidationError, match=r"3 to 20 seconds"):
        node("SonifyKlingVideoToAudio")(video=file_video(source), **KLING)
    assert emulator.requests == []


@pytest.mark.parametrize("name", ["sound_effect_prompt", "bgm_prompt"])
def test_kling_prompts_over_200_characters_are_rejected_not_truncated(emulator, wavespeed_env, name):
    frames = torch.from_numpy(flash_frames(48, 64, 48, flash_frames=(5,)))
    with pytest.raises(module("sonify.errors").ValidationError, match=rf"{name}: must be at most 200 characters"):
        node("SonifyKlingVideoToAudio")(images=frames, fps=12.0, **{**KLING, name: "x" * 201})
    assert emulator.requests == []


# ---------------------------------------------------------------- sync lipsync


@pytest.mark.parametrize("mode,expected", [
    ("cut_off", 2.0), ("loop", 3.0), ("bounce", 3.0), ("silence", 3.0), ("remap", 3.0),
])
def test_lipsync_modes(emulator, wavespeed_env, tmp_path, mode, expected):
    fps = Fraction(25)
    source = write_clip(tmp_path / "face.mp4", 50, fps, 320, 240, flash_at=(10,))  # 2 s of video
    video, images, audio, out_fps, job = node("SonifySyncLipsync")(
        video=file_video(source), audio=voice(3.0, 48000, 2), sync_mode=mode)
    assert out_fps == 25.0
    assert images.dtype == torch.float32 and tuple(images.shape) == (round(expected * 25), 240, 320, 3)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert audio["sample_rate"] == 48000 and audio["waveform"].shape[1] == 2
    assert abs(audio["waveform"].shape[2] / 48000 - expected) <= 1 / 25
    info = json.loads(job)
    assert info["proxy"] is False and info["params"] == {"sync_mode": mode}
    with av.open(video.get_stream_source()) as container:
        assert container.streams.video[0].average_rate == fps


def test_lipsync_uploads_full_resolution_and_lossless_voice(emulator, wavespeed_env, tmp_path):
    source = write_clip(tmp_path / "face.mp4", 25, Fraction(25), 1920, 1080, flash_at=(5,))
    sent = voice(1.0, 22050, 3)
    _, images, _, _, job = node("SonifySyncLipsync")(video=file_video(source), audio=sent, sync_mode="cut_off")
    task = emulator.tasks.get(json.loads(job)["task_id"])
    assert emulator.storage.resolve(task.media["video"]).read_bytes() == source.read_bytes()  # no proxy
    uploaded, rate = module("sonify.media").decode_audio(emulator.storage.resolve(task.media["audio"]))
    assert rate == 22050 and uploaded.shape == (3, 22050)  # own rate and channels: no downmix
    assert np.abs(uploaded - sent["waveform"][0].numpy()).max() < 1e-4  # 16-bit PCM: lossless at this level
    assert tuple(images.shape[1:]) == (1080, 1920, 3)


def test_lipsync_from_image_frames(emulator, wavespeed_env):
    frames = torch.from_numpy(flash_frames(24, 96, 64, flash_frames=(6,)))
    _, images, _, out_fps, _ = node("SonifySyncLipsync")(images=frames, fps=12.0, audio=voice(2.0, 44100, 1),
                                                           sync_mode="cut_off")
    assert out_fps == 12.0 and tuple(images.shape) == (24, 64, 96, 3)


def test_lipsync_needs_a_voice_with_samples(emulator, wavespeed_env):
    frames = torch.from_numpy(flash_frames(24, 96, 64, flash_frames=(6,)))
    empty = {"waveform": torch.zeros((1, 1, 0)), "sample_rate": 44100}
    with pytest.raises(module("sonify.errors").ValidationError, match="audio"):
        node("SonifySyncLipsync")(images=frames, fps=12.0, audio=empty, sync_mode="cut_off")
    assert emulator.requests == []


# ---------------------------------------------------------------- Mux Audio (local)

AAC_FRAME = 1024


def test_mux_replace_copies_picture_and_fits_length(tmp_path):
    fps, n = Fraction(24), 48
    source = write_clip(tmp_path / "clip.mp4", n, fps, 160, 120, flash_at=(10,), with_audio=True)
    (video,) = node("SonifyMuxAudio")(video=file_video(source), audio=voice(3.0, 16000, 1), mode="replace")
    out = video.get_stream_source()
    assert video_packets(out) == video_packets(source)
    sound, rate = module("sonify.media").decode_audio(out)
    assert rate == 16000 and sound.shape[0] == 1
    assert 0 <= sound.shape[1] - 2 * 16000 < AAC_FRAME  # AAC pads its last frame
    assert abs(onset_time(sound, rate, 0.5) - 0.5) < 0.01


def test_mux_mix_resamples_and_keeps_both_sounds(tmp_path):
    source = write_clip(tmp_path / "clip.mp4", 48, Fraction(24), 160, 120, flash_at=(10,), with_audio=True)
    media = module("sonify.media")
    original, original_rate = media.decode_audio(source)
    (video,) = node("SonifyMuxAudio")(video=file_video(source), audio=voice(2.0, 16000, 1), mode="mix",
                                      audio_gain_db=-6.0, video_gain_db=-60.0)
    sound, rate = media.decode_audio(video.get_stream_source())
    assert rate == max(16000, original_rate) and sound.shape[0] == max(1, original.shape[0])
    assert 0 <= sound.shape[1] - 2 * rate < AAC_FRAME
    click = round(0.5 * rate)
    assert np.abs(sound[:, click : click + 32]).max() == pytest.approx(0.9 * 10 ** (-6 / 20), abs=0.1)


def test_mux_rejects_gain_out_of_range(tmp_path):
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 48, flash_at=(10,))
    with pytest.raises(module("sonify.errors").ValidationError, match="audio_gain_db"):
        node("SonifyMuxAudio")(video=file_video(source), audio=voice(1.0, 16000, 1), audio_gain_db=40.0)


class FramesVideo:
    """Shaped like ComfyUI's VideoFromComponents: frames, an exact rate and maybe a sound, no file."""

    def __init__(self, images: torch.Tensor, frame_rate: Fraction, audio: dict | None = None) -> None:
        self.images, self.frame_rate, self.audio = images, frame_rate, audio

    def get_components(self):
        return self


def test_frames_video_goes_through_a_model_node(emulator, wavespeed_env):
    fps = Fraction(24000, 1001)
    frames = torch.from_numpy(flash_frames(30, 96, 64, flash_frames=(12,)))
    audio, _, _ = node("SonifyThinkSoundWaveSpeed")(video=FramesVideo(frames, fps), prompt="", seed=1)
    assert_aligned(audio, 30 / fps, 44100, 2)


@pytest.mark.parametrize(("widget", "exact"), [(23.976, Fraction(24000, 1001)), (29.97, Fraction(30000, 1001)),
                                             (59.94, Fraction(60000, 1001))])
def test_frames_video_at_a_createvideo_rate(emulator, wavespeed_env, widget, exact):
    """ComfyUI's CreateVideo builds its VIDEO with `Fraction(fps)` from its FLOAT widget."""
    frames = torch.from_numpy(flash_frames(36, 96, 64, flash_frames=(12,)))
    audio, video, _ = node("SonifyThinkSoundWaveSpeed")(video=FramesVideo(frames, Fraction(widget)), prompt="", seed=1)
    assert_aligned(audio, 36 / exact, 44100, 2)
    assert module("sonify.media").probe(video.get_stream_source()).fps == exact


def test_mux_mix_keeps_the_sound_of_a_frames_video():
    fps = Fraction(25)
    frames = torch.from_numpy(flash_frames(50, 96, 64, flash_frames=(12,)))
    own = voice(2.0, 48000, 2)
    own["waveform"][..., 24000:24064] = 0.0  # the new sound's click at 0.5 s; the video's own tone stays
    (video,) = node("SonifyMuxAudio")(video=FramesVideo(frames, fps, own), audio=voice(2.0, 16000, 1), mode="mix",
                                      audio_gain_db=-60.0, video_gain_db=0.0)
    sound, rate = module("sonify.media").decode_audio(video.get_stream_source())
    assert rate == 48000 and sound.shape[0] == 2
    assert 0.15 < np.abs(sound[:, 12000:36000]).max() < 0.3  # the video's own 0.2 tone, the new one at -60 dB
