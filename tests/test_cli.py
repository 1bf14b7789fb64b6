"""The command line driven as a user drives it: `python -m sonify …` in a subprocess, against the
emulator started in this process. Exit codes and messages are what is checked."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import write_clip
from conftest import EMULATOR_KEY, FAL_KEY, sigint_ignored
from pack import ROOT

from sonify import journal, media
from sonify.catalog import KLING_V2A, MMAUDIO_V2, MODELS, PROVIDERS

MMAUDIO = MMAUDIO_V2.model_id


def sonify(*args: str | Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m sonify ARGS` (from the project root by default) with this process's environment (+ env)."""
    return subprocess.run([sys.executable, "-m", "sonify", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def flat(text: str) -> str:
    """Help text with argparse's line wrapping undone."""
    return " ".join(text.split())


def submits(emulator, model_id: str = MMAUDIO) -> int:
    return emulator.submits(model_id)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 48, flash_at=(8,))


def clips(folder: Path, names: tuple[str, ...], frames: int = 24) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        write_clip(folder / name, frames, Fraction(24), 64, 48, flash_at=(i + 2,))
    return folder


# ---------------------------------------------------------------- arguments and help


@pytest.mark.parametrize("key", list(MODELS))
def test_run_model_help_lists_every_parameter_with_range_and_default(key):
    done = sonify("run", key, "--help")
    assert done.returncode == 0, done.stderr
    text = flat(done.stdout)
    spec = MODELS[key]
    assert spec.description in text and f"Price: {spec.price_text}" in text
    for param in spec.params:
        assert f"--{param.name}" in text
        assert flat(param.describe()) in text  # its help, range and default, from the catalog
        if param.kind in ("int", "float"):
            assert f"Range: {param.range_text()}" in text
    assert ("--audio PATH" in text) == bool(spec.audio_field)


def test_top_level_and_run_help():
    top = sonify("--help")
    assert top.returncode == 0
    for command in ("run", "batch", "fetch", "jobs", "doctor", "emulator", "demo"):
        assert re.search(rf"^\s+{command}\s", top.stdout, re.MULTILINE), command
    assert "Exit codes" in top.stdout
    run = sonify("run", "--help")
    assert run.returncode == 0 and all(key in run.stdout for key in MODELS)


@pytest.mark.parametrize(("args", "suggestion"), [
    (("run", "mmaudio", "--video", "x.mp4"), "did you mean mmaudio-v2?"),
    (("run", "kling", "--video", "x.mp4"), "did you mean kling-video-to-audio or kling-lipsync?"),
    (("batch", "thinksond", "x.mp4", "-o", "out"), "did you mean thinksound or thinksound-fal?"),
    (("run", "mmadio-v2", "--video", "x.mp4"), "did you mean mmaudio-v2?"),
])
def test_a_model_typo_suggests_the_closest(args, suggestion):
    done = sonify(*args)
    assert done.returncode == 2
    assert f"unknown model {args[1]!r}; {suggestion}" in done.stderr


@pytest.mark.parametrize("args", [
    (),
    ("run", "mmaudio-v2", "--prompt", "rain"),  # no --video
    ("run", "mmaudio-v2", "--video", "x.mp4", "--prompt", "rain", "--num_inference_steps", "many"),
    ("run", "mmaudio-v2", "--video", "x.mp4", "--prompt", "rain", "--mask_away_clip", "maybe"),
    ("run", "sync-lipsync", "--video", "x.mp4", "--sync_mode", "stretch"),
    ("run", "mmaudio-v2", "--video", "x.mp4", "--no_such_option", "1"),
    ("batch", "mmaudio-v2", "x.mp4", "--prompt", "rain"),  # no -o
    ("batch", "mmaudio-v2", "x.mp4", "-o", "out", "--prompt", "rain", "--concurrency", "0"),
])
def test_bad_arguments_are_usage_errors(args):
    done = sonify(*args)
    assert done.returncode == 2, done.stderr
    assert "usage:" in done.stderr and "error:" in done.stderr


def test_fetch_takes_the_catalogs_providers():
    done = sonify("fetch", "replicate", "abc")
    assert done.returncode == 2
    choices = re.search(r"invalid choice: .*\(choose from (.*)\)", done.stderr)
    assert choices and re.findall(r"\w+", choices[1]) == list(PROVIDERS)


# ---------------------------------------------------------------- run


def test_run_writes_the_clip_with_sound_and_reports_time_and_cost(emulator, wavespeed_env, clip, tmp_path):
    target = tmp_path / "out" / "rain.mp4"
    done = sonify("run", "mmaudio-v2", "--video", clip, "--prompt", "rain", "--seed", "3", "-o", target)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target) and target.is_file()
    samples, rate = media.decode_audio(target)
    assert rate == 44100 and np.abs(samples).max() > 0.1
    assert re.search(r"done in [\d.]+ s \(.*wait [\d.]+ s.*\) · \$0\.001 measured \(1 second of sound\)",
                     done.stderr), done.stderr
    assert "{" not in done.stderr  # the job info only with -v or --json
    assert submits(emulator) == 1

    verbose = sonify("run", "mmaudio-v2", "--video", clip, "--prompt", "rain", "--seed", "3", "-o", target, "-v")
    assert verbose.returncode == 0, verbose.stderr
    info = json.loads(verbose.stderr[verbose.stderr.index("{"):verbose.stderr.rindex("}") + 1])
    assert info["params"]["seed"] == 3 and info["params"]["duration"] == 1 and info["cached"]  # seed 3 again: free
    assert verbose.stdout.strip() == str(target) and submits(emulator) == 1

    quiet = sonify("run", "mmaudio-v2", "--video", clip, "--prompt", "rain", "--seed", "3", "-o", target, "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout.strip() == str(target)


def test_run_json_prints_one_record_and_nothing_else_on_stdout(emulator, wavespeed_env, clip, tmp_path):
    done = sonify("run", "mmaudio-v2", "--video", clip, "--prompt", "rain", "--seed", "5", "-o", tmp_path / "out",
                  "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    record = json.loads(line)
    (row,) = journal_rows(wavespeed_env)
    assert record["task_id"] == row.task_id and Path(record["path"]).is_file()
    assert record["path"] == str(tmp_path / "out" / f"sonify-mmaudio-v2-{row.task_id}.mp4")
    assert record["cost_usd_estimate"] == 0.001 and record["seed"] == 5
    assert record["emulator"] is True and record["reused"] is False and record["resumed"] is False
    assert {"prepare", "upload", "submit", "wait", "download"} <= set(record["seconds"])
    assert record["job"]["task_id"] == row.task_id and record["job"]["emulator"] is True
    assert "done in" in done.stderr  # progress stays on stderr


@pytest.mark.parametrize(("name", "streams"), [("out.mov", {"video", "audio"}), ("sound.wav", {"audio"})])
def test_run_o_with_a_media_suffix_writes_that_file(emulator, wavespeed_env, clip, tmp_path, name, streams):
    target = tmp_path / "results" / name
    done = sonify("run", "mmaudio-v2", "--video", clip, "--prompt", "rain", "-o", target)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target) and target.is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == [name]  # the file alone, no folder, no .mp4 left
    with av.open(str(target)) as container:
        assert {stream.type for stream in container.streams} == streams
        assert container.format.name.split(",")[0] == {"out.mov": "mov", "sound.wav": "wav"}[name]
    samples, rate = media.decode_audio(target)
    assert rate == 44100 and abs(samples.shape[1] / rate - 1.0) < 0.03 and np.abs(samples).max() > 0.1


def test_run_o_with_a_media_suffix_it_cannot_write_is_refused_before_anything_is_sent(emulator, wavespeed_env, clip,
                                                                                      tmp_path):
    done = sonify("run", "mmaudio-v2", "--video", clip, "--prompt", "rain", "-o", tmp_path / "out.webm")
    assert done.returncode == 3 and "-o: cannot write a .webm file" in done.stderr
    assert emulator.requests == [] and not (tmp_path / "out.webm").exists()


def test_run_lipsync_takes_a_voice_file(emulator, wavespeed_env, clip, tmp_path):
    voice = tmp_path / "voice.wav"
    t = np.arange(22050) / 22050
    media.write_wav((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None], 22050, voice)
    done = sonify("run", "sync-lipsync", "--video", clip, "--audio", voice, "--sync_mode", "loop", "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    result = Path(done.stdout.strip())
    assert result.is_file() and media.probe(result).duration == 1


def test_the_older_param_form_still_works(emulator, wavespeed_env, clip, tmp_path):
    done = sonify("run", "mmaudio-v2", "--video", clip, "--param", "prompt=rain", "--param", "mask_away_clip=true",
                  "-o", tmp_path, "-v")
    assert done.returncode == 0, done.stderr
    assert '"mask_away_clip": true' in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--prompt", "rain", "--num_inference_steps", "99"), "num_inference_steps: must be from 4 to 50, got 99"),
    (("--prompt", "  "), "prompt: is required and must not be empty"),
    (("--param", "promt=rain"), "promt: is not a parameter of MMAudio v2 · WaveSpeed; did you mean prompt?"),
])
def test_invalid_values_are_validation_errors_and_send_nothing(emulator, wavespeed_env, clip, tmp_path, args, message):
    done = sonify("run", "mmaudio-v2", "--video", clip, *args, "-o", tmp_path)
    assert done.returncode == 3, done.stderr
    assert f"error: {message}" in done.stderr
    assert emulator.requests == []


def test_a_missing_clip_is_a_validation_error(wavespeed_env, tmp_path):
    done = sonify("run", "mmaudio-v2", "--video", tmp_path / "nope.mp4", "--prompt", "rain")
    assert done.returncode == 3 and "--video: no such file" in done.stderr


def test_a_missing_key_says_which_variable_or_file_to_set(emulator, wavespeed_env, clip, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WAVESPEED_API_KEY"}
    done = subprocess.run([sys.executable, "-m", "sonify", "run", "mmaudio-v2", "--video", str(clip), "--prompt", "rain"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3
    state = wavespeed_env["SONIFY_STATE_DIR"]
    assert "set the environment variable WAVESPEED_API_KEY" in done.stderr and f"{state}/keys.json" in done.stderr
    assert emulator.requests == []


def test_a_provider_error_exits_4_with_its_message(emulator, wavespeed_env, clip, tmp_path):
    emulator.inject("POST", rf"^/api/v3/{MMAUDIO}$", 403, body={"code": 403, "message": "Insufficient balance", "data": None})
    done = sonify("run", "mmaudio-v2", "--video", clip, "--prompt", "rain", "-o", tmp_path)
    assert done.returncode == 4
    assert "WaveSpeed answered HTTP 403: Insufficient balance" in done.stderr


def test_a_failed_job_exits_5_with_its_task_id(emulator, wavespeed_env, clip, tmp_path):
    emulator.fail_next(MMAUDIO, error="out of GPUs")
    done = sonify("run", "mmaudio-v2", "--video", clip, "--prompt", "rain", "-o", tmp_path)
    assert done.returncode == 5
    (row,) = journal_rows(wavespeed_env)
    assert f"task {row.task_id} failed: out of GPUs" in done.stderr


def journal_rows(env: dict[str, str]) -> list[journal.JobRow]:
    return journal.Journal(Path(env["SONIFY_STATE_DIR"]) / journal.JOURNAL_FILE).recent()


# ---------------------------------------------------------------- batch


def test_batch_runs_many_clips_lists_the_failure_with_its_task_id_and_resumes(emulator, wavespeed_env, tmp_path):
    sources = clips(tmp_path / "clips", ("a.mp4", "b.mp4", "c.mp4"))
    out = tmp_path / "out"
    emulator.fail_next(MMAUDIO, error="out of GPUs")  # the first clip submitted fails
    first = sonify("batch", "mmaudio-v2", sources, "-o", out, "--prompt", "rain", "--seed", "1", "--concurrency", "1")
    assert first.returncode == 6, first.stderr
    failed = next(row for row in journal_rows(wavespeed_env) if row.status == "failed")
    loser = Path(failed.source_path).stem
    winners = [name for name in "abc" if name != loser]
    assert "batch mmaudio-v2: 2 done, 0 resumed, 0 reused (free), 1 failed of 3 in " in first.stderr
    assert "est. $0.002" in first.stderr  # 1 s clips at $0.001 per second of audio
    assert re.search(rf"{loser}\.mp4 \[task {failed.task_id}\]: .*out of GPUs", first.stderr), first.stderr
    assert first.stdout.split() == [str(out / f"{name}.mp4") for name in winners]
    assert "[########################] 3/3" in first.stderr  # the progress bar's last state
    for name in winners:
        record = json.loads((out / f"{name}.sonify.json").read_text())
        assert record["model"] == "mmaudio-v2" and record["job"]["task_id"]
        assert np.abs(media.decode_audio(out / f"{name}.mp4")[0]).max() > 0.1

    second = sonify("batch", "mmaudio-v2", sources, "-o", out, "--prompt", "rain", "--seed", "1")
    assert second.returncode == 0, second.stderr
    assert "1 done, 0 resumed, 2 reused (free), 0 failed of 3" in second.stderr and submits(emulator) == 4  # only the failed clip again

    uploads = len(emulator.requests)
    third = sonify("batch", "mmaudio-v2", sources, "-o", out, "--prompt", "rain", "--seed", "1")
    assert third.returncode == 0 and "0 done, 0 resumed, 3 reused (free), 0 failed of 3" in third.stderr
    assert submits(emulator) == 4 and len(emulator.requests) == uploads  # nothing sent at all
    assert third.stdout.split() == [str(out / f"{n}.mp4") for n in "abc"]

    other = sonify("batch", "mmaudio-v2", sources, "-o", out, "--prompt", "rain", "--seed", "2")
    assert other.returncode == 0 and "3 done, 0 resumed, 0 reused (free), 0 failed of 3" in other.stderr  # other parameters: not the same work


def test_batch_a_clip_the_model_refuses_fails_alone_before_any_upload(emulator, wavespeed_env, tmp_path):
    folder = clips(tmp_path / "clips", ("long.mp4",), frames=72)
    clips(folder, ("short.mp4",), frames=24)
    done = sonify("batch", "kling-video-to-audio", folder, "-o", tmp_path / "out", "--bgm_prompt", "jazz")
    assert done.returncode == 6
    assert "1 done, 0 resumed, 0 reused (free), 1 failed of 2" in done.stderr and "est. $0.035" in done.stderr
    assert re.search(r"short\.mp4 \[no task \(nothing was sent\)\]: video: .*3 to 20 seconds, got 1\.000 s", done.stderr)
    assert "run the same command again" not in done.stderr  # retrying cannot fix a clip that is too short
    assert emulator.submits(KLING_V2A.model_id) == 1
    quiet = sonify("batch", "kling-video-to-audio", folder, "-o", tmp_path / "out", "--bgm_prompt", "jazz", "-q")
    assert quiet.returncode == 6 and quiet.stdout.split() == [str(tmp_path / "out" / "long.mp4")]
    assert quiet.stderr.splitlines()[0] == "failed:" and "short.mp4 [no task" in quiet.stderr  # the errors only
    assert "[" not in quiet.stderr.splitlines()[0] and "batch kling-video-to-audio:" not in quiet.stderr


def test_batch_resumes_a_job_an_earlier_batch_submitted(emulator, wavespeed_env, tmp_path):
    sources = clips(tmp_path / "clips", ("a.mp4",))
    emulator.model_seconds = 1.0
    first = sonify("batch", "mmaudio-v2", sources, "-o", tmp_path / "out", "--prompt", "rain",
                   env={"SONIFY_RUN_TIMEOUT": "0.1"})
    assert first.returncode == 6
    (row,) = journal_rows(wavespeed_env)
    assert row.status == "detached" and f"[task {row.task_id}]" in first.stderr

    second = sonify("batch", "mmaudio-v2", sources, "-o", tmp_path / "out", "--prompt", "rain")
    assert second.returncode == 0, second.stderr
    assert "0 done, 1 resumed, 0 reused (free), 0 failed of 1" in second.stderr
    assert submits(emulator) == 1  # waited on the same task
    record = json.loads((tmp_path / "out" / "a.sonify.json").read_text())
    assert record["job"]["task_id"] == row.task_id and record["job"]["resumed"]


def test_a_batch_run_again_after_a_kill_counts_resumed_and_reused_jobs_and_keeps_its_concurrency(
        emulator, wavespeed_env, tmp_path):
    sources = clips(tmp_path / "clips", ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"))
    out = tmp_path / "out"
    batch = ("batch", "mmaudio-v2", "--prompt", "rain", "--seed", "1", "--concurrency", "2", "-o", out)
    before = sonify(*batch, sources / "a.mp4", sources / "b.mp4")
    assert before.returncode == 0, before.stderr
    (out / "a.mp4").unlink()  # a: the journal's stored result is left; b: its result is still in out/

    emulator.concurrency["wavespeed"] = 0  # every new task waits in the queue: c and d stay at the provider
    killed = subprocess.Popen([sys.executable, "-m", "sonify", *map(str, batch), str(sources)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: submits(emulator) == 4, emulator)  # a and b before, c and d now; e waits for a slot
    finally:
        killed.kill()
        killed.wait(30)

    again = subprocess.Popen([sys.executable, "-m", "sonify", *map(str, batch), str(sources)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    guard = threading.Timer(60, again.kill)  # should the line never come, the held tasks would keep it running
    guard.start()
    try:
        for line in again.stderr:  # the progress lines (stderr is a pipe: one whenever they change)
            lines.append(line)
            if "2 at the provider, 1 waiting" in line:  # the two resumed jobs hold both slots; e waits
                break
        emulator.concurrency.pop("wavespeed")
        out_text, rest = again.communicate(timeout=120)
    finally:
        guard.cancel()
        again.kill()
    lines += rest.splitlines()
    assert again.returncode == 0, "".join(lines)
    assert any("2 at the provider, 1 waiting" in line for line in lines), lines
    shown = [int(n) for line in lines for n in re.findall(r"(\d+) at the provider", line)]
    assert shown and max(shown) <= 2
    assert "batch mmaudio-v2: 1 done, 2 resumed, 2 reused (free), 0 failed of 5 in " in "".join(lines)
    assert "resumed: 2 job(s) an earlier run submitted" in "".join(lines)
    assert submits(emulator) == 5  # only e was new
    assert out_text.split() == [str(out / f"{name}.mp4") for name in "abcde"]


def wait_for(condition, emulator, seconds: float = 60.0) -> None:
    """Until `condition()` holds, looked at whenever an emulated task changes."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        emulator.tasks.wait_change(0.5)


def test_batch_checks_parameters_and_key_before_any_clip(emulator, wavespeed_env, tmp_path):
    sources = clips(tmp_path / "clips", ("a.mp4",))
    bad = sonify("batch", "mmaudio-v2", sources, "-o", tmp_path / "out", "--prompt", "rain", "--duration", "31")
    assert bad.returncode == 3 and "duration: must be from 0 to 30, got 31" in bad.stderr
    missing = sonify("batch", "mmaudio-v2", tmp_path / "nothing-here", "-o", tmp_path / "out", "--prompt", "rain")
    assert missing.returncode == 3 and "no such file or folder" in missing.stderr
    assert emulator.requests == []


# ---------------------------------------------------------------- fetch, jobs


def test_fetch_and_jobs(emulator, wavespeed_env, fal_env, clip, tmp_path):
    run = sonify("run", "mmaudio-v2", "--video", clip, "--prompt", "rain", "-o", tmp_path / "run")
    assert run.returncode == 0, run.stderr
    (row,) = journal_rows(wavespeed_env)
    listed = sonify("jobs")
    assert listed.returncode == 0 and row.task_id in listed.stdout

    fetched = sonify("fetch", "wavespeed", row.task_id, "-o", tmp_path / "fetched")
    assert fetched.returncode == 0, fetched.stderr
    paths = [Path(line) for line in fetched.stdout.split()]
    assert paths[0].suffix == ".wav" and all(p.is_file() for p in paths)
    assert submits(emulator) == 1
    as_json = sonify("fetch", "wavespeed", row.task_id, "-o", tmp_path / "fetched", "--json")
    (record,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert record["files"] == [str(path) for path in paths] and record["path"] == str(paths[1])  # the video
    assert record["task_id"] == row.task_id and record["emulator"] is True and record["cost_usd_estimate"] == 0
    one_file = sonify("fetch", "wavespeed", row.task_id, "-o", tmp_path / "one" / "sound.flac")
    assert one_file.returncode == 0, one_file.stderr
    assert one_file.stdout.split() == [str(tmp_path / "one" / "sound.flac")]
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["sound.flac"]
    assert np.array_equal(media.decode_audio(tmp_path / "one" / "sound.flac")[0], media.decode_audio(paths[0])[0])

    unknown = sonify("fetch", "wavespeed", "0" * 32, "-o", tmp_path / "fetched")
    assert unknown.returncode == 4 and "404" in unknown.stderr
    no_model = sonify("fetch", "fal", "some-request-id")
    assert no_model.returncode == 3 and "model: is needed to find fal task some-request-id" in no_model.stderr


# ---------------------------------------------------------------- doctor


def test_doctor_with_working_keys(emulator, wavespeed_env, fal_env):
    done = sonify("doctor")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "ok  WaveSpeed key: found in environment variable WAVESPEED_API_KEY" in output
    assert "ok  WaveSpeed answers:" in output and "balance $100.00" in output and "Sonify emulator" in output
    assert "ok  fal key: found in environment variable FAL_KEY" in output and "ok  fal answers:" in output
    assert "ok  H.264 encoder (libx264)" in output and "ok  AAC encoder (aac)" in output
    assert f"ok  state folder: {wavespeed_env['SONIFY_STATE_DIR']}" in output
    assert "all good" in output
    assert_no_key(output, EMULATOR_KEY, FAL_KEY)


def test_doctor_with_bad_and_missing_keys(emulator, wavespeed_env, fal_env):
    bad_key = "wrong-key-7f3a9c"
    done = sonify("doctor", env={"WAVESPEED_API_KEY": bad_key, "FAL_KEY": ""})
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert re.search(r"!!  WaveSpeed answers: .* refused the key from environment variable WAVESPEED_API_KEY \(HTTP 401\)",
                     output)
    assert "--  fal key: none found — set the environment variable FAL_KEY" in output
    assert "1 problem found" in output
    assert_no_key(output, bad_key)


def test_doctor_reads_the_key_file_and_names_it(emulator, wavespeed_env, fal_env):
    state = Path(wavespeed_env["SONIFY_STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    (state / "keys.json").write_text(json.dumps({"wavespeed": EMULATOR_KEY}))
    done = sonify("doctor", env={"WAVESPEED_API_KEY": ""})
    assert done.returncode == 0, done.stdout
    assert f"WaveSpeed key: found in key file {state / 'keys.json'}" in done.stdout
    assert_no_key(done.stdout + done.stderr, EMULATOR_KEY)


def test_doctor_finds_the_comfyui_folder_it_runs_in(emulator, wavespeed_env, tmp_path):
    comfyui = tmp_path / "ComfyUI"
    (comfyui / "comfy").mkdir(parents=True)
    (comfyui / "main.py").write_text("")
    (comfyui / "custom_nodes").mkdir()
    done = sonify("doctor", cwd=comfyui / "custom_nodes")
    assert done.returncode == 0, done.stdout
    assert f"--  ComfyUI: {comfyui} (this Sonify ({ROOT}) is not in its custom_nodes folder)" in done.stdout
    assert f"set SONIFY_STATE_DIR={comfyui / 'user' / 'sonify'}" in done.stdout


def assert_no_key(output: str, *keys: str) -> None:
    for key in keys:
        for part in (key, *key.split(":")):  # not the key, nor either half of a fal key
            assert part not in output


# ---------------------------------------------------------------- emulator, demo


def test_the_emulator_command_prints_settings_that_work_and_ends_on_ctrl_c(tmp_path):
    """Started with SIGINT ignored, as a shell script's `sonify emulator &` is (and as a test run in the background
    starts it): Ctrl-C still ends it, normally."""
    with sigint_ignored(), open(tmp_path / "stderr", "w") as errors:  # the child writes on; read back if it hangs
        server = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "sonify", "emulator", "--port", "0",
                                   "--model-seconds", "0.1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        lines = []
        while not lines or not lines[-1].startswith("Ctrl-C"):
            line = server.stdout.readline()
            assert line, "the emulator ended early"
            lines.append(line.strip())
        env = dict(re.findall(r"(\w+)=(\S+)", " ".join(line for line in lines if line.startswith("export"))))
        assert set(env) == {"SONIFY_WAVESPEED_URL", "WAVESPEED_API_KEY", "SONIFY_FAL_QUEUE_URL", "SONIFY_FAL_REST_URL",
                            "SONIFY_FAL_API_URL", "SONIFY_FAL_CDN_URL", "FAL_KEY"}
        doctor = sonify("doctor", env={**env, "SONIFY_STATE_DIR": str(tmp_path / "state")})
        assert doctor.returncode == 0, doctor.stdout
        assert doctor.stdout.count("accepts the key") == 2
    finally:
        server.send_signal(signal.SIGINT)
        try:
            assert server.wait(10) == 0
        except subprocess.TimeoutExpired:  # where it waits, to tell a lost Ctrl-C from a stop that hangs
            server.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            server.wait(10)
            raise AssertionError("the emulator did not end on Ctrl-C:\n" + (tmp_path / "stderr").read_text()) from None


def test_demo_and_the_readme_figure_made_from_it(tmp_path):
    done = sonify("demo", "-o", tmp_path / "demo")
    assert done.returncode == 0, done.stderr
    result = Path(done.stdout.strip())
    assert result.is_file() and np.abs(media.decode_audio(result)[0]).max() > 0.1
    assert "synthetic sound, not a real model" in done.stderr

    png = tmp_path / "figure.png"
    drawn = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_figure.py"), "--result", str(result),
                            "--label", "test", "-o", str(png)], capture_output=True, text=True, timeout=60, check=False)
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size < 200_000
    with av.open(str(png)) as image:
        assert image.streams.video[0].width == 960


def test_a_worker_starts_only_with_folders_it_may_take_clips_from(tmp_path):
    without = sonify("worker", "--temporal", "127.0.0.1:7233")
    assert without.returncode == 2 and "--allow" in without.stderr  # refused before any connection
    missing = sonify("worker", "--temporal", "127.0.0.1:7233", "--allow", tmp_path / "missing")
    assert missing.returncode != 0 and f"--allow {tmp_path / 'missing'}: no such folder" in missing.stderr
    assert "Traceback" not in missing.stderr
