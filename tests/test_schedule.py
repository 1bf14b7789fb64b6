"""Noticing a job's end: fal jobs follow the status stream and poll only when it fails; the WaveSpeed
poll schedule keeps its budget and learns a model's run time (in this process and, through the journal,
across processes)."""

from __future__ import annotations

import re
import subprocess
import sys
from fractions import Fraction

import pytest
from clips import write_clip
from pack import ROOT

from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL
from sonify.journal.learned import RunTimeStore
from sonify.pipeline.job import run_times
from sonify.providers.schedule import (
    BUDGET,
    COLD_STEP,
    FREE_SECONDS,
    SPARSE_STEP,
    WINDOW,
    Expected,
    History,
    PollPlan,
    history_key,
)
from sonify_devtools.bench.measure import max_polls_per_window

STREAM = r"/requests/[^/]+/status/stream$"
STATUS_POLL = r"/requests/[^/]+/status$"


def fal_requests(emulator, regex: str) -> int:
    return sum(1 for r in emulator.requests if r.method == "GET" and re.search(regex, r.path))


def test_fal_follows_the_stream_and_polls_only_when_it_fails(emulator, fal_env, tmp_path):
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 96, 64)
    run = lambda: pipeline.run(THINKSOUND_FAL, {}, media.VideoSource(path=str(source)), out_dir=tmp_path / "out")

    run()
    assert (fal_requests(emulator, STREAM), fal_requests(emulator, STATUS_POLL)) == (1, 0)

    emulator.inject("GET", STREAM, 500, body={"detail": "stream unavailable"})
    result = run()
    assert result.info["status"] == "completed"
    assert fal_requests(emulator, STREAM) == 2 and fal_requests(emulator, STATUS_POLL) >= 1


def polls_of(plan: PollPlan, ends_at: float) -> list[float]:
    """The poll times `plan` makes for a job that ends at `ends_at` (no clock: its own delays)."""
    t = 0.0
    while True:
        plan.polled(t, t >= ends_at)
        if t >= ends_at:
            return plan.polls
        t += plan.delay(t)


@pytest.mark.parametrize("expected", [None, Expected(30.0, 30.5), Expected(200.0, 200.2), Expected(5.0, 90.0)], ids=str)
@pytest.mark.parametrize("ends_at", [1.0, 9.0, 31.0, 125.0, 400.0])
def test_the_poll_schedule_keeps_its_budget_and_sees_every_end(expected, ends_at):
    polls = polls_of(PollPlan(lambda: expected), ends_at)
    assert max_polls_per_window(polls, FREE_SECONDS, WINDOW) <= BUDGET
    assert polls[-1] >= ends_at and polls == sorted(polls)


@pytest.mark.parametrize("ends_at", [30.1, 60.1, 200.1])
def test_the_poll_schedule_is_dense_around_the_expected_end(ends_at):
    polls = polls_of(PollPlan(lambda: Expected(ends_at - 0.1, ends_at + 0.15)), ends_at)
    assert polls[-1] - ends_at <= 0.25  # seen within one dense step: the budget was kept for the end
    assert max_polls_per_window(polls, FREE_SECONDS, WINDOW) <= BUDGET


@pytest.mark.parametrize("ends_at", [12.0, 15.0, 20.0, 25.0])
def test_a_job_far_shorter_than_its_learned_time_is_seen_within_one_sparse_step(ends_at):
    """A shorter clip than the ones the time was learned on: polls before the expected end are as
    frequent as without history where the budget leaves room, and never more than SPARSE_STEP apart."""
    cold = polls_of(PollPlan(), ends_at)[-1] - ends_at
    for expected_end, bound in ((30.0, cold), (38.0, cold), (45.0, SPARSE_STEP), (60.0, SPARSE_STEP), (90.0, SPARSE_STEP)):
        polls = polls_of(PollPlan(lambda e=expected_end: Expected(e, e + 0.25)), ends_at)
        assert polls[-1] - ends_at <= bound + 1e-9, expected_end


def test_history_narrows_to_where_recent_jobs_ended():
    history = History()
    assert history.expected("m") is None
    history.record("m", (26.0, 30.0))
    history.record("m", (29.0, 29.5))
    assert history.expected("m") == Expected(29.0, 29.5)
    history.record("m", (40.0, 41.0))  # the model's time changed: follow the newest job
    assert history.expected("m") == Expected(40.0, 41.0)


def test_a_running_job_uses_a_run_time_learned_meanwhile():
    """A job that started with no history (a batch's first round) switches to the dense stretch as soon
    as another job of the model has taught where the end lies."""
    ends_at = next(p for p in polls_of(PollPlan(), 40.0) if p > 28) + 0.1  # just after a cold poll
    cold = polls_of(PollPlan(), ends_at)
    assert cold[-1] - ends_at > 3  # one poll every 4 s
    plan = PollPlan(lambda: Expected(ends_at - 0.1, ends_at + 0.15) if plan.polls and plan.polls[-1] > 15 else None)
    taught = polls_of(plan, ends_at)
    assert taught[-1] - ends_at <= 0.25 and max_polls_per_window(taught, FREE_SECONDS, WINDOW) <= BUDGET


def test_run_times_outlive_the_process_in_the_journal(monkeypatch, tmp_path):
    monkeypatch.setenv("SONIFY_STATE_DIR", str(tmp_path / "state"))
    History(RunTimeStore()).record("endpoint model", (29.0, 29.5))
    later = History(RunTimeStore())  # what a new process starts with
    assert later.expected("endpoint model") == Expected(29.0, 29.5)
    assert later.expected("endpoint other-model") is None


def test_a_new_process_polls_on_what_an_earlier_one_learned(emulator, wavespeed_env, tmp_path):
    """A job run by the command line (its own process) leaves its run time in the journal; this process,
    knowing nothing yet, finds it there."""
    run_times().clear()
    emulator.model_seconds = 1.0
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 96, 64)
    done = subprocess.run([sys.executable, "-m", "sonify", "run", MMAUDIO_V2.key, "--video", str(source), "-o",
                           str(tmp_path / "out"), "--prompt", "rain"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    expected = run_times().expected(history_key(emulator.url, MMAUDIO_V2.model_id))
    assert expected is not None and expected.first < 1.0 <= expected.last


def test_wavespeed_learns_a_models_run_time_from_its_own_jobs(emulator, wavespeed_env, tmp_path):
    run_times().clear()
    emulator.model_seconds = 1.0
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 96, 64)
    pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(source)), out_dir=tmp_path / "out")
    expected = run_times().expected(history_key(emulator.url, MMAUDIO_V2.model_id))
    assert expected is not None and expected.first < expected.last and expected.last >= 1.0


@pytest.mark.parametrize("ends_at", [0.5, 1.7, 3.0, 3.9])
def test_a_first_job_of_a_few_seconds_is_seen_within_a_fifth_of_a_second(ends_at):
    """Nothing learned yet (a model's first job): a job that ends within COLD_SECONDS is seen within COLD_STEP."""
    polls = polls_of(PollPlan(), ends_at)
    assert polls[-1] - ends_at <= COLD_STEP + 1e-9 and COLD_STEP == 0.2
