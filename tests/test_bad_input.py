"""Bad input is refused before any upload, with a message naming the input; awkward but usable input
(odd sizes, rotation, 10-bit, variable frame rate, integer PCM, 1–8 channels, 8–192 kHz) is handled.

Everything runs through the nodes, loaded as ComfyUI loads the pack, against the emulator."""

from __future__ import annotations

import json
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import flash_frames, write_clip
from pack import load_pack, module, outputs

MMAUDIO = {"prompt": "rain on a tin roof", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
           "guidance_scale": 4.5, "mask_away_clip": False, "seed": -1}
KLING = {"sound_effect_prompt": "", "bgm_prompt": "", "asmr_mode": False}


def node(node_id: str):
    cls = load_pack().NODE_CLASS_MAPPINGS[node_id]
    return outputs(getattr(cls(), cls.FUNCTION))


def file_video(path: Path):
    return module("nodes.comfy").FileVideo(str(path))


def errors():
    return module("sonify.errors")


def refused(emulator, name: str, call, *, match: str = "") -> str:
    """The call raises ValidationError naming `name`, and nothing reached the provider."""
    with pytest.raises(errors().ValidationError) as caught:
        call()
    assert caught.value.input_name == name, str(caught.value)
    assert str(caught.value).startswith(f"{name}: ") and match in str(caught.value)
    assert emulator.requests == []
    return str(caught.value)


def tone(seconds: float, rate: int, channels: int, dtype=torch.float32, peak: float = 0.5) -> dict:
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    wave = (peak * torch.sin(2 * torch.pi * 440 * t)).repeat(channels, 1)
    if dtype.is_floating_point:
        return {"waveform": wave.to(dtype)[None], "sample_rate": rate}
    return {"waveform": (wave * torch.iinfo(dtype).max).round().to(dtype)[None], "sample_rate": rate}


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", 12, Fraction(24), 64, 48, flash_at=(5,))


# ---------------------------------------------------------------- the picture


@pytest.mark.parametrize("shape,match", [
    ((0, 48, 64, 3), "at least 2 frames, got 0"),
    ((1, 48, 64, 3), "at least 2 frames, got 1"),
    ((4, 48, 64), "[frames, height, width, 3]"),
    ((4, 8, 8, 3), "16 to 8192 pixels a side, got 8×8"),
    ((2, 16, 9000, 3), "16 to 8192 pixels a side, got 9000×16"),
])
def test_frames_of_the_wrong_count_or_size(emulator, wavespeed_env, shape, match) -> None:
    images = torch.zeros(shape)
    refused(emulator, "images", lambda: node("SonifyMMAudioV2")(images=images, fps=24.0, **MMAUDIO), match=match)


@pytest.mark.parametrize("value,match", [(float("nan"), "NaN or infinite"), (float("inf"), "NaN or infinite"),
                                         (1.5, "0..1"), (-0.25, "0..1")])
def test_pixel_values(emulator, wavespeed_env, value, match) -> None:
    images = torch.rand(4, 32, 32, 3)
    images[2, 5, 5, 1] = value
    refused(emulator, "images", lambda: node("SonifyMMAudioV2")(images=images, fps=24.0, **MMAUDIO), match=match)


@pytest.mark.parametrize("fps", [0.0, -24.0, float("nan"), float("inf"), 241.0, 1e9])
def test_fps_not_positive_or_absurd(emulator, wavespeed_env, fps) -> None:
    images = torch.rand(4, 32, 32, 3)
    refused(emulator, "fps", lambda: node("SonifyMMAudioV2")(images=images, fps=fps, **MMAUDIO))


def within(seconds: float, call) -> None:
    """call() in a thread of its own, which must end within `seconds` (a hang fails the test, not the suite);
    what it raises is raised here."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    if raised:
        raise raised[0]


@pytest.mark.parametrize("fps", [0.01, 0.5, 0.999])
def test_frames_slower_than_one_a_second_are_refused_by_name(emulator, wavespeed_env, fps) -> None:
    images = torch.from_numpy(flash_frames(48, 64, 48, flash_frames=(5,)))
    within(30, lambda: refused(emulator, "fps", lambda: node("SonifyMMAudioV2")(images=images, fps=fps, **MMAUDIO),
                               match="from 1 to 240 fps"))


def test_a_file_of_48_frames_over_ten_hours_is_refused_by_its_rate(emulator, wavespeed_env, tmp_path) -> None:
    slow = write_clip(tmp_path / "slow.mp4", 48, Fraction(48, 36000), 64, 48)  # the last frame at 10 h: 0.0013 fps
    within(30, lambda: refused(emulator, "video", lambda: node("SonifyMMAudioV2")(video=file_video(slow), **MMAUDIO),
                               match="got 0.00133333 fps"))


def test_frames_at_one_a_second_run(emulator, wavespeed_env) -> None:
    audio, _, _ = node("SonifyMMAudioV2")(images=torch.from_numpy(flash_frames(4, 64, 48)), fps=1.0, **MMAUDIO)
    assert audio["waveform"].shape[-1] == 4 * audio["sample_rate"] and emulator.submits() == 1


def test_no_source_or_both(emulator, wavespeed_env, clip) -> None:
    images = torch.rand(4, 32, 32, 3)
    for inputs in ({}, {"images": images, "video": file_video(clip)}):
        refused(emulator, "video", lambda inputs=inputs: node("SonifyMMAudioV2")(**inputs, **MMAUDIO),
                match="exactly one")


def test_video_without_a_picture(emulator, wavespeed_env, tmp_path) -> None:
    sound_only = tmp_path / "voice.m4a"
    module("sonify.media").write_audio(np.zeros((1, 48000), np.float32), 48000, sound_only)
    refused(emulator, "video", lambda: node("SonifyMMAudioV2")(video=file_video(sound_only), **MMAUDIO),
            match="no video stream")


def test_video_that_is_not_a_video(emulator, wavespeed_env, tmp_path) -> None:
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    refused(emulator, "video", lambda: node("SonifyMMAudioV2")(video=file_video(junk), **MMAUDIO))


def test_odd_sizes_are_padded(emulator, wavespeed_env) -> None:
    images = torch.from_numpy(flash_frames(12, 65, 33, flash_frames=(5,)))
    audio, video, _ = node("SonifyMMAudioV2")(images=images, fps=24.0, **MMAUDIO)
    assert audio["waveform"].shape[-1] == round(0.5 * 44100)
    assert module("sonify.media").probe(video.get_stream_source()).width == 66


def _write(path: Path, pts_ms: list[int], *, pix_fmt: str = "yuv420p", rotation: int = 0) -> Path:
    """An H.264 clip of 64×48 frames at the given times (ms); each frame a different grey."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 + 9 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame.reformat(format=pix_fmt)))
        container.mux(stream.encode(None))
    return path


def uploaded(emulator) -> list[Path]:
    return sorted(emulator.storage.root.glob("files/*/*"))


def test_variable_frame_rate_is_made_constant(emulator, wavespeed_env, tmp_path) -> None:
    """Phones drop to fewer frames in low light: the model gets a constant-rate copy (frames placed by
    their times), the result keeps the original picture, and the sound spans its true length."""
    times = [i * 42 for i in range(10)] + [420 + i * 84 for i in range(5)] + [840 + i * 42 for i in range(10)]
    source = _write(tmp_path / "vfr.mp4", times)
    media = module("sonify.media")
    assert media.constant_rate_for(source, media.probe(source)) == Fraction(24000, 1001)
    audio, video, job = node("SonifyMMAudioV2")(video=file_video(source), **MMAUDIO)
    (sent,) = uploaded(emulator)
    sent_info = media.probe(sent)
    assert sent_info.fps == Fraction(24000, 1001) and media.constant_rate_for(sent, sent_info) is None
    assert json.loads(job)["proxy"] is True
    assert abs(audio["waveform"].shape[-1] / 44100 - 1.26) < 1 / 24  # 1.26 s: the picture's true length
    assert [bytes(p) for p in av.open(video.get_stream_source()).demux(video=0) if p.size] == \
           [bytes(p) for p in av.open(str(source)).demux(video=0) if p.size]


def test_rotated_source_stays_upright(emulator, wavespeed_env, tmp_path) -> None:
    source = _write(tmp_path / "rotated.mp4", [round(i * 1000 / 24) for i in range(12)], rotation=90)
    _, video, _ = node("SonifyMMAudioV2")(video=file_video(source), **MMAUDIO)
    info = module("sonify.media").probe(video.get_stream_source())
    assert (info.width, info.height) == (48, 64)


@pytest.mark.parametrize("node_id", ["SonifyMMAudioV2", "SonifySyncLipsync"])
def test_10_bit_source_is_sent_as_8_bit(emulator, wavespeed_env, tmp_path, node_id) -> None:
    source = _write(tmp_path / "ten-bit.mp4", [round(i * 1000 / 24) for i in range(12)], pix_fmt="yuv420p10le")
    media = module("sonify.media")
    if node_id == "SonifyMMAudioV2":
        node(node_id)(video=file_video(source), **MMAUDIO)
    else:
        node(node_id)(video=file_video(source), audio=tone(0.5, 48000, 1), sync_mode="cut_off")
    videos = [p for p in uploaded(emulator) if p.suffix == ".mp4"]
    assert [media.probe(p).pix_fmt for p in videos] == ["yuv420p"]
    assert media.probe(videos[0]).width == 64  # the lipsync copy keeps full resolution


# ---------------------------------------------------------------- the voice (lipsync) and Mux Audio's AUDIO


@pytest.mark.parametrize("audio,match", [
    (tone(0.0, 48000, 1), "has no samples"),
    (tone(0.5, 48000, 9), "1 to 8 channels, got 9"),
    (tone(0.5, 4000, 1), "8000 to 192000 Hz, got 4000"),
    (tone(0.1, 384000, 1), "8000 to 192000 Hz, got 384000"),
    ({"waveform": torch.full((1, 1, 100), float("nan")), "sample_rate": 16000}, "NaN"),
    ({"waveform": torch.ones((1, 1, 100), dtype=torch.bool), "sample_rate": 16000}, "float or integer PCM"),
    ({"waveform": torch.zeros((1, 100)), "sample_rate": 16000}, "[batch, channels, samples]"),
    ({"samples": []}, "not an AUDIO value"),
], ids=["empty", "9-channels", "4kHz", "384kHz", "nan", "bool", "2-d", "not-audio"])
def test_bad_audio(emulator, wavespeed_env, clip, audio, match) -> None:
    refused(emulator, "audio", lambda: node("SonifySyncLipsync")(video=file_video(clip), audio=audio, sync_mode="cut_off"),
            match=match)
    refused(emulator, "audio", lambda: node("SonifyMuxAudio")(video=file_video(clip), audio=audio), match=match)


@pytest.mark.parametrize("channels,rate", [(1, 8000), (2, 44100), (6, 48000), (8, 96000), (2, 192000)])
def test_any_channel_count_and_rate_is_muxed(emulator, clip, channels, rate) -> None:
    (video,) = node("SonifyMuxAudio")(video=file_video(clip), audio=tone(0.5, rate, channels))
    samples, got_rate = module("sonify.media").decode_audio(video.get_stream_source())
    assert samples.shape[0] == channels and got_rate == min(rate, 96000)  # AAC stops at 96 kHz


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.float64, torch.float16])
def test_integer_pcm_is_scaled_not_clipped(emulator, clip, dtype) -> None:
    (video,) = node("SonifyMuxAudio")(video=file_video(clip), audio=tone(0.5, 48000, 1, dtype=dtype, peak=0.5))
    samples, _ = module("sonify.media").decode_audio(video.get_stream_source())
    rms = float(np.sqrt(np.mean(samples[:, 2048:-2048] ** 2)))
    assert 0.3 < rms < 0.4  # a 0.5 sine; int16 cast to float unscaled would be clipped to a ±1 square wave


def test_integer_pcm_voice_reaches_the_provider_scaled(emulator, wavespeed_env, clip) -> None:
    node("SonifySyncLipsync")(video=file_video(clip), audio=tone(0.5, 16000, 1, dtype=torch.int16), sync_mode="cut_off")
    (sent,) = [p for p in uploaded(emulator) if p.suffix == ".wav"]
    samples, rate = module("sonify.media").decode_audio(sent)
    assert rate == 16000 and 0.45 < np.abs(samples).max() < 0.55


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unscaled_16_bit_pcm_in_a_float_voice_is_scaled_before_it_is_sent(emulator, wavespeed_env, clip, dtype):
    pcm = tone(0.5, 16000, 1, dtype=torch.int16)  # a 0.5 sine as 16-bit PCM: whole numbers up to 16383
    voice = {"waveform": pcm["waveform"].to(dtype), "sample_rate": 16000}  # cast to float, never scaled
    node("SonifySyncLipsync")(video=file_video(clip), audio=voice, sync_mode="cut_off")
    assert emulator.submits() == 1
    (sent,) = [p for p in uploaded(emulator) if p.suffix == ".wav"]
    samples, _ = module("sonify.media").decode_audio(sent)
    assert 0.45 < np.abs(samples).max() < 0.55  # not clipped into a ±1 square wave


@pytest.mark.parametrize(("waveform", "peak"), [
    (tone(0.5, 16000, 1, peak=3.7)["waveform"], "3.7"),  # no whole numbers: a level mistake, not PCM
    (tone(0.5, 16000, 1, dtype=torch.int32)["waveform"].to(torch.float64), "1.07374e+09"),  # 32-bit PCM as floats (a 0.5 sine)
    (tone(0.5, 16000, 1, dtype=torch.int16)["waveform"].to(torch.float32) * 4, "65536"),  # whole, beyond 16 bits
], ids=["non-whole", "32-bit", "beyond-16-bit"])
def test_a_float_voice_far_beyond_full_scale_is_refused_before_any_request(emulator, wavespeed_env, clip, waveform,
                                                                          peak):
    voice = {"waveform": waveform, "sample_rate": 16000}
    message = refused(emulator, "audio", lambda: node("SonifySyncLipsync")(video=file_video(clip), audio=voice,
                                                                          sync_mode="cut_off"), match=f"peak of {peak}")
    assert "-1 to 1" in message


def test_a_voice_longer_than_a_run_takes_is_refused_before_any_request(emulator, wavespeed_env, clip):
    voice = tone(601, 8000, 1)
    refused(emulator, "audio", lambda: node("SonifySyncLipsync")(video=file_video(clip), audio=voice, sync_mode="loop"),
            match="is 601.000 s long; Sync Lipsync 1.9 · WaveSpeed takes at most 600 s in one run")


def test_a_float_voice_a_little_over_full_scale_is_clipped_as_before(emulator, wavespeed_env, clip):
    node("SonifySyncLipsync")(video=file_video(clip), audio=tone(0.5, 16000, 1, peak=1.05), sync_mode="cut_off")
    assert emulator.submits() == 1  # a lossy decoder's overshoot: taken


# ---------------------------------------------------------------- prompts


@pytest.mark.parametrize("prompt,match", [
    ("", "required"), ("   \n ", "required"), ("x" * 2001, "at most 2000 characters"),
    ("rain\x00", "U+0000"), ("\x1b[31mred rain", "U+001B"), ("ra\x85in", "U+0085"), ("rain\x7f", "U+007F"),
])
def test_bad_prompt(emulator, wavespeed_env, clip, prompt, match) -> None:
    refused(emulator, "prompt",
            lambda: node("SonifyMMAudioV2")(video=file_video(clip), **{**MMAUDIO, "prompt": prompt}), match=match)


def test_prompt_over_the_model_limit(emulator, wavespeed_env, clip) -> None:
    refused(emulator, "bgm_prompt",
            lambda: node("SonifyKlingVideoToAudio")(video=file_video(clip), **{**KLING, "bgm_prompt": "y" * 201}),
            match="at most 200 characters")


def test_multiline_prompt_is_fine(emulator, wavespeed_env, clip) -> None:
    node("SonifyMMAudioV2")(video=file_video(clip), **{**MMAUDIO, "prompt": "rain\n\tthen thunder"})
    assert emulator.submits() == 1


# ---------------------------------------------------------------- odd tensors and text (converted or refused by name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_frames_of_other_float_widths_are_converted(emulator, wavespeed_env, dtype):
    frames = torch.from_numpy(flash_frames(12, 64, 48, flash_frames=(5,))).to(dtype)
    audio, _, _ = node("SonifyMMAudioV2")(images=frames, fps=24.0, **MMAUDIO)
    assert audio["waveform"].shape[-1] == round(Fraction(12, 24) * audio["sample_rate"])


@pytest.mark.parametrize(("dtype", "word"), [(torch.complex64, "complex64"), (torch.bool, "bool"),
                                             (torch.int32, "int32")])
def test_frames_of_a_dtype_no_picture_has_are_refused_by_name(emulator, wavespeed_env, dtype, word):
    frames = torch.zeros((12, 48, 64, 3), dtype=dtype)
    refused(emulator, "images", lambda: node("SonifyMMAudioV2")(images=frames, fps=24.0, **MMAUDIO), match=word)


def test_a_bfloat16_voice_is_converted(emulator, wavespeed_env, clip):
    _, images, audio, _, _ = node("SonifySyncLipsync")(audio=tone(0.5, 16000, 1, torch.bfloat16),
                                                       video=file_video(clip), sync_mode="cut_off")
    assert images.shape[1:] == (48, 64, 3) and audio["sample_rate"] > 0


@pytest.mark.parametrize(("voice", "match"), [
    ({"waveform": torch.zeros((0, 1, 16000)), "sample_rate": 16000}, "empty batch"),
    ({"waveform": torch.zeros((1, 1, 16000), dtype=torch.complex64), "sample_rate": 16000}, "complex64"),
    ({"waveform": torch.zeros((1, 1, 16000), dtype=torch.bool), "sample_rate": 16000}, "bool"),
])
def test_a_voice_no_sound_has_is_refused_by_name(emulator, wavespeed_env, clip, voice, match):
    refused(emulator, "audio", lambda: node("SonifySyncLipsync")(audio=voice, video=file_video(clip),
                                                                 sync_mode="cut_off"), match=match)


def test_a_prompt_with_an_unpaired_surrogate_is_refused(emulator, wavespeed_env, clip):
    refused(emulator, "prompt", lambda: node("SonifyMMAudioV2")(video=file_video(clip), **{**MMAUDIO,
                                                                "prompt": "rain \ud83d on a roof"}), match="U+D83D")


def test_a_one_frame_video_file_is_refused_like_one_frame_of_images(emulator, wavespeed_env, tmp_path):
    still = write_clip(tmp_path / "still.mp4", 1, Fraction(24), 64, 48)
    refused(emulator, "video", lambda: node("SonifyMMAudioV2")(video=file_video(still), **MMAUDIO),
            match="at least 2 frames, got 1")
