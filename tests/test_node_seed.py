"""Seeds through the node layer: -1 makes the node report itself changed on every queue (a new take, a new
job), a fixed seed keeps ComfyUI's cache (the same answer) and Sonify's result store (no second job)."""

from __future__ import annotations

import json

from pack import load_pack, module, outputs

PARAMS = {"prompt": "a metal door slams", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
          "guidance_scale": 4.5, "mask_away_clip": False}


def node(node_id: str = "SonifyMMAudioV2") -> type:
    return load_pack().NODE_CLASS_MAPPINGS[node_id]


def queue(node_cls: type, **inputs) -> dict:
    """One run of the node, as ComfyUI runs it when IS_CHANGED says so; its job info."""
    return json.loads(outputs(getattr(node_cls(), node_cls.FUNCTION))(**inputs)[-1])


def test_seed_minus_one_is_changed_on_every_queue_and_a_fixed_seed_never():
    for node_id in ("SonifyMMAudioV2", "SonifyThinkSoundWaveSpeed", "SonifyThinkSoundFal"):
        cls = node(node_id)
        assert cls.IS_CHANGED(**PARAMS, seed=-1) != cls.IS_CHANGED(**PARAMS, seed=-1)
        assert cls.IS_CHANGED(**PARAMS, seed=7) == cls.IS_CHANGED(**PARAMS, seed=7)
        assert cls.IS_CHANGED(**PARAMS, seed=7) != cls.IS_CHANGED(**PARAMS, seed=8)
        assert cls.IS_CHANGED(**PARAMS, seed=None) == cls.IS_CHANGED(**PARAMS, seed=None)  # fed by a link
    assert not hasattr(node("SonifyKlingVideoToAudio"), "IS_CHANGED")  # no seed: ComfyUI's cache as usual


def test_runs_with_seed_minus_one_are_new_takes_and_a_fixed_seed_is_reused(emulator, wavespeed_env, clip_path):
    comfy = module("nodes.comfy")
    cls = node()
    video = comfy.FileVideo(str(clip_path))
    first, second = (queue(cls, video=video, **PARAMS, seed=-1) for _ in range(2))
    assert first["task_id"] != second["task_id"] and not second.get("cached")
    assert emulator.submits("wavespeed-ai/mmaudio-v2") == 2

    fixed = [queue(cls, video=video, **PARAMS, seed=7) for _ in range(2)]
    assert fixed[1]["task_id"] == fixed[0]["task_id"] and fixed[1]["cached"] is True
    assert emulator.submits("wavespeed-ai/mmaudio-v2") == 3  # the fixed seed's second run sent nothing
