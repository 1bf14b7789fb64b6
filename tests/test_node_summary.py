"""What a model node says after a run (its last progress text on the node): the done line the run's own last progress
text starts with (the seconds and the cost, measured where the provider told what was used), the task id, today's
spend against the daily cap, and for ThinkSound on fal with an empty prompt the prompt fal wrote (also the node's
`prompt` output)."""

from __future__ import annotations

import json
import logging
import re

from pack import load_pack, module, outputs


def texts(caplog) -> list[str]:
    """What the node showed, in order (comfy.progress logs each text)."""
    return [r.getMessage() for r in caplog.records if r.name == "sonify" and r.levelno == logging.DEBUG]


def last_text(caplog) -> str:
    return texts(caplog)[-1]


def run_done_line(caplog) -> str:
    """The first line of the run's own last progress text (the engine's, before the node's summary)."""
    return [t for t in texts(caplog)[:-1] if " done in " in t][-1].split("\n")[0]


def test_mmaudio_says_cost_seconds_task_and_spend_today(emulator, wavespeed_env, clip_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="sonify")
    monkeypatch.setenv("SONIFY_MAX_USD_PER_DAY", "2")
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyMMAudioV2"]
    inputs = {"prompt": "a door", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
              "guidance_scale": 4.5, "mask_away_clip": False, "seed": 3, "video": module("nodes.comfy").FileVideo(str(clip_path))}
    job = json.loads(outputs(getattr(node_cls(), node_cls.FUNCTION))(**inputs)[-1])
    done, task, today, where, sound = last_text(caplog).split("\n")
    assert re.fullmatch(r"emulator \(synthetic sound\) · done in \d+\.\d s \(.*wait \d+\.\d s.*\) · \$0\.001 measured "
                        r"\(1 second of sound\)", done)
    assert done == run_done_line(caplog)  # one done line: the run's progress and the node's summary read the same
    assert task == f"task {job['task_id']}" and today == "spent today $0.001 of the $2.000 daily cap"
    # a model on both providers says where it ran, and why not on the other
    assert where == "on WaveSpeed (the only provider with a key that takes these inputs) · fal not used: no key"
    assert re.fullmatch(r"sound: -?\d+\.\d LUFS · peak -?\d+\.\d dBTP · silent \d+% · clipped \d+ · 1\.02 s of 1\.00 s",
                        sound)  # MMAudio's whole latents run a little long
    outputs(getattr(node_cls(), node_cls.FUNCTION))(**inputs)
    head, _, today, *_ = last_text(caplog).split("\n")
    assert re.fullmatch(r"emulator \(synthetic sound\) · done in .* · the stored result, no new cost", head)
    assert head == run_done_line(caplog)
    assert today == "spent today $0.001 of the $2.000 daily cap"  # nothing new


def test_thinksound_fal_shows_the_prompt_fal_wrote(emulator, fal_env, clip_path, caplog):
    caplog.set_level(logging.DEBUG, logger="sonify")
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyThinkSoundFal"]
    _, _, prompt, job = outputs(getattr(node_cls(), node_cls.FUNCTION))(
        prompt="", seed=5, num_inference_steps=24, cfg_scale=5.0, video=module("nodes.comfy").FileVideo(str(clip_path)))
    assert prompt
    head, task, today, said, sound = last_text(caplog).split("\n")
    assert re.fullmatch(r"emulator \(synthetic sound\) · done in .* · \$0\.\d{3} measured \([\d.]+ compute seconds?\)", head)
    assert task == f"task {json.loads(job)['task_id']}"
    assert today.startswith(f"spent today ${json.loads(job)['cost_usd_measured']:.3f}")
    assert said == f"prompt: {prompt}" and sound.startswith("sound: ")


def test_the_node_names_its_sound_for_comfyuis_audio_preview(emulator, wavespeed_env, clip_path):
    """The node's answer is {"ui": {"audio": [a file in the temp folder]}, "result": its outputs}: what ComfyUI's
    audio player on the node plays. A file VIDEO: the result's own video; frames: the sound written beside it."""
    import torch
    from clips import flash_frames

    from sonify import media

    comfy = module("nodes.comfy")
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyMMAudioV2"]
    inputs = {"prompt": "a door", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
              "guidance_scale": 4.5, "mask_away_clip": False, "seed": -1}
    frames = torch.from_numpy(flash_frames(24, 64, 48, flash_frames=(10,)))
    for source, suffix in (({"video": comfy.FileVideo(str(clip_path))}, ".mp4"), ({"images": frames}, ".m4a")):
        answer = getattr(node_cls(), node_cls.FUNCTION)(**inputs, **source)
        (entry,) = answer["ui"]["audio"]
        assert entry["type"] == "temp" and entry["subfolder"] == "sonify" and entry["filename"].endswith(suffix)
        samples, rate = media.decode_audio(comfy.temp_dir() / entry["filename"])
        assert rate == 44100 and abs(samples.shape[1] / rate - 1.0) < 0.05
        made = answer["result"][0]["waveform"]
        assert abs(samples.shape[1] - made.shape[2]) <= 2048 and abs(samples).max() > 0.05  # AAC: a frame's padding
