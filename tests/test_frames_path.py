"""Frames to a video-to-audio model: checked and hashed in one pass, the proxy encoded straight from them,
no full-resolution file unless the returned VIDEO is asked for one (then exactly once), and that VIDEO
is the input tensor itself with the new sound."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from clips import flash_frames, onset_time
from graphs import running_graph, saved_graph
from pack import ROOT, load_pack, module, outputs

from sonify import media
from sonify.catalog import MMAUDIO_V2, ProxyRule
from sonify.errors import ValidationError
from sonify.media import frames


def count_full_encodes(monkeypatch) -> list[str]:
    """Every call of the pack's full-resolution frames encoder (the real one runs): the name of its thread."""
    pack_media, calls = module("sonify.media"), []
    real = pack_media.frames_to_mp4
    monkeypatch.setattr(pack_media, "frames_to_mp4",
                        lambda *a, **k: calls.append(threading.current_thread().name) or real(*a, **k))
    return calls


def node(node_id: str):
    cls = load_pack().NODE_CLASS_MAPPINGS[node_id]
    return outputs(getattr(cls(), cls.FUNCTION))


@pytest.mark.parametrize(("n", "fps", "size", "proxy_fps", "proxy_frames"), [
    (48, Fraction(24000, 1001), (1280, 720), Fraction(24000, 1001), 48),
    (90, Fraction(30000, 1001), (640, 360), Fraction(30000, 1001), 90),  # fits: its own size, still a proxy
    (120, Fraction(60000, 1001), (854, 480), Fraction(30000, 1001), 60),  # every other frame
    (50, Fraction(50), (1920, 1080), Fraction(25), 25),
])
def test_the_proxy_from_frames_keeps_duration_and_timing(tmp_path, n, fps, size, proxy_fps, proxy_frames):
    width, height = size
    flash = n // 2 - n // 2 % 2  # a frame the proxy keeps at every rate here
    path = media.frames_to_proxy(flash_frames(n, width, height, flash_frames=(flash,)), fps, ProxyRule(), tmp_path)
    info = media.probe(path)
    assert (info.fps, info.frames) == (proxy_fps, proxy_frames)
    assert abs(info.duration - Fraction(n) / fps) <= 1 / fps
    assert min(info.width, info.height) == min(480, height) and not info.has_audio
    decoded, _ = media.decode_frames(path)
    brightest = int(np.argmax(decoded.mean(axis=(1, 2, 3))))
    assert abs(Fraction(brightest) / proxy_fps - Fraction(flash) / fps) < 1 / proxy_fps


def test_the_fingerprint_checks_every_value_and_follows_the_content():
    clip = flash_frames(6, 64, 48)
    base = frames.fingerprint(clip, Fraction(24))
    assert frames.fingerprint(clip.copy(), Fraction(24)) == base
    assert frames.fingerprint(clip, Fraction(25)) != base
    changed = clip.copy()
    changed[5, 47, 63, 2] += 1e-6
    assert frames.fingerprint(changed, Fraction(24)) != base
    strided = np.ascontiguousarray(np.concatenate([clip, clip], axis=2))[:, :, ::2]  # not C-contiguous
    assert frames.fingerprint(strided, Fraction(24)) == frames.fingerprint(np.ascontiguousarray(strided), Fraction(24))
    for bad, message in ((np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (1.2, "in 0..1"), (-0.5, "in 0..1")):
        spoiled = clip.copy()
        spoiled[3, 10, 10, 1] = bad
        with pytest.raises(ValidationError, match=message):
            frames.fingerprint(spoiled, Fraction(24))


def test_frames_to_a_v2a_model_make_no_full_resolution_file(emulator, wavespeed_env, monkeypatch, tmp_path):
    """Where no node of the graph wants the returned VIDEO's file, the encoder of full-resolution frames runs only
    when the VIDEO is asked for a file or saved, and then once for both."""
    full_encodes = count_full_encodes(monkeypatch)
    fps, n, flash = Fraction(30000, 1001), 45, 20
    images = torch.from_numpy(flash_frames(n, 160, 96, flash_frames=(flash,)))
    running_graph(monkeypatch, saved_graph("3", consumer="GetVideoComponents"))
    audio, video, job = node("SonifyMMAudioV2")(images=images, fps=29.97, prompt="rain", seed=3, unique_id="3")

    assert full_encodes == []
    assert video.get_components().images is images  # the very tensor: no copy, no re-encode
    assert video.get_components().frame_rate == fps
    assert torch.equal(video.get_components().audio["waveform"], audio["waveform"])
    assert audio["waveform"].shape[-1] == round(Fraction(n) / fps * audio["sample_rate"])
    assert abs(onset_time(audio["waveform"][0].numpy(), audio["sample_rate"], 0.5) - flash / fps) <= 1 / fps
    sent = emulator.storage.resolve(emulator.tasks.get(json.loads(job)["task_id"]).media["video"])
    assert min(media.probe(sent).width, media.probe(sent).height) == 96  # the proxy, made from the frames

    first = video.get_stream_source()
    video.save_to(str(tmp_path / "saved.mp4"), metadata={"prompt": {"1": "x"}})
    assert video.get_stream_source() == first and full_encodes == ["MainThread"]
    saved = media.probe(tmp_path / "saved.mp4")
    assert (saved.fps, saved.frames, saved.width, saved.height) == (fps, n, 160, 96) and saved.has_audio
    with av.open(str(tmp_path / "saved.mp4")) as container:
        assert container.metadata.get("prompt") == '{"1": "x"}'
    sound, rate = media.decode_audio(first)
    assert rate == audio["sample_rate"] and abs(sound.shape[1] - audio["waveform"].shape[-1]) <= 2048


def test_a_saved_frames_result_is_encoded_during_the_wait_once(emulator, wavespeed_env, monkeypatch, tmp_path):
    """Where the graph saves the returned VIDEO, its picture is encoded while the job waits, in the background, and
    the save (and any stream asked for) puts the sound on that picture: the frames are encoded once."""
    full_encodes = count_full_encodes(monkeypatch)
    images = torch.from_numpy(flash_frames(30, 96, 64, flash_frames=(12,)))
    running_graph(monkeypatch, saved_graph("3"))
    _, video, _ = node("SonifyMMAudioV2")(images=images, fps=24.0, prompt="rain", seed=3, unique_id="3")
    video.save_to(str(tmp_path / "saved.mp4"), metadata={"prompt": {"1": "x"}})
    video.get_stream_source()
    assert full_encodes == ["sonify-background"]
    saved = media.probe(tmp_path / "saved.mp4")
    assert (saved.frames, saved.width, saved.height) == (30, 96, 64) and saved.has_audio
    with av.open(str(tmp_path / "saved.mp4")) as container:
        assert container.metadata.get("prompt") == '{"1": "x"}'


def test_a_sonify_frames_video_goes_on_as_frames(emulator, wavespeed_env, monkeypatch):
    """A second model node after the first gets the frames, not a file (no encode in between, nor during the wait:
    a Sonify node takes a frames VIDEO as frames)."""
    full_encodes = count_full_encodes(monkeypatch)
    images = torch.from_numpy(flash_frames(30, 96, 64, flash_frames=(12,)))
    running_graph(monkeypatch, {"3": {"class_type": "SonifyMMAudioV2", "inputs": {}},
                                "4": {"class_type": "SonifyThinkSoundWaveSpeed", "inputs": {"video": ["3", 1]}}})
    _, video, _ = node("SonifyMMAudioV2")(images=images, fps=24.0, prompt="rain", seed=1, unique_id="3")
    audio, again, _ = node("SonifyThinkSoundWaveSpeed")(video=video, prompt="", seed=1, unique_id="4")
    assert full_encodes == [] and again.get_components().images is images
    assert audio["waveform"].shape[-1] == round(Fraction(30, 24) * audio["sample_rate"])
    assert module("nodes.comfy").is_file_backed(again) is False


def test_a_file_source_still_gets_its_own_picture_back(emulator, wavespeed_env, clip_path):
    """Unchanged for files: the returned VIDEO is a file with the source's packets."""
    from clips import video_packets

    _, video, _ = node("SonifyMMAudioV2")(video=module("nodes.comfy").FileVideo(str(clip_path)), prompt="rain")
    assert video_packets(video.get_stream_source()) == video_packets(clip_path)


def test_frames_size_and_count_are_checked_before_any_request(emulator, wavespeed_env):
    with pytest.raises(module("sonify.errors").ValidationError, match="images"):
        node("SonifyMMAudioV2")(images=torch.full((8, 64, 64, 3), float("nan")), fps=24.0, prompt="rain")
    assert not [r for r in emulator.requests if r.path.startswith("/api/v3/" + MMAUDIO_V2.model_id)]


def test_without_xxhash_the_frames_are_still_fingerprinted():
    """A pack updated without its requirements: blake2b stands in (slower), with a warning."""
    script = ("import sys; sys.modules['xxhash'] = None\n"
              "import numpy as np; from fractions import Fraction; from sonify.media import frames\n"
              "a = np.zeros((2, 16, 16, 3), np.float32); b = a.copy(); b[1, 1, 1, 1] = 0.5\n"
              "print(frames.fingerprint(a, Fraction(24)) != frames.fingerprint(b, Fraction(24)))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "True" and "xxhash package is missing" in done.stderr
