"""The lipsync models of issue 25, each as its docs describe it (docs/providers.md), against the emulator over real
HTTP: sync lipsync 1.9 on fal too, lipsync-2 and lipsync-2-pro on fal, sync-3 and LatentSync on both providers, Kling
LipSync on fal. What each provider is sent is written out here under its own names; prices are computed here from
the published rules, not read from the catalog."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import write_clip
from pack import load_pack, module, outputs

from sonify import journal, media, pipeline, providers, settings
from sonify.catalog import KLING_LIPSYNC, LATENTSYNC, SYNC_3, SYNC_LIPSYNC, SYNC_LIPSYNC_2, SYNC_LIPSYNC_2_PRO
from sonify.errors import ValidationError
from sonify.pipeline import failover
from sonify.waiter import Waiter

VOICE_RATE = 16000


def voice(seconds: float = 3.0) -> pipeline.AudioInput:
    t = np.arange(int(seconds * VOICE_RATE)) / VOICE_RATE
    return pipeline.AudioInput((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None], VOICE_RATE)


@pytest.fixture
def both(emulator, wavespeed_env, fal_env) -> dict[str, str]:
    return {**wavespeed_env, **fal_env}


@pytest.fixture
def face(tmp_path) -> media.VideoSource:
    """2.5 s at 24 fps, 64×48."""
    return media.VideoSource(path=str(write_clip(tmp_path / "face.mp4", 60, Fraction(24), 64, 48, flash_at=(8,))))


@pytest.fixture
def face_720(tmp_path) -> media.VideoSource:
    """2.5 s at 24 fps, 720×720: what Kling LipSync takes (each side 720 to 1920 px)."""
    return media.VideoSource(path=str(write_clip(tmp_path / "face720.mp4", 60, Fraction(24), 720, 720, flash_at=(8,))))


def lipsync(spec, source, tmp_path, provider="auto", audio=None, **params) -> pipeline.Result:
    return failover.run(spec, params, source, provider=provider, audio=audio or voice(), out_dir=tmp_path / "out",
                        picture=True)


def sent(task) -> dict:
    """The submit body the emulator got, its media URLs replaced by the uploaded files' names."""
    body = dict(task.input)
    for name in ("video", "audio", "video_url", "audio_url"):
        if name in body:
            body[name] = Path(body[name]).name
    return body


# (spec, provider, the body as that provider's docs name its fields, the price for 2.5 s by the published rule); the
# 3 s voice on the 2.5 s face: cut_off keeps 2.5 s, LatentSync on fal (loop_mode left to it) loops to the voice's 3 s
RUNS = [
    (SYNC_LIPSYNC, "fal", {"video_url": "face.mp4", "audio_url": "audio.wav", "sync_mode": "cut_off",
                           "model": "lipsync-1.9.0-beta"}, None),
    (SYNC_LIPSYNC, "wavespeed", {"video": "face.mp4", "audio": "audio.wav", "sync_mode": "cut_off"}, None),
    (SYNC_LIPSYNC_2, "fal", {"video_url": "face.mp4", "audio_url": "audio.wav", "sync_mode": "cut_off",
                             "model": "lipsync-2"}, 3.0 / 60 * 3),  # $3 a minute; 3 whole seconds [guess: per second]
    (SYNC_LIPSYNC_2_PRO, "fal", {"video_url": "face.mp4", "audio_url": "audio.wav", "sync_mode": "cut_off"}, None),
    (SYNC_3, "fal", {"video_url": "face.mp4", "audio_url": "audio.wav", "sync_mode": "cut_off"}, 8.0 / 60 * 3),
    (SYNC_3, "wavespeed", {"video": "face.mp4", "audio": "audio.wav", "sync_mode": "cut_off"}, None),
    (LATENTSYNC, "fal", {"video_url": "face.mp4", "audio_url": "audio.wav", "guidance_scale": 1.0}, 0.20),  # at least
    (LATENTSYNC, "wavespeed", {"video": "face.mp4", "audio": "audio.wav"}, 0.15),  # $0.15 per (started) 5 s
]


@pytest.mark.parametrize(("spec", "provider", "body", "price"), RUNS, ids=lambda v: getattr(v, "key", v))
def test_each_lipsync_model_runs_on_its_provider_as_documented(spec, provider, body, price, emulator, both, face,
                                                               tmp_path):
    result = lipsync(spec, face, tmp_path, provider)
    (task,) = emulator.tasks.all()
    assert (task.provider, sent(task)) == (provider, body)
    assert result.info["provider"] == provider and result.info["status"] == "completed"
    assert result.info["cost_usd_estimate"] == (None if price is None else pytest.approx(price))
    frames, rate = result.picture
    assert frames.shape[1:] == (48, 64, 3) and rate == 24
    seconds = 3.0 if (spec, provider) == (LATENTSYNC, "fal") else 2.5
    assert abs(result.audio.shape[1] / result.sample_rate - seconds) < 0.1  # (AAC pads its last frame)
    assert abs(len(frames) / 24 - seconds) < 0.05


def test_kling_lipsync_takes_a_720p_face_and_its_voice_as_aac(emulator, fal_env, face_720, tmp_path):
    result = lipsync(KLING_LIPSYNC, face_720, tmp_path)
    (task,) = emulator.tasks.all()
    assert sent(task) == {"video_url": "face720.mp4", "audio_url": "audio.m4a"}  # the docs name no other field
    assert result.info["cost_usd_estimate"] == pytest.approx(0.014 * 5)  # 2.5 s, billed in steps of 5 s
    assert result.picture[0].shape[1:] == (720, 720, 3)
    with av.open(emulator.storage.resolve(task.input["audio_url"]).as_posix()) as container:
        assert container.streams.audio[0].codec_context.name == "aac"


@pytest.mark.parametrize(("width", "height", "frames", "seconds", "refusal"), [
    (64, 48, 60, 3.0, "takes pictures 720 to 1920 px wide and high, got 64×48"),
    (720, 720, 24, 3.0, "takes clips from 2 to 10 seconds, got 1.000 s"),
    (720, 720, 60, 1.5, "audio: Kling LipSync · fal takes a voice of 2 to 60 seconds, got 1.500 s"),
    (720, 720, 60, 61.0, "audio: Kling LipSync · fal takes a voice of 2 to 60 seconds, got 61.000 s"),
])
def test_kling_lipsync_refuses_what_its_docs_rule_out_before_anything_is_sent(width, height, frames, seconds, refusal,
                                                                              emulator, fal_env, tmp_path):
    clip = media.VideoSource(path=str(write_clip(tmp_path / "c.mp4", frames, Fraction(24), width, height)))
    with pytest.raises(ValidationError, match=refusal):
        lipsync(KLING_LIPSYNC, clip, tmp_path, audio=voice(seconds))
    assert emulator.requests == []


def test_a_file_type_the_provider_does_not_take_is_refused_by_name(emulator, both, tmp_path):
    mkv = media.VideoSource(path=str(write_clip(tmp_path / "face.mkv", 60, Fraction(24), 64, 48)))
    with pytest.raises(ValidationError, match=r"^video: LatentSync · WaveSpeed takes \.mp4 files, got a \.mkv file"):
        lipsync(LATENTSYNC, mkv, tmp_path, "wavespeed")
    assert emulator.requests == []


def test_the_emulator_fails_a_kling_lipsync_task_out_of_its_documented_bounds(emulator, fal_env, tmp_path):
    """The emulator checks what fal's page rules out, as the provider would (a client that skips the checks)."""
    fal = providers.client("fal", settings.current())
    small = fal.upload(write_clip(tmp_path / "small.mp4", 60, Fraction(24), 64, 48), Waiter())
    sound = fal.upload(Path(media.write_wav(voice().samples, VOICE_RATE, tmp_path / "v.wav")), Waiter())
    task_id = fal.submit(KLING_LIPSYNC.model_id, {"video_url": small, "audio_url": sound}, Waiter())
    state = fal.wait(task_id, Waiter(), lambda *_: None, module("sonify.pipeline").wait_limits(settings.current()),
                     model_id=KLING_LIPSYNC.model_id)
    assert state.status == "failed" and "720 to 1920 px" in state.error


def test_latentsync_on_auto_runs_where_this_clip_is_cheaper(emulator, both, tmp_path):
    """WaveSpeed: $0.15 per started 5 s; fal: $0.20 up to 40 s, then $0.005 a second."""
    short = media.VideoSource(path=str(write_clip(tmp_path / "short.mp4", 60, Fraction(24), 64, 48)))  # 2.5 s
    long = media.VideoSource(path=str(write_clip(tmp_path / "long.mp4", 168, Fraction(24), 64, 48)))  # 7 s
    assert lipsync(LATENTSYNC, short, tmp_path).info["provider_choice"]["why"] == (
        "cheaper for this clip ($0.150 against $0.200 on fal)")
    on_long = lipsync(LATENTSYNC, long, tmp_path, audio=voice(7.0))
    assert on_long.info["provider"] == "fal"
    assert on_long.info["provider_choice"]["why"] == "cheaper for this clip ($0.200 against $0.300 on WaveSpeed)"
    assert math.isclose(on_long.info["cost_usd_estimate"], 0.20)


def test_latentsyncs_fal_only_inputs_are_refused_on_wavespeed_and_sent_on_fal(emulator, both, face, tmp_path):
    with pytest.raises(ValidationError, match=r"^loop_mode: LatentSync · WaveSpeed has no such input"):
        lipsync(LATENTSYNC, face, tmp_path, "wavespeed", loop_mode="pingpong")
    assert emulator.requests == []
    result = lipsync(LATENTSYNC, face, tmp_path, "auto", loop_mode="pingpong", seed=9, audio=voice(4.0))
    (task,) = emulator.tasks.all()
    assert result.info["provider"] == "fal"
    assert sent(task) == {"video_url": "face.mp4", "audio_url": "audio.wav", "guidance_scale": 1.0, "seed": 9,
                          "loop_mode": "pingpong"}
    assert abs(result.audio.shape[1] / result.sample_rate - 4.0) < 0.1  # the voice's length: the face went back and forth


def test_a_lipsync_job_moves_to_the_other_provider_while_no_task_exists(emulator, both, face, tmp_path, monkeypatch):
    monkeypatch.setenv("FAL_KEY", "someone-else:not-this-account")
    result = lipsync(SYNC_3, face, tmp_path)  # fal first: its price is known
    assert result.info["provider"] == "wavespeed" and emulator.submits() == emulator.submits("sync/lipsync-3") == 1
    (passed,) = result.info["provider_choice"]["not_used"]
    assert passed["provider"] == "fal" and passed["why"].startswith("refused the key or the account")
    moved = [r for r in journal.Journal(Path(both["SONIFY_STATE_DIR"]) / journal.JOURNAL_FILE).recent() if r.provider == "fal"]
    assert [r.status for r in moved] == [journal.Status.MOVED]


NEW_NODES = {"SonifySyncLipsync2": SYNC_LIPSYNC_2, "SonifySyncLipsync2Pro": SYNC_LIPSYNC_2_PRO, "SonifySync3": SYNC_3,
             "SonifyKlingLipsync": KLING_LIPSYNC, "SonifyLatentSync": LATENTSYNC}


@pytest.mark.parametrize("node_id", sorted(NEW_NODES))
def test_every_new_lipsync_model_runs_as_a_node(node_id, emulator, both, face, face_720):
    import torch

    spec = NEW_NODES[node_id]
    cls = load_pack().NODE_CLASS_MAPPINGS[node_id]
    clip = face_720 if spec is KLING_LIPSYNC else face
    sound = {"waveform": torch.from_numpy(voice().samples)[None], "sample_rate": VOICE_RATE}
    video, images, audio, fps, job = outputs(getattr(cls(), cls.FUNCTION))(
        audio=sound, video=module("nodes.comfy").FileVideo(clip.path), **spec.defaults())
    info = json.loads(job)
    assert info["model"] in {s.model_id for s in (spec, *(o.spec for o in spec.offers))}  # auto: the cheaper
    assert info["status"] == "completed" and fps == 24.0
    assert images.shape[0] == 60 and audio["sample_rate"] > 0 and video.get_stream_source()


@pytest.mark.parametrize("spec", [SYNC_LIPSYNC_2, SYNC_LIPSYNC_2_PRO, SYNC_3, KLING_LIPSYNC, LATENTSYNC],
                         ids=lambda s: s.key)
def test_every_new_lipsync_model_runs_from_the_command_line(spec, emulator, both, face, face_720, tmp_path, capsys):
    from sonify import cli

    clip = face_720 if spec is KLING_LIPSYNC else face
    wav = media.write_wav(voice().samples, VOICE_RATE, tmp_path / "voice.wav")
    assert cli.main(["run", spec.key, "--video", clip.path, "--audio", wav, "-o", str(tmp_path / "out"),
                     "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] in {s.model_id for s in (spec, *(o.spec for o in spec.offers))} and Path(record["path"]).is_file()
