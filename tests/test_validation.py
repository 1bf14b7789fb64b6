"""Bad input fails before any money is spent: a message naming the input, zero requests sent."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch
from clips import flash_frames, write_clip
from pack import load_pack, module, outputs

NODE = "SonifyMMAudioV2"
GOOD = {"prompt": "rain on a tin roof", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
        "guidance_scale": 4.5, "mask_away_clip": False, "seed": -1}


def call(**inputs):
    node_cls = load_pack().NODE_CLASS_MAPPINGS[NODE]
    return outputs(getattr(node_cls(), node_cls.FUNCTION))(**{**GOOD, **inputs})


def out_of_range_cases():
    spec = module("sonify.catalog").MMAUDIO_V2
    for p in spec.params:
        if p.kind in ("int", "float"):
            step = 1 if p.kind == "int" else 0.5
            yield pytest.param(p.name, p.min - step, id=f"{p.name}-below")
            yield pytest.param(p.name, p.max + step, id=f"{p.name}-above")


@pytest.fixture
def frames():
    return torch.from_numpy(flash_frames(12, 64, 48, flash_frames=(5,)))


@pytest.mark.parametrize("name,value", list(out_of_range_cases()))
def test_out_of_range_parameter(emulator, wavespeed_env, frames, name, value):
    errors = module("sonify.errors")
    with pytest.raises(errors.ValidationError) as caught:
        call(images=frames, **{name: value})
    assert caught.value.input_name == name and name in str(caught.value) and " to " in str(caught.value)
    assert emulator.requests == []


@pytest.mark.parametrize("prompt", ["", "   "])
def test_missing_prompt(emulator, wavespeed_env, frames, prompt):
    with pytest.raises(module("sonify.errors").ValidationError, match="prompt"):
        call(images=frames, prompt=prompt)
    assert emulator.requests == []


def test_both_and_neither_source(emulator, wavespeed_env, frames, tmp_path):
    errors, comfy = module("sonify.errors"), module("nodes.comfy")
    video = comfy.FileVideo(str(write_clip(tmp_path / "c.mp4", 12, Fraction(24), 64, 48, flash_at=(5,))))
    for inputs in ({}, {"images": frames, "video": video}):
        with pytest.raises(errors.ValidationError, match="exactly one of `video` or `images`"):
            call(**inputs)
    assert emulator.requests == []


@pytest.mark.parametrize("shape", [(0, 48, 64, 3), (1, 48, 64, 3)])
def test_empty_or_single_frame(emulator, wavespeed_env, shape):
    with pytest.raises(module("sonify.errors").ValidationError, match="images"):
        call(images=torch.zeros(shape))
    assert emulator.requests == []


@pytest.mark.parametrize("fps", [0.0, -5.0, 1000.0])
def test_bad_fps(emulator, wavespeed_env, frames, fps):
    with pytest.raises(module("sonify.errors").ValidationError, match="fps"):
        call(images=frames, fps=fps)
    assert emulator.requests == []


def test_missing_key(emulator, wavespeed_env, frames, monkeypatch):
    monkeypatch.delenv("WAVESPEED_API_KEY")
    with pytest.raises(module("sonify.errors").ConfigurationError, match="No WaveSpeed API key .*Settings › Sonify"):
        call(images=frames)  # in ComfyUI: where the key goes there (nodes/messages.py)
    assert emulator.requests == []


def test_key_file_is_used_when_the_environment_has_none(emulator, wavespeed_env, frames, monkeypatch, tmp_path):
    key = wavespeed_env["WAVESPEED_API_KEY"]
    monkeypatch.delenv("WAVESPEED_API_KEY")
    config = module("sonify.settings")
    (config.state_dir() / config.KEY_FILE).write_text(json.dumps({"wavespeed": key}))
    audio, _, _ = call(images=frames)
    assert audio["waveform"].shape[-1] > 0


def test_plain_http_to_another_host_is_refused(emulator, wavespeed_env, frames, monkeypatch):
    monkeypatch.setenv("SONIFY_WAVESPEED_URL", "http://example.com")
    with pytest.raises(module("sonify.errors").ConfigurationError, match="SONIFY_WAVESPEED_URL"):
        call(images=frames)
    assert emulator.requests == []


def test_inputs_come_from_the_catalog():
    node_cls = load_pack().NODE_CLASS_MAPPINGS[NODE]
    inputs = node_cls.INPUT_TYPES()
    spec = module("sonify.catalog").MMAUDIO_V2
    assert list(inputs["required"]) == [p.name for p in spec.params]
    assert list(inputs["optional"]) == ["video", "images", "fps", "variations", "loudness", "loudness_lufs",
                                        "true_peak_dbtp"]  # new inputs appended
    steps = inputs["required"]["num_inference_steps"][1]
    assert (steps["min"], steps["max"], steps["default"]) == (4, 50, 25)
    for _, options in [*inputs["required"].values(), *inputs["optional"].values()]:
        assert options["tooltip"]
    assert node_cls.RETURN_NAMES == ("audio", "video", "job")


# ---------------------------------------------------------------- catalog rules the engine reads


def test_only_a_fixed_seed_makes_a_run_cacheable():
    models = module("sonify.catalog")
    spec = models.MMAUDIO_V2
    assert not spec.cacheable({**GOOD, "seed": -1})  # a new result every run
    assert spec.cacheable({**GOOD, "seed": 0}) and spec.fixed_seed({**GOOD, "seed": 0}) == 0
    assert spec.cacheable({**GOOD, "seed": models.INT32_MAX})
    kling = models.KLING_V2A  # no seed parameter: every run is a new job
    assert not any(p.seed for p in kling.params)
    assert not kling.cacheable({**kling.defaults(), "seed": 5})


def test_every_model_names_a_known_provider_and_a_sound_layout():
    models = module("sonify.catalog")
    for spec in models.MODELS.values():
        assert spec.provider in models.PROVIDERS
        assert (spec.native_audio is not None) == (spec.output == "audio"), spec.key
    assert [name for spec in models.MODELS.values() for name in spec.extra_outputs] == ["prompt"]
    assert models.THINKSOUND_FAL.extra_outputs == ("prompt",)
