"""Property-based: whatever bytes a provider serves as the result, and whatever a node is handed, the run
ends in a correct result or one clear SonifyError — bounded in time, with the task id once a task exists,
and for bad input before any request."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import write_clip
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pack import load_pack, module, outputs

from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2
from sonify.errors import SonifyError

OUTPUT = r"^/outputs/"
FIXTURES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good_result(tmp_path_factory) -> bytes:
    """A real result file to mutate: 0.6 s of a tone as 16-bit WAV."""
    path = tmp_path_factory.mktemp("result") / "r.wav"
    tone = (0.3 * np.sin(np.arange(26460) * 2 * np.pi * 440 / 44100)).astype(np.float32)[None]
    return Path(media.write_wav(tone, 44100, path)).read_bytes()


@st.composite
def mutated(draw, good: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "random", "splice"]))
    data = bytearray(good)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 40))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif kind == "random":
        data = bytearray(draw(st.binary(max_size=4096)))
    else:  # the header of one file, the body of random bytes
        data = data[:44] + bytearray(draw(st.binary(min_size=1, max_size=8192)))
    return bytes(data)


@FIXTURES
@given(data=st.data())
def test_any_result_bytes_end_in_a_result_or_a_provider_error(emulator, wavespeed_env, tmp_path, good_result, data):
    payload = data.draw(mutated(good_result))
    clip = write_clip(tmp_path / "clip.mp4", 12, Fraction(24), 64, 48) if not (tmp_path / "clip.mp4").exists() \
        else tmp_path / "clip.mp4"
    emulator.inject("GET", OUTPUT, 200, body=payload, times=1)
    started = time.monotonic()
    try:
        result = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": -1}, media.VideoSource(path=str(clip)),
                              out_dir=tmp_path / "out")
    except SonifyError as error:  # nothing else may escape: no IndexError, no MemoryError, no av error
        event(f"refused: {type(error).__name__}")
        assert error.task_id and error.task_id in str(error)
    else:
        event("a result")
        assert result.audio.shape == (1, round(Fraction(12, 24) * result.sample_rate))
        assert np.isfinite(result.audio).all()
    assert time.monotonic() - started < 10


def node(node_id: str):
    cls = load_pack().NODE_CLASS_MAPPINGS[node_id]
    return outputs(getattr(cls(), cls.FUNCTION))


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8, torch.int16, torch.bool,
          torch.complex64]


@st.composite
def frames(draw) -> torch.Tensor:
    n = draw(st.integers(0, 6))
    height, width = draw(st.sampled_from([16, 24, 33, 8, 1])), draw(st.sampled_from([16, 40, 17, 4]))
    channels = draw(st.sampled_from([3, 3, 3, 1, 4]))
    dtype = draw(st.sampled_from(DTYPES))
    fill = draw(st.sampled_from([0.0, 0.5, 1.0, 0.25, -0.2, 1.7, float("nan"), float("inf")]))
    shape = (n, height, width, channels) if draw(st.integers(0, 4)) else (n, height, width)
    return torch.full(shape, fill).to(dtype) if dtype != torch.bool else torch.zeros(shape, dtype=dtype)


@FIXTURES
@given(images=frames(), fps=st.one_of(st.sampled_from([24.0, 29.97, 12.5, 60.0]),
                                      st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_any_images_end_in_sound_or_a_named_refusal_before_any_request(emulator, wavespeed_env, images, fps):
    sent_before = emulator.submits(MMAUDIO_V2.model_id)
    requests_before = len(emulator.requests)
    try:
        audio, video, _ = node("SonifyMMAudioV2")(images=images, fps=fps, prompt="rain", seed=-1)
    except module("sonify.errors").ValidationError as error:
        event(f"refused: {error.input_name}")
        assert error.input_name in ("images", "fps", "video") and str(error).startswith(f"{error.input_name}: ")
        assert len(emulator.requests) == requests_before  # refused before anything was sent
    else:
        event("sound")
        rate = media.exact_fps(fps)
        assert emulator.submits(MMAUDIO_V2.model_id) == sent_before + 1
        assert audio["waveform"].shape[-1] == round(Fraction(images.shape[0]) / rate * audio["sample_rate"])
        assert video.get_components().images is images or images.dtype != torch.float32
