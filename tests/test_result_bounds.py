"""A provider's result is bounded before it becomes arrays: its length against what was asked (25 % + 2 s
of slack), timestamps that jump, its channels and rate, lipsync's picture size and frame count against
what was sent. A result out of bounds is a provider error naming the task, is not kept, is never blamed
on the user's input, and a re-run downloads it again rather than paying for a new job. The hostile files
are real media, made with PyAV and served by the emulator as the task's output."""

from __future__ import annotations

import resource
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import write_clip
from pack import load_pack, module, outputs

from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2, SYNC_LIPSYNC, THINKSOUND_FAL, ModelSpec
from sonify.errors import ProviderError

OUTPUT = r"^/outputs/"
BOUND = 10.0  # seconds: a hostile result ends the job within this (a bound on a hang, not a speed claim)


def pcm_file(path: Path, seconds: float, rate: int = 44100, channels: int = 1, codec: str = "pcm_s16le",
             jump: int | None = None) -> bytes:
    """Silence as `codec` in a Matroska file (a WAV cannot carry timestamps); with `jump`, the second
    packet is stamped that many samples after the first."""
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        stream.time_base = Fraction(1, rate)
        total, step, written = round(seconds * rate), 4096, 0
        for index in range((total + step - 1) // step):
            n = min(step, total - written)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, n * channels), np.int16), format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = written if jump is None or index == 0 else written + jump
            for packet in stream.encode(frame):
                out.mux(packet)
            written += n
        for packet in stream.encode(None):
            out.mux(packet)
    return path.read_bytes()


@pytest.fixture(params=[MMAUDIO_V2, THINKSOUND_FAL], ids=lambda spec: spec.provider)
def sound_model(request: pytest.FixtureRequest) -> ModelSpec:
    """A video-to-audio model at each provider, its environment set for the emulator."""
    request.getfixturevalue("wavespeed_env" if request.param.provider == "wavespeed" else "fal_env")
    return request.param


def run_model(spec: ModelSpec, clip: Path, tmp_path: Path) -> pipeline.Result:
    return pipeline.run(spec, {"prompt": "rain"}, media.VideoSource(path=str(clip)), out_dir=tmp_path / "out")


def fails_as_the_providers(emulator, run, kind: type[Exception] = ProviderError) -> ProviderError:
    started = time.monotonic()
    with pytest.raises(kind) as caught:
        run()
    assert time.monotonic() - started < BOUND
    error = caught.value
    how = ("python -m sonify fetch", "Fetch Result")  # the command line's words, or a node's in ComfyUI
    assert error.task_id and any(words in str(error) for words in how) and error.task_id in str(error)
    assert "video:" not in str(error).split("(")[0]  # the provider's result, never the user's `video` input
    return error


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 48, flash_at=(8,))  # 1 s


def test_a_timestamp_that_jumps_is_refused_without_allocating_it(emulator, sound_model, clip, tmp_path):
    emulator.inject("GET", OUTPUT, 200, body=pcm_file(tmp_path / "bomb.mka", 0.2, jump=1 << 40), times=2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = fails_as_the_providers(emulator, lambda: run_model(sound_model, clip, tmp_path))
    assert "runs longer than" in str(error)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no 4 TiB array
    assert not list((tmp_path / "state" / "results").glob("*"))  # not kept as a good result
    # the next run resumes the same task and downloads again: no new job is paid for
    error = fails_as_the_providers(emulator, lambda: run_model(sound_model, clip, tmp_path))
    assert emulator.submits(sound_model.model_id) == 1


def test_a_sound_far_longer_than_asked_is_refused(emulator, sound_model, clip, tmp_path):
    """1 s asked for here: 60 s of silent FLAC is a compression bomb, refused at 3.25 s."""
    emulator.inject("GET", OUTPUT, 200, body=pcm_file(tmp_path / "long.mka", 60.0, codec="flac"))
    error = fails_as_the_providers(emulator, lambda: run_model(sound_model, clip, tmp_path))
    assert "runs longer than the 3.25 s expected" in str(error)


@pytest.mark.parametrize(("rate", "channels", "message"), [(44100, 12, "12 channels"), (384000, 1, "384000 Hz")])
def test_a_layout_no_sound_has_is_refused(emulator, sound_model, clip, tmp_path, rate, channels, message):
    emulator.inject("GET", OUTPUT, 200, body=pcm_file(tmp_path / "odd.mka", 0.5, rate=rate, channels=channels))
    assert message in str(fails_as_the_providers(emulator, lambda: run_model(sound_model, clip, tmp_path)))


def test_a_sound_within_the_slack_is_taken_and_fitted(emulator, sound_model, clip, tmp_path):
    emulator.inject("GET", OUTPUT, 200, body=pcm_file(tmp_path / "long.mka", 3.0))
    result = run_model(sound_model, clip, tmp_path)
    assert result.audio.shape == (1, 44100)  # trimmed to the 1 s clip


def lipsync(clip: Path, tmp_path: Path) -> pipeline.Result:
    voice = pipeline.AudioInput(np.zeros((1, 48000), np.float32), 48000)
    return pipeline.run(SYNC_LIPSYNC, {}, media.VideoSource(path=str(clip)), audio=voice, out_dir=tmp_path / "out")


def test_a_lipsync_picture_larger_than_sent_is_refused_before_decoding(emulator, wavespeed_env, clip, tmp_path):
    big = write_clip(tmp_path / "big.mp4", 6, Fraction(24), 4096, 2160)
    emulator.inject("GET", OUTPUT, 200, body=big.read_bytes())
    error = fails_as_the_providers(emulator, lambda: lipsync(clip, tmp_path))
    assert "4096×2160, larger than the 64×48 picture expected" in str(error)


def test_a_lipsync_result_with_too_many_frames_is_refused(emulator, wavespeed_env, clip, tmp_path):
    """1 s of picture and of voice sent: 3.25 s of frames at 24 fps (78) is the most taken."""
    long = write_clip(tmp_path / "long.mp4", 200, Fraction(24), 64, 48)
    emulator.inject("GET", OUTPUT, 200, body=long.read_bytes())
    assert "more than the 78 64×48 frames" in str(fails_as_the_providers(emulator, lambda: lipsync(clip, tmp_path)))


def test_a_lipsync_result_without_a_picture_is_the_providers_fault(emulator, wavespeed_env, clip, tmp_path):
    emulator.inject("GET", OUTPUT, 200, body=pcm_file(tmp_path / "sound.mka", 1.0))
    error = fails_as_the_providers(emulator, lambda: lipsync(clip, tmp_path))
    assert "not usable video" in str(error) and "no video stream" in str(error)


def png_bomb(path: Path, small: int, big: int) -> bytes:
    """A lipsync result that says it is 64×48 (its stream's size, what a probe reads) while its frames after the
    first `small` decode at 4096×2160: PNG frames, each carrying its own size, a 4096×2160 black one some 35 KB.
    With a second of sound, as lipsync's results have."""
    with av.open(str(path), "w", format="mov") as out:
        stream = out.add_stream("png", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "rgb24"
        sound = out.add_stream("pcm_s16le", rate=48000, layout="mono")
        large = av.CodecContext.create("png", "w")
        large.width, large.height, large.pix_fmt, large.time_base = 4096, 2160, "rgb24", Fraction(1, 24)
        for index in range(small + big):
            encoder, (height, width) = (stream, (48, 64)) if index < small else (large, (2160, 4096))
            frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
            frame.pts = index
            for packet in encoder.encode(frame):
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, Fraction(1, 24)
                out.mux(packet)
        voice = av.AudioFrame.from_ndarray(np.zeros((1, 48000), np.int16), format="s16", layout="mono")
        voice.sample_rate, voice.pts = 48000, 0
        for packet in [*sound.encode(voice), *sound.encode(None)]:
            out.mux(packet)
    return path.read_bytes()


def lipsync_node(clip: Path) -> tuple:
    cls = load_pack().NODE_CLASS_MAPPINGS["SonifySyncLipsync"]
    voice = {"waveform": torch.zeros((1, 1, 48000)), "sample_rate": 48000}
    return outputs(getattr(cls(), cls.FUNCTION))(audio=voice, video=module("nodes.comfy").FileVideo(str(clip)),
                                                 sync_mode="cut_off")


def test_a_lipsync_picture_that_decodes_larger_than_it_says_is_refused_and_never_paid_again(emulator, wavespeed_env,
                                                                                              clip, tmp_path):
    """Its IMAGE would take 11.9 GiB for 120 such frames; refused at the first, as the result's fault, before the job
    counts as delivered: the node's next run resumes the same task (and refuses it again), never a second job."""
    emulator.inject("GET", OUTPUT, 200, body=png_bomb(tmp_path / "bomb.mov", small=2, big=2), times=2)
    for _ in range(2):
        error = fails_as_the_providers(emulator, lambda: lipsync_node(clip), module("sonify.errors").ProviderError)
        assert "4096×2160" in str(error) and "64×48" in str(error)
    assert emulator.submits(SYNC_LIPSYNC.model_id) == 1


def test_a_refused_lipsync_result_fetched_by_its_id_is_still_not_paid_again(emulator, wavespeed_env, clip, tmp_path):
    """The refusal's message says how to fetch the task: fetching it (refused again) must not make the job count
    as delivered, or the next run would pay for a new one."""
    long = write_clip(tmp_path / "long.mp4", 200, Fraction(24), 64, 48)
    emulator.inject("GET", OUTPUT, 200, body=long.read_bytes(), times=3)
    task_id = fails_as_the_providers(emulator, lambda: lipsync(clip, tmp_path)).task_id
    fails_as_the_providers(emulator, lambda: pipeline.fetch("wavespeed", task_id, out_dir=tmp_path / "fetched"))
    fails_as_the_providers(emulator, lambda: lipsync(clip, tmp_path))
    assert emulator.submits(SYNC_LIPSYNC.model_id) == 1
