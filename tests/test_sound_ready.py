"""Sound ready to use, at the emulator: `as generated` leaves the model's samples bit-identical and its AAC copied; a
loudness target reaches the AUDIO and the VIDEO (its AAC encoded once, from those samples); a long clip is
normalised as one sound, and measured and flagged without a target, its sound never loaded whole; silent, clipped
and cut-short takes are flagged by name, put last, and skipped by `best`; the command line writes PCM/FLAC for
editors and refuses what it cannot write before anything is sent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import write_clip
from pack import ROOT, load_pack, module, outputs

from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2
from sonify.errors import ConfigurationError
from sonify.loudness_target import Target
from sonify.media import loudness, sound_check
from sonify.media.sound_file import SoundFile
from sonify.pipeline import messages

MMAUDIO = MMAUDIO_V2.model_id
PARAMS = {"prompt": "rain on a tin roof", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
          "guidance_scale": 4.5, "mask_away_clip": False}


def node(node_id: str):
    cls = load_pack().NODE_CLASS_MAPPINGS[node_id]
    return outputs(getattr(cls(), cls.FUNCTION))


@pytest.fixture
def steady(tmp_path: Path) -> Path:
    """2 s at 24 fps of a picture that drifts all the time (no flash): the emulator's sound is steady, never silent."""
    return write_clip(tmp_path / "steady.mp4", 48, Fraction(24), 96, 64)


def audio_packets(path: str | Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def model_sound(info: dict, seconds: Fraction) -> np.ndarray:
    """The provider's result file decoded and fitted to the picture: the model's samples, as Sonify got them."""
    samples, rate = media.decode_audio(info["result_file"])
    return media.fit_length(samples, rate, seconds)


def test_as_generated_leaves_the_samples_bit_identical_and_a_target_reaches_audio_and_video_encoded_once(
        emulator, wavespeed_env, steady, tmp_path):
    comfy = module("nodes.comfy")
    seconds = media.probe(steady).duration
    audio, video, job = node("SonifyMMAudioV2")(**PARAMS, seed=4, video=comfy.FileVideo(str(steady)))
    info = json.loads(job)
    untouched = model_sound(info, seconds)
    assert np.array_equal(audio["waveform"][0].numpy(), untouched)  # bit for bit
    assert info["audio_copied"] and audio_packets(video.get_stream_source())[:5] == audio_packets(info["result_file"])[:5]
    assert info["sound"]["loudness"] is None and info["sound"]["flags"] == []
    assert info["sound"]["lufs"] == pytest.approx(loudness.integrated(untouched, 44100), abs=0.01)

    named, _, named_job = node("SonifyMMAudioV2")(**PARAMS, seed=4, video=comfy.FileVideo(str(steady)),
                                                  loudness="as generated")
    assert np.array_equal(named["waveform"].numpy(), audio["waveform"].numpy())
    assert json.loads(named_job)["sound"]["loudness"] is None and json.loads(named_job)["audio_copied"]

    louder, louder_video, louder_job = node("SonifyMMAudioV2")(**PARAMS, seed=4, video=comfy.FileVideo(str(steady)),
                                                               loudness="-14 LUFS")
    assert emulator.submits(MMAUDIO) == 1  # the same take, stored: a new loudness costs nothing
    applied = json.loads(louder_job)["sound"]["loudness"]
    assert applied["target_lufs"] == -14 and not applied["held_by_ceiling"]
    samples = louder["waveform"][0].numpy()
    assert loudness.integrated(samples, 44100) == pytest.approx(-14.0, abs=0.1)
    ratio = samples[untouched != 0] / untouched[untouched != 0]
    assert np.allclose(ratio, 10 ** (applied["gain_db"] / 20), rtol=1e-3) and np.ptp(ratio) < 1e-5  # one gain

    # The video's AAC is one encode of exactly these samples (never a decoded AAC encoded again).
    assert not json.loads(louder_job)["audio_copied"]
    once = media.mux(steady, samples, 44100, tmp_path / "once.mp4")
    assert audio_packets(louder_video.get_stream_source()) == audio_packets(once)


def test_a_long_clip_is_normalised_as_one_sound(emulator, wavespeed_env, tmp_path):
    clip = write_clip(tmp_path / "long.mp4", 32 * 12, Fraction(12), 64, 48)  # 32 s: two windows of MMAudio
    source = media.VideoSource(path=str(clip))
    emulator.bad_sound_next(MMAUDIO, "clipped")  # one window 18 dB louder than the other: a step the model made
    made = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 5}, source, out_dir=tmp_path / "a")
    assert len(made.info["windows"]) == 2 and emulator.submits(MMAUDIO) == 2
    goal = Target(-16.0, -1.0)
    set_ = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 5}, source, out_dir=tmp_path / "b", loudness=goal)
    assert emulator.submits(MMAUDIO) == 2  # the windows' stored results

    # One gain for the joined sound: the same ratio in both windows and across the join (a gain per window would
    # have levelled the louder window down to the other and made a step of its own).
    before, after = made.audio, set_.audio
    sounding = np.abs(before) > 1e-4
    ratio = after[sounding] / before[sounding]
    assert np.ptp(ratio) < 1e-5 * ratio.mean()
    applied = set_.info["sound"]["loudness"]
    assert 10 ** (applied["gain_db"] / 20) == pytest.approx(float(ratio.mean()), rel=1e-3)
    level = loudness.measure(after, 44100)
    assert level.true_peak_dbtp <= -1.0 + 0.01
    assert level.lufs == pytest.approx(-16.0, abs=0.1) or applied["held_by_ceiling"]
    with av.open(str(set_.video_path)) as container:  # the joined, normalised sound is what the video carries
        carried = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    assert loudness.integrated(carried, 44100) == pytest.approx(loudness.integrated(after, 44100), abs=0.2)


def test_a_long_clip_without_a_loudness_target_is_measured_in_its_file_flagged_and_put_last(emulator, wavespeed_env,
                                                                                             tmp_path):
    # 32 s: two windows of MMAudio, a flash every 2 s (the emulator's sound follows the motion)
    clip = write_clip(tmp_path / "long.mp4", 32 * 12, Fraction(12), 64, 48, flash_at=range(6, 384, 24))
    source = media.VideoSource(path=str(clip))
    seconds = float(media.probe(clip).duration)
    emulator.bad_sound_next(MMAUDIO, "clipped")  # one window of one of the two takes
    made = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 6}, source, out_dir=tmp_path / "a", variations=2)
    assert emulator.submits(MMAUDIO) == 4 and all(len(t.info["windows"]) == 2 for t in made.takes)
    assert all(isinstance(take.sound, SoundFile) for take in made.takes)  # measured, never loaded whole
    good, clipped = made.takes  # in the order of `audio`: the flagged take last
    assert good.info["sound"]["flags"] == [] and clipped.info["sound"]["flags"] == ["clipped"]
    assert made.info["best"] == good.info["take"] and [good.info["position"], clipped.info["position"]] == [1, 2]
    assert "clipped: " in clipped.info["why"] and "flagged takes come last" in clipped.info["why"]
    for take in made.takes:  # a short clip's measures, of the joined sound as a whole
        sound, samples = take.info["sound"], take.audio
        assert sound["loudness"] is None and sound["sound_seconds"] == pytest.approx(seconds)
        assert sound == {**sound_check.check(samples, 44100, seconds, seconds).as_dict(), "loudness": None}
        assert sound["lufs"] == pytest.approx(loudness.integrated(samples, 44100), abs=0.01)
        assert sound["clipped_samples"] == np.count_nonzero(np.abs(samples) >= 0.999)
    assert good.info["sound"]["lufs"] is not None and clipped.info["sound"]["clipped_samples"] > 1000

    said: list[str] = []
    emulator.bad_sound_next(MMAUDIO, "silent", times=2)  # both windows of one take
    silent = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 60}, source, out_dir=tmp_path / "b",
                          on_progress=lambda text, fraction: said.append(text))
    assert emulator.submits(MMAUDIO) == 6 and isinstance(silent.sound, SoundFile)
    assert silent.info["sound"]["flags"] == ["silent"]
    assert silent.info["sound"]["silent_share"] > 0.9 and silent.info["sound"]["lufs"] is None
    assert "FLAGGED silent" in said[-1]  # the after-run line


def test_silent_clipped_and_short_takes_are_flagged_put_last_and_best_skips_them(emulator, wavespeed_env, steady):
    for bad in ("silent", "clipped", "short"):
        emulator.bad_sound_next(MMAUDIO, bad)  # three of the four takes; which ones, the order of their submits says
    comfy = module("nodes.comfy")
    audio, video, job = node("SonifyMMAudioV2")(**PARAMS, seed=10, video=comfy.FileVideo(str(steady)), variations=4)
    info = json.loads(job)
    takes = {t["take"]: t for t in info["takes"]}
    flags = sorted(tuple(t["sound"]["flags"]) for t in takes.values())
    assert flags == [(), ("clipped",), ("cut short",), ("silent",)]
    good = next(k for k, t in takes.items() if not t["sound"]["flags"])
    assert info["best"] == good and takes[good]["position"] == 1 and info["take"] == good
    flagged = sorted(k for k in takes if k != good)
    assert [takes[k]["position"] for k in flagged] == [2, 3, 4]  # the flagged ones last, in take order

    def of(flag: str) -> dict:
        return next(t for t in takes.values() if flag in t["sound"]["flags"])

    assert of("silent")["sound"]["silent_share"] > 0.9 and of("silent")["sound"]["lufs"] is None
    assert of("clipped")["sound"]["clipped_samples"] > 10
    assert of("cut short")["sound"]["sound_seconds"] == pytest.approx(1.0, abs=0.05)
    assert of("cut short")["sound"]["picture_seconds"] == pytest.approx(2.0)
    assert "the best take" in takes[good]["why"]
    assert "silent: 100% below -60 dBFS — flagged takes come last" in of("silent")["why"]
    assert "cut short: 1.02 s of sound for 2.00 s of picture" in of("cut short")["why"]

    waveform = audio["waveform"]
    first = waveform[0].numpy()
    assert np.array_equal(first, model_sound(info, media.probe(steady).duration))  # the batch: best first (its info)
    with av.open(video.get_stream_source()) as container:  # the video carries it
        carried = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    assert np.corrcoef(carried[0, 2048:40000], first[0, 2048:40000])[0, 1] > 0.9

    (picked,) = node("SonifyPickAudio")(audio=audio, index=3, best=True)
    assert torch.equal(picked["waveform"], waveform[0:1])
    backwards = {"waveform": waveform.flip(0), "sample_rate": 44100}  # best judged on the sound, not its place
    (picked,) = node("SonifyPickAudio")(audio=backwards, index=1, best=True)
    assert torch.equal(picked["waveform"], waveform[0:1])
    (picked,) = node("SonifyPickAudio")(audio=backwards, index=1)  # without best, index as before
    assert torch.equal(picked["waveform"], waveform[3:4])

    summary = messages.summary(info).splitlines()
    takes = [line for line in summary if re.match(r"\d+\. take ", line)]  # a line per take
    assert takes[0].startswith(f"1. take {good}: ") and "LUFS" in takes[0] and "FLAGGED" not in takes[0]
    assert len(takes) == 4 and all("FLAGGED" in line for line in takes[1:])


def test_a_loudness_target_skips_a_silent_take_and_sets_the_others(emulator, wavespeed_env, steady, tmp_path):
    emulator.bad_sound_next(MMAUDIO, "silent")
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 20}, media.VideoSource(path=str(steady)),
                          out_dir=tmp_path / "o", variations=2, loudness=Target(-23.0))
    good, silent = result.takes  # ordered: the silent one last
    assert silent.info["sound"]["flags"] == ["silent"] and silent.info["sound"]["loudness"] is None
    assert np.array_equal(silent.audio, model_sound(silent.info, media.probe(steady).duration))  # left as it was
    assert loudness.integrated(good.audio, 44100) == pytest.approx(-23.0, abs=0.1)


def test_mux_audio_sets_the_soundtracks_loudness(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 48, Fraction(24), 64, 48)
    tone = 10 ** (-30 / 20) * np.sin(2 * np.pi * 1000 * np.arange(2 * 48000) / 48000)
    sound = {"waveform": torch.from_numpy(np.stack([tone, tone]).astype(np.float32))[None], "sample_rate": 48000}
    comfy = module("nodes.comfy")
    (video,) = node("SonifyMuxAudio")(video=comfy.FileVideo(str(clip)), audio=sound, mode="replace",
                                      audio_gain_db=0.0, video_gain_db=0.0, loudness="-23 LUFS")
    samples, rate = media.decode_audio(video.get_stream_source())
    assert loudness.integrated(samples, rate) == pytest.approx(-23.0, abs=0.2)  # through one AAC encode
    (plain,) = node("SonifyMuxAudio")(video=comfy.FileVideo(str(clip)), audio=sound, mode="replace",
                                      audio_gain_db=0.0, video_gain_db=0.0)
    samples, rate = media.decode_audio(plain.get_stream_source())
    assert loudness.integrated(samples, rate) == pytest.approx(-30.0, abs=0.2)


# ---------------------------------------------------------------- the command line


def sonify(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonify", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_command_line_writes_lossless_sound_for_editors_and_copies_aac_untouched(emulator, wavespeed_env, steady,
                                                                                      tmp_path):
    seconds = media.probe(steady).duration
    run = ("run", "mmaudio-v2", "--video", steady, "--prompt", "rain", "--seed", "8", "--json")
    done = sonify(*run, "-o", tmp_path / "pcm.mov", "--audio-codec", "pcm")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    expected = model_sound(record["job"], seconds)
    with av.open(record["path"]) as container:
        assert container.streams.audio[0].codec_context.name == "pcm_f32le"
    assert np.array_equal(media.decode_audio(record["path"])[0], expected)  # the model's samples, exactly

    done = sonify(*run, "-o", tmp_path / "flac.mkv", "--audio-codec", "flac")
    assert done.returncode == 0, done.stderr
    with av.open(json.loads(done.stdout)["path"]) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "flac"
        stored = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
    assert np.array_equal(stored, np.rint(expected.astype(np.float64) * 2**23).astype(np.int32) << 8)

    done = sonify(*run, "-o", tmp_path / "aac.mov")  # AAC: the provider's packets, through the .mp4, into the .mov
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    carried = audio_packets(record["path"])
    assert carried == audio_packets(record["job"]["result_file"])[:len(carried)]

    done = sonify(*run, "-o", tmp_path / "set.mkv", "--audio-codec", "pcm", "--loudness", "-16", "--true-peak", "-2")
    assert done.returncode == 0, done.stderr
    assert "sound: " in done.stderr and "→ -16.0 LUFS" in done.stderr
    set_ = media.decode_audio(json.loads(done.stdout)["path"])[0]
    assert loudness.integrated(set_, 44100) == pytest.approx(-16.0, abs=0.1)
    assert emulator.submits(MMAUDIO) == 1  # seed 8 each time: one job


@pytest.mark.parametrize(("args", "message"), [
    (("--audio-codec", "flac", "-o", "out.mov"), "--audio-codec: flac goes in a .mkv file, not .mov"),
    (("--audio-codec", "pcm", "-o", "folder"), "--audio-codec: pcm_f32le goes in a .mov or .mkv file"),
    (("--loudness", "-3"), "--loudness: must be from -40 to -5 LUFS, got -3"),
    (("--loudness", "-14", "--true-peak", "2"), "--true-peak: must be from -9 to 0 dBTP, got 2"),
])
def test_the_command_line_refuses_what_it_cannot_do_before_anything_is_sent(emulator, wavespeed_env, steady, tmp_path,
                                                                            args, message):
    done = sonify("run", "mmaudio-v2", "--video", steady, "--prompt", "rain",
                  *[tmp_path / a if a.startswith(("out", "folder")) else a for a in args])
    assert done.returncode == 3 and message in done.stderr, done.stderr
    assert emulator.requests == []


def test_a_batch_remembers_its_loudness(emulator, wavespeed_env, steady, tmp_path):
    batch = ("batch", "mmaudio-v2", steady, "-o", tmp_path / "out", "--prompt", "rain", "--seed", "2", "--json")
    first = sonify(*batch, "--loudness", "-23")
    assert first.returncode == 0, first.stderr
    sidecar = json.loads((tmp_path / "out" / "steady.sonify.json").read_text())
    assert sidecar["loudness"] == {"lufs": -23.0, "ceiling_dbtp": -1.0}
    samples, rate = media.decode_audio(tmp_path / "out" / "steady.mp4")
    assert loudness.integrated(samples, rate) == pytest.approx(-23.0, abs=0.2)
    again = sonify(*batch, "--loudness", "-23")
    assert again.returncode == 0 and "1 already in" in again.stderr, again.stderr
    other = sonify(*batch)  # as generated: not the result in the folder, made again (from the stored take: free)
    assert other.returncode == 0 and "already in" not in other.stderr, other.stderr
    assert "loudness" not in json.loads((tmp_path / "out" / "steady.sonify.json").read_text())
    samples, rate = media.decode_audio(tmp_path / "out" / "steady.mp4")
    assert loudness.integrated(samples, rate) != pytest.approx(-23.0, abs=0.5)
    assert emulator.submits(MMAUDIO) == 1


def test_the_silence_level_is_a_setting_checked_before_anything_is_sent(emulator, wavespeed_env, steady, tmp_path,
                                                                         monkeypatch):
    source = media.VideoSource(path=str(steady))
    monkeypatch.setenv("SONIFY_SILENCE_DBFS", "quiet")
    with pytest.raises(ConfigurationError, match=r"SONIFY_SILENCE_DBFS must be a number of dBFS from -120 to -20"):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, source, out_dir=tmp_path / "o")
    assert emulator.requests == []
    monkeypatch.setenv("SONIFY_SILENCE_DBFS", "-20")  # the emulator's steady sound is about -22 dBFS
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, source, out_dir=tmp_path / "o")
    assert result.info["sound"]["flags"] == ["silent"] and result.info["sound"]["silence_dbfs"] == -20


def test_a_temporal_batch_refuses_a_loudness_it_cannot_set_yet(emulator, wavespeed_env, steady, tmp_path):
    done = sonify("batch", "mmaudio-v2", steady, "-o", tmp_path / "out", "--prompt", "rain", "--loudness", "-14",
                  "--temporal", "127.0.0.1:7233")
    assert done.returncode == 3 and "--loudness: is not yet done by a Temporal batch" in done.stderr, done.stderr
    assert emulator.requests == []
