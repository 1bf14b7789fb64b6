"""SonifyMMAudioV2 end to end: loaded as ComfyUI loads the pack, run against the emulator."""

from __future__ import annotations

import json
import time
from fractions import Fraction

import av
import pytest
import torch
from clips import flash_frames, onset_time, video_packets, write_clip
from pack import load_pack, module, outputs

SR = 44100  # MMAudio's native rate


def run_node(**inputs):
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyMMAudioV2"]
    params = {"prompt": "a metal door slams", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
              "guidance_scale": 4.5, "mask_away_clip": False, "seed": 7}
    params.update(inputs)
    return outputs(getattr(node_cls(), node_cls.FUNCTION))(**params)


def check_audio(audio, seconds: float, flash_seconds: float, fps: Fraction) -> None:
    waveform = audio["waveform"]
    assert audio["sample_rate"] == SR
    assert waveform.dtype == torch.float32 and waveform.dim() == 3 and waveform.shape[0] == 1
    assert waveform.shape[2] == round(seconds * SR)
    onset = onset_time(waveform[0].numpy(), SR, 0.5)
    assert abs(onset - flash_seconds) <= 1 / fps


def test_file_video_end_to_end(emulator, wavespeed_env, tmp_path):
    fps, n, flash = Fraction(24), 60, 30
    source = write_clip(tmp_path / "clip.mp4", n, fps, 160, 120, flash_at=(flash,))
    comfy = module("nodes.comfy")
    audio, video, job = run_node(video=comfy.FileVideo(str(source)))

    check_audio(audio, n / fps, flash / fps, fps)
    out = video.get_stream_source()
    assert video_packets(out) == video_packets(source)  # the picture was copied, not re-encoded
    with av.open(out) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    info = json.loads(job)
    assert info["provider"] == "wavespeed" and info["model"] == "wavespeed-ai/mmaudio-v2"
    assert info["status"] == "completed" and info["task_id"]
    assert info["params"]["duration"] == 3  # 2.5 s of video, asked for whole seconds
    assert info["cost_usd_estimate"] == pytest.approx(0.003)
    assert emulator.submits("wavespeed-ai/mmaudio-v2") == 1


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(12)])
def test_image_frames_end_to_end(emulator, wavespeed_env, fps):
    n, flash = 40, 21
    frames = torch.from_numpy(flash_frames(n, 96, 64, flash_frames=(flash,)))
    audio, video, _ = run_node(images=frames, fps=float(fps))

    check_audio(audio, n / fps, flash / fps, fps)
    with av.open(video.get_stream_source()) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == fps
        assert sum(1 for _ in container.demux(stream) if _.size) == n


def test_progress_reaches_the_node(emulator, wavespeed_env, tmp_path):
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 64, flash_at=(10,))
    seen: list[tuple[str, float | None]] = []
    pipeline, media = module("sonify.pipeline"), module("sonify.media")
    spec = module("sonify.catalog").MMAUDIO_V2
    pipeline.run(spec, {"prompt": "rain"}, media.VideoSource(path=str(source)), out_dir=tmp_path / "out",
                 on_progress=lambda text, fraction: seen.append((text, fraction)))
    texts = " | ".join(text for text, _ in seen)
    for stage in ("preparing", "uploading", "downloading", "done"):
        assert stage in texts
    assert any(text.startswith(("queued", "processing")) for text, _ in seen)
    fractions = [f for _, f in seen if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_cancel_stops_the_wait_within_a_second(emulator, wavespeed_env, tmp_path):
    emulator.model_seconds = 30
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 64, flash_at=(10,))
    pipeline, media, errors = module("sonify.pipeline"), module("sonify.media"), module("sonify.errors")
    cancel_at: list[float] = []

    def on_progress(text: str, fraction: float | None) -> None:
        if text.startswith(("queued", "processing")) and not cancel_at:
            cancel_at.append(time.monotonic())

    with pytest.raises(errors.Cancelled) as caught:
        pipeline.run(module("sonify.catalog").MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(source)),
                     out_dir=tmp_path / "out", on_progress=on_progress, is_cancelled=lambda: bool(cancel_at))
    assert time.monotonic() - cancel_at[0] < 1.0
    assert caught.value.task_id  # the task id travels with the error, and the fetch hint with it
    assert "python -m sonify fetch wavespeed" in str(caught.value)
