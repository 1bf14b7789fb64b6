"""Variations: N takes of one node run, each its own job at the emulator, returned as one AUDIO batch;
Pick Take picks one; Cancel and the price limit hold for every take; old workflows run as before. A take that
fails leaves the others delivered and is named; the seeds drawn for -1 are journaled, so the same run again pays
only for the failed take."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import flash_frames, write_clip
from pack import ROOT, load_pack, module, outputs

from sonify import journal as jobs
from sonify import media, pipeline
from sonify.catalog import INT32_MAX, KLING_V2A, MMAUDIO_V2, THINKSOUND_FAL
from sonify.errors import Cancelled, ValidationError

MMAUDIO = MMAUDIO_V2.model_id
UPLOAD = "/api/v3/media/uploads"  # an upload ticket: one per file sent
PARAMS = {"prompt": "a metal door slams", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
          "guidance_scale": 4.5, "mask_away_clip": False}


def node(node_id: str):
    cls = load_pack().NODE_CLASS_MAPPINGS[node_id]
    return outputs(getattr(cls(), cls.FUNCTION))


def sent_seeds(emulator, model_id: str = MMAUDIO) -> list[int | None]:
    return sorted(task.params.get("seed") for task in emulator.tasks.all() if task.spec.model_id == model_id)


def uploads(emulator) -> int:
    return sum(1 for r in emulator.requests if r.method == "POST" and r.path == UPLOAD)


def test_four_takes_four_jobs_one_batch_and_pick_returns_the_chosen_take(emulator, wavespeed_env, tmp_path):
    fps, n = Fraction(24), 36
    source = write_clip(tmp_path / "clip.mp4", n, fps, 96, 64, flash_at=(12,))
    comfy = module("nodes.comfy")
    audio, video, job = node("SonifyMMAudioV2")(**PARAMS, seed=-1, video=comfy.FileVideo(str(source)), variations=4)

    assert emulator.submits(MMAUDIO) == 4
    assert uploads(emulator) == 1  # one take uploads, the others reuse its file
    seeds = sent_seeds(emulator)
    assert len(set(seeds)) == 4 and all(0 <= s <= INT32_MAX for s in seeds)  # drawn here, not -1
    waveform = audio["waveform"]
    assert waveform.shape == (4, 1, round(n / fps * 44100)) and waveform.dtype == torch.float32
    assert all(not torch.equal(waveform[i], waveform[j]) for i in range(4) for j in range(i))  # four takes

    info = json.loads(job)
    assert info["variations"] == 4 and [t["take"] for t in info["takes"]] == [1, 2, 3, 4]
    assert sorted(t["seed"] for t in info["takes"]) == seeds
    task_ids = [t["task_id"] for t in info["takes"]]
    assert len(set(task_ids)) == 4 and info["task_id"] == task_ids[0]
    assert info["cost_usd_estimate"] == pytest.approx(4 * 0.002)  # 1.5 s → 2 s of audio each
    assert all(t["cost_usd_estimate"] == pytest.approx(0.002) and t["status"] == "completed" for t in info["takes"])

    with av.open(video.get_stream_source()) as container:  # the video carries the first take
        sound = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    first = waveform[0, 0].numpy()
    assert np.corrcoef(sound[0, 2048:20000], first[2048:20000])[0, 1] > 0.9

    (picked,) = node("SonifyPickAudio")(audio=audio, index=3)
    assert picked["sample_rate"] == 44100 and torch.equal(picked["waveform"], waveform[2:3])
    with pytest.raises(module("sonify.errors").ValidationError, match=r"index: must be from 1 to 4"):
        node("SonifyPickAudio")(audio=audio, index=5)


def test_a_fixed_seed_gives_consecutive_seeds_and_a_rerun_reuses_every_take(emulator, wavespeed_env, clip, tmp_path):
    seen: list[str] = []
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 41}, clip, out_dir=tmp_path / "out", variations=4,
                          on_progress=lambda text, fraction: seen.append(text))
    assert sent_seeds(emulator) == [41, 42, 43, 44]
    assert [t["seed"] for t in result.info["takes"]] == [41, 42, 43, 44]
    assert [take.info["params"]["seed"] for take in result.takes] == [41, 42, 43, 44]
    assert all(take.video_path.is_file() for take in result.takes)
    assert any(text.startswith("take 3 of 4: ") for text in seen) and seen[-1].startswith("emulator (synthetic sound) · 4 takes done in ")

    again = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 41}, clip, out_dir=tmp_path / "out", variations=4)
    assert emulator.submits(MMAUDIO) == 4  # all four stored: no new job
    assert all(t["cached"] for t in again.info["takes"])
    for before, after in zip(result.takes, again.takes):
        assert np.array_equal(before.audio, after.audio)


def test_frames_takes_share_one_proxy_upload_and_a_model_without_seed_gets_identical_jobs(emulator, wavespeed_env):
    fps, n = Fraction(24), 80  # 3.33 s: Kling's shortest is 3 s
    frames = torch.from_numpy(flash_frames(n, 96, 64, flash_frames=(30,)))
    audio, video, job = node("SonifyKlingVideoToAudio")(sound_effect_prompt="a door", bgm_prompt="", asmr_mode=False,
                                                        images=frames, fps=float(fps), variations=2)
    assert emulator.submits(KLING_V2A.model_id) == 2 and uploads(emulator) == 1
    assert audio["waveform"].shape == (2, 2, round(n / fps * 48000))
    info = json.loads(job)
    assert [t["seed"] for t in info["takes"]] == [None, None] and len({t["task_id"] for t in info["takes"]}) == 2
    assert info["proxy"] and info["cost_usd_estimate"] == pytest.approx(0.07)
    assert video.get_components().images.shape[0] == n  # the frames themselves, with the first take


def test_the_price_limit_applies_to_all_takes_before_anything_is_sent(emulator, wavespeed_env, clip, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_JOB", "0.003")  # one take of 1 s: $0.001; four: $0.004
    with pytest.raises(ValidationError, match=r"SONIFY_MAX_USD_PER_JOB: the limit applies to a node run's sum: its 4 takes are together "
                                           r"estimated at \$0\.004, above the limit of \$0\.003"):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out", variations=4)
    assert emulator.requests == []  # no upload, no submit
    pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out", variations=3)
    assert emulator.submits(MMAUDIO) == 3


def test_cancel_cancels_every_running_take(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    """Two run at once (a Bronze account's limit); the others wait for a slot and are never submitted."""
    monkeypatch.setenv("SONIFY_WAVESPEED_TIER", "bronze")
    emulator.model_seconds = 30
    pressed = threading.Event()

    def is_cancelled() -> bool:
        if not pressed.is_set() and sum(t.status == "processing" for t in emulator.tasks.all()) == 2:
            pressed.set()
        return pressed.is_set()

    started = time.monotonic()
    with pytest.raises(Cancelled) as caught:
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out", variations=4,
                     is_cancelled=is_cancelled)
    assert time.monotonic() - started < 20
    assert emulator.submits(MMAUDIO) == 2 and emulator.cancels(MMAUDIO) == 2
    assert all(t.status in ("cancelled", "deleted") and not t.outputs for t in emulator.tasks.all())
    journal = jobs.Journal(Path(wavespeed_env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE)
    assert [r.status for r in journal.recent()] == ["cancelled"] * 2  # the others never got a row's task
    for task in emulator.tasks.all():  # the message says what came of each
        assert f"wavespeed accepted the cancel of task {task.id}" in str(caught.value)


def test_fal_takes_run_within_its_two_slots(emulator, fal_env, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_FAL_LIMITS", "2")  # a new fal account's (on the emulator, only when set)
    result = pipeline.run(THINKSOUND_FAL, {"prompt": "rain", "seed": 5}, clip, out_dir=tmp_path / "out", variations=3)
    assert emulator.submits(THINKSOUND_FAL.model_id) == 3 and len(result.takes) == 3
    assert [t["seed"] for t in result.info["takes"]] == [5, 6, 7]
    starts = sorted(t.submitted for t in emulator.tasks.all())
    ends = sorted(emulator.task_completed_at(t.id) for t in emulator.tasks.all())
    assert starts[2] >= ends[0]  # the third was submitted only once one of the first two had ended


@pytest.mark.parametrize("variations, seed, message", [
    (9, -1, r"variations: must be a whole number from 1 to 8, got 9"),
    (0, -1, r"variations: must be a whole number from 1 to 8, got 0"),
    (2, INT32_MAX, rf"seed: with 2 variations \(seeds {INT32_MAX} and up\) must be at most {INT32_MAX - 1}"),
])
def test_bad_variations_are_refused_by_name_before_any_request(emulator, wavespeed_env, clip, tmp_path, variations,
                                                               seed, message):
    with pytest.raises(ValidationError, match=message):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": seed}, clip, out_dir=tmp_path / "out",
                     variations=variations)
    assert emulator.requests == []


def test_an_api_format_prompt_saved_before_variations_runs_one_take(emulator, wavespeed_env, tmp_path):
    """The example workflow's widget values as an API-format prompt gives them: no `variations`."""
    workflow = json.loads((ROOT / "example_workflows" / "MMAudio - Foley for a Clip.json").read_text())
    saved = next(n for n in workflow["nodes"] if n["type"] == "SonifyMMAudioV2")["widgets_values"]
    names = ["prompt", "negative_prompt", "duration", "num_inference_steps", "guidance_scale", "mask_away_clip",
             "seed", "control_after_generate", "fps"]
    inputs = {k: v for k, v in zip(names, saved) if k != "control_after_generate"}
    assert "variations" not in inputs
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 48, flash_at=(8,))
    audio, _, job = node("SonifyMMAudioV2")(**inputs, video=module("nodes.comfy").FileVideo(str(source)))
    assert audio["waveform"].shape[0] == 1 and emulator.submits(MMAUDIO) == 1
    assert "takes" not in json.loads(job) and "variations" not in json.loads(job)


def test_cli_variations_writes_one_file_per_take(emulator, wavespeed_env, clip_path, tmp_path):
    out = tmp_path / "out" / "door.mp4"
    done = subprocess.run([sys.executable, "-m", "sonify", "run", "mmaudio-v2", "--video", str(clip_path), "--prompt",
                           "a door", "--seed", "3", "--variations", "2", "-o", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    written = [Path(line) for line in done.stdout.split()]
    assert written == [out.with_name("door-take1.mp4"), out.with_name("door-take2.mp4")]
    assert all(media.probe(path).has_audio for path in written)
    assert emulator.submits(MMAUDIO) == 2 and sent_seeds(emulator) == [3, 4]
    as_json = subprocess.run([sys.executable, "-m", "sonify", "run", "mmaudio-v2", "--video", str(clip_path),
                              "--prompt", "a door", "--seed", "3", "--variations", "2", "-o", str(tmp_path / "sound.wav"),
                              "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert as_json.returncode == 0, as_json.stderr
    records = [json.loads(line) for line in as_json.stdout.splitlines()]  # one per take: the stored results
    assert [(r["take"], r["seed"], Path(r["path"]).name) for r in records] == [(1, 3, "sound-take1.wav"),
                                                                               (2, 4, "sound-take2.wav")]
    assert emulator.submits(MMAUDIO) == 2  # fixed seeds: the same takes again, no new job


def test_a_failed_seed_minus_one_take_keeps_the_others_and_a_rerun_pays_only_for_it(emulator, wavespeed_env, clip,
                                                                                      tmp_path):
    seen: list[str] = []

    def run() -> pipeline.Result:
        return pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": -1}, clip, out_dir=tmp_path / "out", variations=4,
                            on_progress=lambda text, fraction: seen.append(text))

    emulator.fail_next(MMAUDIO, error="no sound for this one", code=1403)
    result = run()
    (bad,) = [task for task in emulator.tasks.all() if task.status == "failed"]
    seeds = sent_seeds(emulator)
    assert emulator.submits(MMAUDIO) == 4 and len(set(seeds)) == 4
    (failed,) = result.failed
    assert failed == result.info["failed"][0] and failed["status"] == "failed"
    assert failed["task_id"] == bad.id and failed["seed"] == bad.params["seed"] and "no sound for this one" in failed["error"]
    assert len(result.takes) == 3 and all(take.video_path.is_file() for take in result.takes)
    assert [take.info["take"] for take in result.takes] == [n for n in (1, 2, 3, 4) if n != failed["take"]]
    listed = {t["take"]: t for t in result.info["takes"]}
    assert [t["seed"] for t in listed.values()] == seeds and listed[failed["take"]]["error"] == failed["error"]
    assert result.info["variations"] == 4 and result.info["task_id"] == result.takes[0].info["task_id"]
    done, *_, named = seen[-1].split("\n")  # the last progress text: the done line, ..., the failed take
    assert " · 3 of 4 takes done in " in done and named == pipeline.failed_text(failed)

    again = run()  # the same seeds, from the journal: the three stored, only the failed take submitted again
    assert emulator.submits(MMAUDIO) == 5 and emulator.tasks.all()[-1].params["seed"] == bad.params["seed"]
    assert not again.failed and [t["seed"] for t in again.info["takes"]] == seeds
    assert [t["cached"] for t in again.info["takes"]] == [n != failed["take"] for n in (1, 2, 3, 4)]
    (new,) = [t for t in again.info["takes"] if not t["cached"]]  # the done line's cost: the new take's alone
    assert re.fullmatch(rf".* · 4 takes done in .* · \${new['cost_usd_measured']:.3f} measured", seen[-1].split("\n")[0])

    run()  # every take delivered last time: -1 asks for new ones
    assert emulator.submits(MMAUDIO) == 9 and not {t.params["seed"] for t in emulator.tasks.all()[-4:]} & set(seeds)


def test_the_node_returns_the_takes_that_came_and_names_the_failed_one(emulator, wavespeed_env, tmp_path):
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 48, flash_at=(8,))
    emulator.fail_next(MMAUDIO, error="no sound for this one", code=1403)
    audio, _, job = node("SonifyMMAudioV2")(**PARAMS, seed=-1, video=module("nodes.comfy").FileVideo(str(source)),
                                            variations=3)
    (bad,) = [task for task in emulator.tasks.all() if task.status == "failed"]
    assert audio["waveform"].shape[0] == 2  # the batch holds the takes that came
    (failed,) = json.loads(job)["failed"]
    assert (failed["task_id"], failed["seed"]) == (bad.id, bad.params["seed"]) and "no sound" in failed["error"]


def test_cli_names_a_failed_take_writes_the_others_and_exits_6(emulator, wavespeed_env, clip_path, tmp_path):
    emulator.fail_next(MMAUDIO, error="no sound for this one", code=1403)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "sonify", "run", "mmaudio-v2", "--video", str(clip_path), "--prompt",
                           "a door", "--variations", "3", "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    (bad,) = [task for task in emulator.tasks.all() if task.status == "failed"]
    assert done.returncode == 6 and "Traceback" not in done.stderr
    written = [Path(line) for line in done.stdout.split()]
    assert len(written) == 2 and all(media.probe(path).has_audio for path in written)
    assert f"(seed {bad.params['seed']}, task {bad.id}) failed: " in done.stderr and "no sound for this one" in done.stderr
