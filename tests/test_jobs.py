"""The job journal against the emulator (real SQLite, real files, real processes): resume after
SIGKILL and after a timeout, the result and upload caches, cancel, fetch, a broken journal, and
identical jobs at the same moment from threads and from processes."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import video_packets, write_clip
from conftest import EMULATOR_KEY
from pack import ROOT, load_pack, module, outputs

from sonify import cli, media, pipeline
from sonify import journal as jobs
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL
from sonify.errors import Cancelled, ConfigurationError, JobFailed, JobTimedOut, ProviderError, ValidationError
from sonify.waiter import Waiter
from sonify_devtools.emulator import Emulator

MODEL = MMAUDIO_V2.model_id
SUBMIT = rf"^/api/v3/{MODEL}$"
UPLOAD = r"^/api/v3/media/uploads$"


def run(clip: media.VideoSource, tmp_path: Path, spec=MMAUDIO_V2, **kwargs) -> pipeline.Result:
    params = {"prompt": "rain", **kwargs.pop("params", {})}
    return pipeline.run(spec, params, clip, out_dir=tmp_path / "out", **kwargs)


def journal(env: dict[str, str]) -> jobs.Journal:
    state = Path(env["SONIFY_STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    return jobs.Journal(state / jobs.JOURNAL_FILE)


def count(emulator: Emulator, method: str, regex: str) -> int:
    return sum(1 for r in emulator.requests if r.method == method and re.search(regex, r.path))


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Bounded polling (not a fixed sleep): returns as soon as the condition holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def cancel_while_waiting() -> tuple[Callable[[str, float | None], None], Callable[[], bool], list[float]]:
    """(on_progress, is_cancelled, [when]): Cancel is pressed once the job is queued or processing."""
    pressed: list[float] = []

    def on_progress(text: str, fraction: float | None) -> None:
        if text.startswith(("queued", "processing")) and not pressed:
            pressed.append(time.monotonic())

    return on_progress, lambda: bool(pressed), pressed


def cli_run(clip_path: Path, out_dir: Path, *params: str) -> list[str]:
    args = [sys.executable, "-m", "sonify", "run", "mmaudio-v2", "--video", str(clip_path), "-o", str(out_dir)]
    for param in ("prompt=rain", *params):
        name, _, value = param.partition("=")
        args += [f"--{name}", value]
    return args


# ---------------------------------------------------------------- resume


def test_a_killed_run_is_resumed_not_submitted_again(emulator, wavespeed_env, clip_path, tmp_path):
    emulator.model_seconds = 2.0
    log_file = tmp_path / "first.log"
    with open(log_file, "w") as log:
        first = subprocess.Popen(cli_run(clip_path, tmp_path / "first"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    try:
        def journaled() -> bool:
            assert first.poll() is None, log_file.read_text()
            return any(row.task_id for row in journal(wavespeed_env).recent())

        wait_until(journaled)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    (row,) = journal(wavespeed_env).recent()
    assert row.status in ("submitted", "queued", "running") and row.owner  # died mid-wait, row still owned
    assert emulator.task_completed_at(row.task_id) is None

    second = subprocess.run(cli_run(clip_path, tmp_path / "second"), cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert second.returncode == 0, second.stderr
    assert emulator.submits(MODEL) == 1 and count(emulator, "POST", UPLOAD) == 1
    assert f"resuming task {row.task_id}" in second.stderr
    result = Path(second.stdout.strip().splitlines()[-1])
    assert row.task_id in result.name and video_packets(result) == video_packets(clip_path)
    samples, _ = media.decode_audio(result)
    assert np.abs(samples).max() > 0.1
    done = journal(wavespeed_env).find_task("wavespeed", row.task_id)
    assert done.status == "completed" and done.delivered and done.owner is None


def test_a_timed_out_job_is_resumed_by_the_next_identical_run(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    emulator.model_seconds = 1.0  # polls come every 0.25 s: two of them see it processing
    monkeypatch.setenv("SONIFY_RUN_TIMEOUT", "0.1")
    with pytest.raises(JobTimedOut) as caught:
        run(clip, tmp_path)
    task_id = caught.value.task_id
    assert task_id and f"python -m sonify fetch wavespeed {task_id}" in str(caught.value)
    assert journal(wavespeed_env).find_task("wavespeed", task_id).status == "detached"

    monkeypatch.delenv("SONIFY_RUN_TIMEOUT")
    result = run(clip, tmp_path)  # seed -1: resuming is not caching — this result was never delivered
    assert result.info["resumed"] and result.info["task_id"] == task_id
    assert emulator.submits(MODEL) == 1 and count(emulator, "POST", UPLOAD) == 1
    emulator.model_seconds = 0.2
    assert run(clip, tmp_path).info["task_id"] != task_id  # delivered now: seed -1 generates anew


def test_a_submit_without_an_answer_from_an_old_journal_is_surfaced_once(emulator, wavespeed_env, clip, tmp_path):
    """A row left unanswered by a version that did not record the request sent: the listing cannot be matched
    against it, so the user is told once and the next run submits anew."""
    emulator.drop("POST", SUBMIT)
    emulator.inject("POST", r"^/api/v3/predictions$", 503, times=6)  # the listing unavailable: the row stays unknown
    with pytest.raises(ProviderError) as lost:
        run(clip, tmp_path)
    assert "may have been created anyway" in str(lost.value)
    (row,) = journal(wavespeed_env).recent()
    assert row.status == "unknown" and row.task_id is None
    journal(wavespeed_env).update(row.id, request=None)

    with pytest.raises(JobFailed) as told:
        run(clip, tmp_path)
    assert "dashboard" in str(told.value) and "run again to submit anew" in str(told.value)
    assert count(emulator, "POST", SUBMIT) == 1  # the second run sent nothing

    assert run(clip, tmp_path).info["status"] == "completed"  # the user ran it again: submitted
    assert count(emulator, "POST", SUBMIT) == 2


# ---------------------------------------------------------------- caches


def test_a_fixed_seed_is_generated_once_and_reused_without_a_request(emulator, wavespeed_env, clip, tmp_path,
                                                                    monkeypatch):
    first = run(clip, tmp_path, params={"seed": 7})
    seen = len(emulator.requests)
    monkeypatch.setenv("SONIFY_MAX_USD_PER_JOB", "0.0001")  # a stored result costs nothing: not refused
    second = run(clip, tmp_path, params={"seed": 7})
    assert len(emulator.requests) == seen and emulator.submits(MODEL) == 1
    assert second.info["cached"] and second.info["task_id"] == first.info["task_id"]
    np.testing.assert_array_equal(second.audio, first.audio)
    assert video_packets(second.video_path) == video_packets(first.video_path)
    stored = Path(second.info["result_file"])
    assert stored.parent == Path(wavespeed_env["SONIFY_STATE_DIR"]) / "results"

    state = Path(wavespeed_env["SONIFY_STATE_DIR"])
    for path in state.glob("jobs.sqlite3*"):  # ids, URLs, params and paths — never a key
        assert EMULATOR_KEY.encode() not in path.read_bytes()


def test_a_random_seed_is_generated_each_time(emulator, wavespeed_env, clip, tmp_path):
    first, second = run(clip, tmp_path), run(clip, tmp_path)
    assert emulator.submits(MODEL) == 2 and first.info["task_id"] != second.info["task_id"]
    assert not second.info["cached"] and not second.info["resumed"]


def test_the_same_source_is_uploaded_once(emulator, wavespeed_env, clip, tmp_path):
    first = run(clip, tmp_path, params={"prompt": "rain"})
    second = run(clip, tmp_path, params={"prompt": "hail"})
    assert emulator.submits(MODEL) == 2 and count(emulator, "POST", UPLOAD) == 1
    assert first.info["uploaded_bytes"] > 0
    assert second.info["uploads_reused"] == 1 and second.info["uploaded_bytes"] == 0

    emulator.inject("HEAD", r"^/files/", 404)  # the provider dropped it early: upload again
    third = run(clip, tmp_path, params={"prompt": "snow"})
    assert count(emulator, "POST", UPLOAD) == 2 and third.info["uploaded_bytes"] > 0


# ---------------------------------------------------------------- cancel and fetch


def test_cancel_reaches_fal_and_the_journal(emulator, fal_env, clip, tmp_path):
    emulator.model_seconds = 30
    on_progress, is_cancelled, pressed = cancel_while_waiting()
    with pytest.raises(Cancelled) as caught:
        run(clip, tmp_path, spec=THINKSOUND_FAL, on_progress=on_progress, is_cancelled=is_cancelled)
    assert time.monotonic() - pressed[0] < 1.0
    task_id = caught.value.task_id
    assert task_id and f"python -m sonify fetch fal {task_id}" in str(caught.value)
    assert emulator.cancels(THINKSOUND_FAL.model_id) == 1
    row = journal(fal_env).find_task("fal", task_id)
    assert row.status == "cancelled" and row.owner is None

    emulator.model_seconds = 0.2
    assert run(clip, tmp_path, spec=THINKSOUND_FAL).info["task_id"] != task_id  # a cancelled job is not resumed
    assert emulator.submits(THINKSOUND_FAL.model_id) == 2


def test_a_wavespeed_job_cancelled_after_it_ended_is_fetched_later(emulator, wavespeed_env, clip, clip_path, tmp_path,
                                                                   capsys, monkeypatch):
    emulator.model_seconds = 1.0
    emulator.delay("GET", r"^/api/v3/predictions/[^/]+/result$", 30.0)  # the first look is held back past the end
    pressed: list[float] = []

    def is_cancelled() -> bool:
        if not pressed and any(task.status == "completed" for task in emulator.tasks.all()):
            pressed.append(time.monotonic())
        return bool(pressed)

    with pytest.raises(Cancelled) as caught:
        run(clip, tmp_path, is_cancelled=is_cancelled)
    assert time.monotonic() - pressed[0] < 1.0
    task_id = caught.value.task_id
    assert f"python -m sonify fetch wavespeed {task_id}" in str(caught.value)
    assert emulator.cancels() == 0 and journal(wavespeed_env).find_task("wavespeed", task_id).status == "detached"

    out = tmp_path / "fetched"
    assert cli.main(["fetch", "wavespeed", task_id, "-o", str(out)]) == 0  # waits for the job that ran on
    wav, video, provider_file = (Path(p) for p in capsys.readouterr().out.split())
    assert emulator.submits(MODEL) == 1
    samples, rate = media.decode_audio(wav)
    assert rate == 44100 and samples.shape[1] == round(rate * 1.0)  # fitted to the 1 s source, known from the journal
    assert video_packets(video) == video_packets(clip_path) and provider_file.is_file()
    row = journal(wavespeed_env).find_task("wavespeed", task_id)
    assert row.status == "completed" and row.delivered and Path(row.result_path).is_file()

    assert cli.main(["jobs"]) == 0
    listing = capsys.readouterr().out
    assert task_id in listing and "completed" in listing and row.result_path in listing

    monkeypatch.setenv("SONIFY_STATE_DIR", str(tmp_path / "elsewhere"))  # no journal: the task names its model
    assert cli.main(["fetch", "wavespeed", task_id, "-o", str(tmp_path / "again")]) == 0
    wav, video = (Path(p) for p in capsys.readouterr().out.split())  # the provider's own video, no source known
    assert media.decode_audio(wav)[1] == 44100 and media.probe(video).width == 64


def test_fetch_result_node(emulator, wavespeed_env, clip_path):
    comfy, errors = module("nodes.comfy"), module("sonify.errors")
    nodes = load_pack().NODE_CLASS_MAPPINGS
    mmaudio = nodes["SonifyMMAudioV2"]()
    params = {"prompt": "a door", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
              "guidance_scale": 4.5, "mask_away_clip": False, "seed": -1}
    audio, _, job = outputs(mmaudio.run)(video=comfy.FileVideo(str(clip_path)), **params)
    task_id = json.loads(job)["task_id"]

    fetch_cls = nodes["SonifyFetchResult"]
    declared = fetch_cls.INPUT_TYPES()
    assert fetch_cls.DESCRIPTION and len(fetch_cls.OUTPUT_TOOLTIPS) == len(fetch_cls.RETURN_TYPES)
    assert all(spec[1].get("tooltip") for section in ("required", "optional") for spec in declared[section].values())
    seen = len(emulator.requests)
    fetched_audio, video, info = outputs(getattr(fetch_cls(), fetch_cls.FUNCTION))(
        provider="wavespeed", model="mmaudio-v2", task_id=f" {task_id} ")
    assert len(emulator.requests) == seen  # the stored result: no request
    assert torch.equal(fetched_audio["waveform"], audio["waveform"])
    assert video_packets(video.get_stream_source()) == video_packets(clip_path)
    assert json.loads(info)["task_id"] == task_id
    with pytest.raises(errors.ValidationError, match="model"):
        fetch_cls().run(provider="fal", model="mmaudio-v2", task_id=task_id)


def test_fetch_names_what_is_missing(emulator, fal_env, tmp_path):
    with pytest.raises(ValidationError, match="task_id"):
        pipeline.fetch("fal", "  ", out_dir=tmp_path)
    with pytest.raises(ValidationError, match="model.*thinksound-fal"):
        pipeline.fetch("fal", "0f0e8c1e-0000-4000-8000-000000000000", out_dir=tmp_path)
    assert emulator.requests == []


# ---------------------------------------------------------------- a broken journal


def test_a_corrupted_journal_is_reported_and_the_job_proceeds(emulator, wavespeed_env, clip, tmp_path, caplog):
    state = Path(wavespeed_env["SONIFY_STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    (state / jobs.JOURNAL_FILE).write_bytes(b"not a database " * 400)
    with caplog.at_level(logging.WARNING, logger="sonify"):
        result = run(clip, tmp_path)
    assert result.info["status"] == "completed" and emulator.submits(MODEL) == 1
    assert "unreadable" in caplog.text
    (aside,) = state.glob(f"{jobs.JOURNAL_FILE}.unreadable-*")  # kept for inspection
    assert aside.read_bytes().startswith(b"not a database")
    assert journal(wavespeed_env).find_task("wavespeed", result.info["task_id"]) is not None  # a new journal


def test_a_locked_journal_is_reported_and_nothing_is_submitted(emulator, wavespeed_env, clip, tmp_path, caplog):
    """A job the journal cannot record is not submitted: a crash during it would strand a paid task and
    the next run would pay again."""
    run(clip, tmp_path)  # the journal exists and this process has it open
    holder = sqlite3.connect(Path(wavespeed_env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, stuck
    try:
        with caplog.at_level(logging.WARNING, logger="sonify"):
            started = time.monotonic()
            with pytest.raises(ConfigurationError, match="cannot record this job, so it was not submitted.*locked"):
                run(clip, tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert emulator.submits(MODEL) == 1
    assert "locked" in caplog.text
    assert time.monotonic() - started < 10  # one busy timeout, not one per write


# ---------------------------------------------------------------- identical jobs at the same moment


def test_identical_jobs_from_four_threads_submit_once(emulator, wavespeed_env, clip, tmp_path):
    emulator.model_seconds = 0.5
    start = threading.Barrier(4)
    results: list[pipeline.Result | None] = [None] * 4
    errors: list[BaseException] = []

    def work(i: int) -> None:
        start.wait()
        try:
            results[i] = run(clip, tmp_path, params={"seed": 11})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert emulator.submits(MODEL) == 1 and count(emulator, "POST", UPLOAD) == 1
    assert len({r.info["task_id"] for r in results}) == 1 and sum(r.info["cached"] for r in results) == 3
    for other in results[1:]:
        np.testing.assert_array_equal(other.audio, results[0].audio)


def test_identical_jobs_from_two_processes_submit_once(emulator, wavespeed_env, clip_path, tmp_path):
    emulator.model_seconds = 1.0
    processes = [subprocess.Popen(cli_run(clip_path, tmp_path / f"out{i}", "seed=9"), cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outputs]
    assert emulator.submits(MODEL) == 1
    assert any("waiting for the identical job running elsewhere" in err for _, err in outputs)
    assert sum("using the stored result" in err for _, err in outputs) == 1
    videos = [Path(out.strip().splitlines()[-1]) for out, _ in outputs]
    np.testing.assert_array_equal(media.decode_audio(videos[0])[0], media.decode_audio(videos[1])[0])


def test_a_task_the_provider_no_longer_has_is_not_resumed_forever(wavespeed_env, clip, tmp_path, monkeypatch):
    """A detached task that expired at the provider (here: a restarted emulator) fails once, clearly,
    and the next identical run submits anew."""
    with Emulator(api_keys=(EMULATOR_KEY,), model_seconds=1.0).start() as first:
        monkeypatch.setenv("SONIFY_WAVESPEED_URL", first.url)
        monkeypatch.setenv("SONIFY_RUN_TIMEOUT", "0.1")
        with pytest.raises(JobTimedOut) as caught:
            run(clip, tmp_path)
        port = int(first.url.rsplit(":", 1)[1])
    lost = caught.value.task_id
    monkeypatch.delenv("SONIFY_RUN_TIMEOUT")
    with Emulator(api_keys=(EMULATOR_KEY,), model_seconds=0.2).start(port) as second:  # same URL, no tasks
        with pytest.raises(JobFailed, match=f"no longer has task {lost}"):
            run(clip, tmp_path)
        assert run(clip, tmp_path).info["task_id"] != lost
        assert second.submits(MODEL) == 1


def test_stored_results_of_different_jobs_do_not_overwrite_each_other(emulator, wavespeed_env, tmp_path):
    a = media.VideoSource(path=str(write_clip(tmp_path / "a.mp4", 24, Fraction(24), 64, 48, flash_at=(4,))))
    b = media.VideoSource(path=str(write_clip(tmp_path / "b.mp4", 48, Fraction(24), 64, 48, flash_at=(30,))))
    first = run(a, tmp_path, params={"seed": 7})
    run(b, tmp_path, params={"seed": 7})
    again = run(a, tmp_path, params={"seed": 7})
    assert again.info["cached"] and emulator.submits(MODEL) == 2
    assert np.array_equal(again.audio, first.audio)


def test_run_times_keep_the_newest_per_key(tmp_path):
    journal = jobs.Journal(tmp_path / "jobs.sqlite3")
    for i in range(jobs.RUN_TIMES_KEPT + 5):
        journal.record_run_time("a", (float(i), i + 0.5))
    journal.record_run_time("b", (100.0, 101.0))
    assert journal.run_times("a", 3) == [(22.0, 22.5), (23.0, 23.5), (24.0, 24.5)]  # newest, oldest first
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("SELECT key, COUNT(*) FROM run_times GROUP BY key").fetchall() == [
            ("a", jobs.RUN_TIMES_KEPT), ("b", 1)]


def test_a_journal_from_before_run_times_gets_the_table_and_keeps_its_jobs(emulator, wavespeed_env, clip, tmp_path):
    run(clip, tmp_path, params={"seed": 3})
    path = Path(wavespeed_env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE
    with sqlite3.connect(path) as db:  # as version 1 left it
        db.execute("DROP TABLE run_times")
        db.execute("PRAGMA user_version = 1")
    journal = jobs.Journal(path)
    journal.record_run_time("k", (1.0, 2.0))
    assert journal.run_times("k", 5) == [(1.0, 2.0)]
    assert [row.status for row in journal.recent()] == ["completed"]


def test_identical_claims_at_the_same_moment_never_take_each_others_rows_for_dead(tmp_path):
    """16 runs of one random-seed job claim at once, 10 times over: every run keeps its own row. (A run
    that counted as live only after its claim let another delete its fresh row as a dead intent,
    leaving a paid job unjournaled.)"""
    meta = jobs.JobMeta(provider="wavespeed", model=MODEL, fingerprint="same", cacheable=False)
    for trial in range(10):
        journal = jobs.Journal(tmp_path / f"jobs-{trial}.sqlite3")
        tickets = [jobs.Ticket(journal, meta) for _ in range(16)]
        start = threading.Barrier(len(tickets))
        threads = [threading.Thread(target=claim_together, args=(ticket, start)) for ticket in tickets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            assert {t.row_id for t in tickets} <= {row.id for row in journal.recent(100)}
            assert len({t.row_id for t in tickets}) == len(tickets)
        finally:
            for ticket in tickets:
                ticket.close()


def claim_together(ticket: jobs.Ticket, start: threading.Barrier) -> None:
    start.wait()
    ticket.claim(Waiter(), lambda row: None)
