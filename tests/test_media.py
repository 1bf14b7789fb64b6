"""sonify.media with real files written by PyAV into tmp_path."""

from __future__ import annotations

import wave
from fractions import Fraction

import av
import numpy as np
import pytest
from clips import click_audio, flash_frames, frame_brightness, onset_time, video_packets, write_clip

from sonify import media
from sonify.catalog import ProxyRule
from sonify.errors import ValidationError

FPS = [Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(12)]


def frame_times(path) -> list[Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(Fraction(f.pts) * stream.time_base for f in container.decode(stream))


# ---------------------------------------------------------------- probe, frames_to_mp4, decode_frames


@pytest.mark.parametrize("fps", FPS, ids=str)
def test_frames_to_mp4_keeps_exact_rate_and_duration(tmp_path, fps):
    info = media.frames_to_mp4(flash_frames(30, 64, 48, flash_frames=(7,)), fps, tmp_path / "c.mp4")

    assert (info.fps, info.frames, info.duration) == (fps, 30, Fraction(30) / fps)
    assert (info.width, info.height, info.codec, info.pix_fmt, info.has_audio) == (64, 48, "h264", "yuv420p", False)
    assert frame_times(tmp_path / "c.mp4") == [i / fps for i in range(30)]
    frames, rate = media.decode_frames(tmp_path / "c.mp4")
    assert rate == fps and frames.shape == (30, 48, 64, 3) and frames.dtype == np.float32
    assert int(np.argmax(frame_brightness(frames))) == 7


def test_frames_to_mp4_pads_odd_sizes_and_takes_uint8(tmp_path):
    frames = (flash_frames(5, 33, 17) * 255).astype(np.uint8)
    frames[:, :, -1] = 250  # a bright last column: the padding column must repeat it

    info = media.frames_to_mp4(frames, Fraction(25), tmp_path / "odd.mp4")

    assert (info.width, info.height, info.frames) == (34, 18, 5)
    decoded, _ = media.decode_frames(tmp_path / "odd.mp4")
    assert decoded[:, :-1, -2:].mean() > 0.9
    assert abs(decoded[:, :17, :32].mean() - frames[:, :, :32].mean() / 255) < 0.01


def test_float_frames_are_rounded_and_clipped(tmp_path):
    frames = np.full((3, 32, 32, 3), 0.5, np.float32)
    frames[1] = 1.7  # out of range: clipped to white
    frames[2] = -0.3  # clipped to black
    media.frames_to_mp4(frames, Fraction(24), tmp_path / "c.mp4")
    decoded, _ = media.decode_frames(tmp_path / "c.mp4")
    assert abs(decoded[0].mean() - 0.5) < 0.01
    assert decoded[1].min() > 0.97 and decoded[2].max() < 0.03


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (23.976, Fraction(24000, 1001)),
        (29.97, Fraction(30000, 1001)),
        (59.94, Fraction(60000, 1001)),
        (24.0, Fraction(24)),
        (12.5, Fraction(25, 2)),
        (Fraction(30000, 1001), Fraction(30000, 1001)),
        (30, Fraction(30)),
        ("30000/1001", Fraction(30000, 1001)),
        # what ComfyUI's CreateVideo makes from its FLOAT widget: Fraction(float)
        (Fraction(23.976), Fraction(24000, 1001)),
        (Fraction(29.97), Fraction(30000, 1001)),
        (Fraction(59.94), Fraction(60000, 1001)),
        (Fraction(12.5), Fraction(25, 2)),
    ],
)
def test_exact_fps(value, expected):
    assert media.exact_fps(value) == expected


@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_exact_fps_rejects_nonsense(value):
    with pytest.raises(ValidationError, match="fps"):
        media.exact_fps(value)


def test_probe_counts_packets_when_the_container_has_no_count(tmp_path):
    path = tmp_path / "c.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(17):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 10, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1001, 30000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the case under test

    info = media.probe(path)
    assert (info.frames, info.fps, info.duration) == (17, Fraction(30000, 1001), Fraction(17 * 1001, 30000))


def test_probe_and_decode_frames_honour_rotation(tmp_path):
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        picture = np.zeros((32, 64, 3), np.uint8)
        picture[:, :32] = 255  # left half white
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    info = media.probe(path)
    assert (info.width, info.height) == (32, 64)
    frames, _ = media.decode_frames(path)
    assert frames.shape == (3, 64, 32, 3)
    assert frames[:, 32:].mean() > 0.9 and frames[:, :32].mean() < 0.1  # left half turned counter-clockwise
    proxy, made = media.prepare_upload(path, ProxyRule(short_side=16, max_fps=30), tmp_path)
    assert made and (media.probe(proxy).width, media.probe(proxy).height) == (16, 32)
    muxed = media.mux(path, np.zeros((1, 800), np.float32), 16000, tmp_path / "muxed.mp4")
    assert (media.probe(muxed).width, media.probe(muxed).height) == (32, 64)


def test_probe_rejects_files_without_picture(tmp_path):
    media.write_wav(click_audio(0.2, 16000, 1, 0.1), 16000, tmp_path / "a.wav")
    with pytest.raises(ValidationError, match="no video stream") as err:
        media.probe(tmp_path / "a.wav")
    assert err.value.input_name == "video"

    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValidationError) as err:
        media.probe(tmp_path / "junk.mp4")
    assert err.value.input_name == "video"


def test_source_to_file(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", 6, Fraction(24), 32, 32)
    assert media.source_to_file(media.VideoSource(path=str(clip)), tmp_path / "work") == str(clip)

    path = media.source_to_file(
        media.VideoSource(frames=flash_frames(6, 32, 32), fps=Fraction(30000, 1001)), tmp_path / "work"
    )
    assert path.startswith(str(tmp_path / "work")) and media.probe(path).fps == Fraction(30000, 1001)

    for bad in (media.VideoSource(), media.VideoSource(path=str(clip), frames=flash_frames(2, 32, 32), fps=24)):
        with pytest.raises(ValidationError, match="video"):
            media.source_to_file(bad, tmp_path / "work")
    with pytest.raises(ValidationError, match="fps"):
        media.source_to_file(media.VideoSource(frames=flash_frames(2, 32, 32)), tmp_path / "work")


def test_decode_frames_are_one_preallocated_array(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", 9, Fraction(25), 48, 32, flash_at=(4,))
    frames, fps = media.decode_frames(clip)
    assert fps == 25 and frames.shape == (9, 32, 48, 3) and frames.flags.c_contiguous
    assert 0 <= frames.min() and frames.max() <= 1
    assert np.flatnonzero(frame_brightness(frames) > 0.9).tolist() == [4]


# ---------------------------------------------------------------- prepare_upload


def test_proxy_of_1080p30_with_sound(tmp_path):
    source = write_clip(tmp_path / "hd.mp4", 30, Fraction(30), 1920, 1080, flash_at=(12,), with_audio=True)

    proxy, made = media.prepare_upload(source, ProxyRule(short_side=480, max_fps=30), tmp_path / "work")

    info = media.probe(proxy)
    assert made and proxy != str(source)
    assert (info.width, info.height, info.fps, info.codec, info.pix_fmt) == (854, 480, 30, "h264", "yuv420p")
    assert not info.has_audio
    assert abs(info.frames - 30) <= 1 and abs(info.duration - 1) <= Fraction(1, 30)
    assert media.probe(source).has_audio  # the original is untouched


@pytest.mark.parametrize(
    ("fps", "frames", "flash", "proxy_fps", "proxy_flash"),
    [
        (Fraction(60), 120, 40, Fraction(30), 20),
        (Fraction(60000, 1001), 120, 40, Fraction(30000, 1001), 20),
        (Fraction(40), 80, 40, Fraction(30), 30),  # 20 fps would be too few: 30 fps, irregular drops
    ],
    ids=str,
)
def test_proxy_caps_the_rate_by_timestamp(tmp_path, fps, frames, flash, proxy_fps, proxy_flash):
    source = write_clip(tmp_path / "fast.mp4", frames, fps, 64, 48, flash_at=(flash,))

    proxy, made = media.prepare_upload(source, ProxyRule(short_side=480, max_fps=30), tmp_path)

    info = media.probe(proxy)
    assert made and info.fps == proxy_fps and (info.width, info.height) == (64, 48)
    assert abs(info.duration - Fraction(frames) / fps) <= 1 / proxy_fps
    assert abs(info.frames - round(Fraction(frames) / fps * proxy_fps)) <= 1
    decoded, _ = media.decode_frames(proxy)
    assert np.flatnonzero(frame_brightness(decoded) > 0.9).tolist() == [proxy_flash]


def test_a_file_that_fits_is_returned_unchanged(tmp_path):
    source = write_clip(tmp_path / "small.mp4", 12, Fraction(24), 64, 48)
    work = tmp_path / "work"
    work.mkdir()

    assert media.prepare_upload(source, ProxyRule(), work) == (str(source), False)
    assert media.prepare_upload(source, None, work) == (str(source), False)
    assert list(work.iterdir()) == []


def test_a_small_picture_with_sound_is_copied_without_it(tmp_path):
    source = write_clip(tmp_path / "small.mp4", 12, Fraction(24), 64, 48, with_audio=True)
    proxy, made = media.prepare_upload(source, ProxyRule(), tmp_path)
    assert made and not media.probe(proxy).has_audio
    assert video_packets(proxy) == video_packets(source)  # not re-encoded


# ---------------------------------------------------------------- audio


def write_s16_wav_stdlib(path, audio: np.ndarray, rate: int) -> None:
    """A reference wav written without PyAV."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(audio.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((audio.T * 32767).round().astype("<i2").tobytes())


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("kind", ["wav-s16", "wav-f32", "flac", "mp3", "m4a", "mp4"])
def test_decode_audio(tmp_path, kind, channels, rate):
    audio = click_audio(1.0, rate, channels, click_at=0.4)
    path = tmp_path / f"a.{kind.split('-')[0]}"
    if kind == "wav-s16":
        write_s16_wav_stdlib(path, audio, rate)
    elif kind == "wav-f32":
        media.write_audio(audio, rate, path, codec="pcm_f32le")
    elif kind == "mp4":
        media.mux(write_clip(tmp_path / "v.mp4", 25, Fraction(25), 32, 32), audio, rate, path)
    else:
        media.write_audio(audio, rate, path)

    decoded, sr = media.decode_audio(path)

    assert sr == rate and decoded.dtype == np.float32 and decoded.shape[0] == channels
    lossless = kind in ("wav-s16", "wav-f32", "flac")
    assert decoded.shape[1] == audio.shape[1] if lossless else 0 <= decoded.shape[1] - audio.shape[1] <= 2048
    assert abs(onset_time(decoded, sr, 0.5) - onset_time(audio, rate, 0.5)) <= (0 if lossless else 0.001)
    if lossless:
        assert np.abs(decoded - audio).max() < 1e-4


def test_decode_audio_rejects_a_silent_video(tmp_path):
    with pytest.raises(ValidationError, match="no audio stream") as err:
        media.decode_audio(write_clip(tmp_path / "v.mp4", 5, Fraction(25), 32, 32))
    assert err.value.input_name == "audio"


def test_decode_audio_can_check_a_sound_without_keeping_it(tmp_path):
    path = media.write_audio(np.full((2, 48_000), 0.25, np.float32), 48000, tmp_path / "two-seconds.flac")
    checked, rate = media.decode_audio(path, max_seconds=2.5, keep=False)
    assert checked.shape == (2, 0) and checked.dtype == np.float32 and rate == 48000
    with pytest.raises(ValidationError, match="runs longer than the 0.5 s expected"):  # still bounded
        media.decode_audio(path, max_seconds=0.5, keep=False)


def test_fit_length_is_exact():
    audio = np.ones((2, 1000), np.float32)
    assert media.fit_length(audio, 1000, Fraction(1, 2)).shape == (2, 500)
    padded = media.fit_length(audio, 1000, Fraction(3, 2))
    assert padded.shape == (2, 1500) and padded[:, 1000:].max() == 0 and padded[:, :1000].min() == 1
    # 97 frames at 29.97 fps at 44.1 kHz: 142 732.59 samples -> 142 733
    assert media.fit_length(audio, 44100, Fraction(97 * 1001, 30000)).shape == (2, 142733)
    assert media.fit_length(np.ones(10, np.float32), 10, 2).shape == (20,)


# 8 channels: PyAV crashes reading planar frames of 8 channels, so media must not make it try
@pytest.mark.parametrize(("rate", "channels"), [(44100, 1), (48000, 2), (16000, 8)])
def test_mux_copies_the_picture_and_replaces_the_sound(tmp_path, rate, channels):
    fps = Fraction(30000, 1001)
    source = write_clip(tmp_path / "src.mp4", 60, fps, 96, 64, flash_at=(10,), with_audio=True)
    seconds = Fraction(60) / fps
    audio = media.fit_length(click_audio(2.5, rate, channels, click_at=1.0), rate, seconds)

    out = media.mux(source, audio, rate, tmp_path / "out.mp4", metadata={"title": "muxed"})

    assert video_packets(out) == video_packets(source)
    with av.open(out) as container:
        assert len(container.streams.audio) == 1 and len(container.streams.video) == 1
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate, stream.channels) == ("aac", rate, channels)
        assert container.metadata["title"] == "muxed"
    info = media.probe(out)
    assert (info.frames, info.fps, info.has_audio) == (60, fps, True)
    decoded, sr = media.decode_audio(out)
    assert sr == rate and abs(onset_time(decoded, sr, 0.5) - 1.0) <= 0.001
    assert 0 <= decoded.shape[1] - round(seconds * rate) <= 2048  # AAC fills its last 1024-sample frame


@pytest.mark.parametrize("channels", [1, 3, 8, 12])
def test_write_wav_any_channel_count_and_clipping(tmp_path, channels):
    audio = np.linspace(-1.5, 1.5, channels * 800, dtype=np.float32).reshape(channels, 800)
    path = media.write_wav(audio, 22050, tmp_path / "a.wav")
    decoded, sr = media.decode_audio(path)
    assert sr == 22050 and decoded.shape == (channels, 800)
    assert np.abs(decoded - np.clip(audio, -1, 1)).max() < 1e-4
    with wave.open(path) as reference:
        assert (reference.getnchannels(), reference.getsampwidth(), reference.getnframes()) == (channels, 2, 800)


def test_write_audio_refuses_what_a_codec_cannot_store(tmp_path):
    with pytest.raises(ValidationError, match="libmp3lame cannot store 3 channels"):
        media.write_audio(np.zeros((3, 100), np.float32), 44100, tmp_path / "a.mp3")
    with pytest.raises(ValidationError, match="no audio codec"):
        media.write_audio(np.zeros((1, 100), np.float32), 44100, tmp_path / "a.xyz")
