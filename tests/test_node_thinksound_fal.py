"""SonifyThinkSoundFal end to end: loaded as ComfyUI loads the pack, run against the emulator's fal."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import pytest
import torch
from clips import flash_frames, onset_time, video_packets, write_clip
from pack import load_pack, module, outputs

SR = 44100  # ThinkSound's native rate, stereo


def run_node(**inputs):
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyThinkSoundFal"]
    params = {"prompt": "", "seed": 7, "num_inference_steps": 24, "cfg_scale": 5.0}
    params.update(inputs)
    return outputs(getattr(node_cls(), node_cls.FUNCTION))(**params)


def check_audio(audio, seconds: Fraction, flash_seconds: Fraction, fps: Fraction) -> None:
    waveform = audio["waveform"]
    assert audio["sample_rate"] == SR
    assert waveform.dtype == torch.float32 and list(waveform.shape[:2]) == [1, 2]
    assert waveform.shape[2] == round(seconds * SR)  # the video's duration, to the sample
    onset = onset_time(waveform[0].numpy(), SR, 0.5)
    assert abs(onset - flash_seconds) <= 1 / fps


def test_node_declares_the_prompt_output() -> None:
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyThinkSoundFal"]
    assert node_cls.RETURN_NAMES == ("audio", "video", "prompt", "job")
    assert node_cls.RETURN_TYPES == ("AUDIO", "VIDEO", "STRING", "STRING")


def test_file_video_end_to_end(emulator, fal_env, tmp_path):
    fps, n, flash = Fraction(24), 30, 14
    source = write_clip(tmp_path / "clip.mp4", n, fps, 96, 64, flash_at=(flash,))
    audio, video, prompt, job = run_node(video=module("nodes.comfy").FileVideo(str(source)))

    check_audio(audio, n / fps, flash / fps, fps)
    out = video.get_stream_source()
    assert video_packets(out) == video_packets(source)  # the picture was copied, not re-encoded
    with av.open(out) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac" and stream.channels == 2 and stream.rate == SR
    assert prompt.startswith("[written by the Sonify emulator, not by fal]")  # empty prompt: the provider wrote one
    info = json.loads(job)
    assert info["provider"] == "fal" and info["model"] == "fal-ai/thinksound"
    assert info["status"] == "completed" and info["task_id"]
    assert emulator.submits("fal-ai/thinksound") == 1


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30000, 1001)])
def test_image_frames_end_to_end(emulator, fal_env, fps):
    n, flash = 25, 12
    frames = torch.from_numpy(flash_frames(n, 64, 48, flash_frames=(flash,)))
    audio, video, prompt, _ = run_node(images=frames, fps=float(fps), prompt="glass shatters")

    check_audio(audio, n / fps, flash / fps, fps)
    assert prompt == "glass shatters"  # what fal used
    with av.open(video.get_stream_source()) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == fps
        assert sum(1 for packet in container.demux(stream) if packet.size) == n
