"""Speed and memory work, checked functionally (no timing asserts: the benchmark measures time).

The upload proxy keeps duration and frame count; the returned VIDEO copies the source's picture
packets and, when the provider's sound is AAC, its audio packets too; fal jobs follow the status
stream and poll only when it fails; the WaveSpeed poll schedule keeps its budget and learns a model's
run time; `python -m sonify bench --quick` produces its tables and JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import video_packets, write_clip

from sonify import batch, media, pipeline
from sonify.bench.measure import max_polls_per_window
from sonify.models import MMAUDIO_V2, THINKSOUND_FAL
from sonify.providers.schedule import (
    BUDGET,
    FREE_SECONDS,
    HISTORY,
    SPARSE_STEP,
    WINDOW,
    Expected,
    History,
    JournalStore,
    PollPlan,
    history_key,
)

ROOT = Path(__file__).resolve().parents[1]
STREAM = r"/requests/[^/]+/status/stream$"
STATUS_POLL = r"/requests/[^/]+/status$"


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


# ---------------------------------------------------------------- the upload proxy


@pytest.mark.parametrize(("fps", "frames"), [(Fraction(30), 45), (Fraction(24), 36), (Fraction(60), 90)], ids=str)
def test_proxy_keeps_duration_and_frame_count_within_one_frame(tmp_path, fps, frames):
    source = write_clip(tmp_path / "hd.mp4", frames, fps, 1920, 1080, flash_at=(10,))
    proxy, made = media.prepare_upload(source, MMAUDIO_V2.proxy, tmp_path / "work")
    a, b = media.probe(source), media.probe(proxy)
    assert made and min(b.width, b.height) == MMAUDIO_V2.proxy.short_side
    assert abs(a.duration - b.duration) <= 1 / b.fps
    assert abs(b.frames - round(a.duration * b.fps)) <= 1


# ---------------------------------------------------------------- copying the provider's sound


def provider_file(tmp_path: Path, source: Path, seconds: float, rate: int = 44100) -> Path:
    """An mp4 like a provider's: the picture with an AAC sound `seconds` long."""
    sound = (0.3 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * rate)) / rate)).astype(np.float32)[None]
    return Path(media.mux(source, sound, rate, tmp_path / "provider.mp4"))


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30000, 1001)], ids=str)
def test_copy_mux_copies_both_streams_and_ends_the_sound_with_the_picture(tmp_path, fps):
    source = write_clip(tmp_path / "clip.mp4", 50, fps, 160, 120)
    seconds = media.probe(source).duration
    given = provider_file(tmp_path, source, float(seconds) + 0.3)  # runs long, as MMAudio does

    assert media.copy_mux(source, given, tmp_path / "out.mp4", seconds)

    out = tmp_path / "out.mp4"
    assert video_packets(out) == video_packets(source)
    kept = audio_packets(out)
    assert kept == audio_packets(given)[: len(kept)]
    with av.open(str(out)) as container:  # the container says where the sound ends: with the picture
        stream = container.streams.audio[0]
        assert stream.duration * stream.time_base == Fraction(round(seconds * 44100), 44100)
    decoded, rate = media.decode_audio(out)
    reference, _ = media.decode_audio(given)
    n = round(seconds * rate)
    assert decoded.shape[1] >= n and np.array_equal(decoded[:, :n], reference[:, :n])


def test_copy_mux_declines_a_short_or_non_aac_sound(tmp_path):
    source = write_clip(tmp_path / "clip.mp4", 48, Fraction(24), 160, 120)
    short = provider_file(tmp_path, source, 1.5)
    wav = Path(media.write_wav(np.zeros((1, 44100 * 3), np.float32), 44100, tmp_path / "sound.wav"))
    for sound in (short, wav):
        assert not media.copy_mux(source, sound, tmp_path / "out.mp4", Fraction(2))
        assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(("fmt", "copied"), [("mp4", True), ("wav", False)])
def test_the_returned_video_copies_the_picture_and_the_providers_aac(emulator, wavespeed_env, tmp_path, fmt, copied):
    emulator.formats[MMAUDIO_V2.model_id] = fmt
    source = write_clip(tmp_path / "clip.mp4", 60, Fraction(24), 160, 120, flash_at=(30,))
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(source)), out_dir=tmp_path / "out")

    assert result.info["audio_copied"] is copied
    assert video_packets(result.video_path) == video_packets(source)  # zero picture re-encodes
    if copied:
        kept = audio_packets(result.video_path)
        assert kept == audio_packets(Path(result.info["result_file"]))[: len(kept)]
    assert result.audio.shape[1] == round(Fraction(60, 24) * result.sample_rate)  # AUDIO exact to the sample
    assert result.info["final_seen_monotonic"] >= emulator.task_completed_at(result.info["task_id"])
    assert set(result.info["seconds"]) >= {"prepare", "encode", "upload", "submit", "wait", "download", "decode",
                                           "align", "mux"}


# ---------------------------------------------------------------- noticing the end


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
    cold = polls_of(PollPlan(), 30.1)
    assert cold[-1] - 30.1 > 3  # one poll every 4 s
    plan = PollPlan(lambda: Expected(30.0, 30.25) if plan.polls and plan.polls[-1] > 15 else None)
    taught = polls_of(plan, 30.1)
    assert taught[-1] - 30.1 <= 0.25 and max_polls_per_window(taught, FREE_SECONDS, WINDOW) <= BUDGET


def test_run_times_outlive_the_process_in_the_journal(monkeypatch, tmp_path):
    monkeypatch.setenv("SONIFY_STATE_DIR", str(tmp_path / "state"))
    History(JournalStore()).record("endpoint model", (29.0, 29.5))
    later = History(JournalStore())  # what a new process starts with
    assert later.expected("endpoint model") == Expected(29.0, 29.5)
    assert later.expected("endpoint other-model") is None


def test_a_new_process_polls_on_what_an_earlier_one_learned(emulator, wavespeed_env, tmp_path):
    """A job run by the command line (its own process) leaves its run time in the journal; this process,
    knowing nothing yet, finds it there."""
    HISTORY.clear()
    emulator.model_seconds = 1.0
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 96, 64)
    done = subprocess.run([sys.executable, "-m", "sonify", "run", MMAUDIO_V2.key, "--video", str(source), "-o",
                           str(tmp_path / "out"), "--prompt", "rain"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    expected = HISTORY.expected(history_key(emulator.url, MMAUDIO_V2.model_id))
    assert expected is not None and expected.first < 1.0 <= expected.last


def test_wavespeed_learns_a_models_run_time_from_its_own_jobs(emulator, wavespeed_env, tmp_path):
    HISTORY.clear()
    emulator.model_seconds = 1.0
    source = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 96, 64)
    pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(source)), out_dir=tmp_path / "out")
    expected = HISTORY.expected(history_key(emulator.url, MMAUDIO_V2.model_id))
    assert expected is not None and expected.first < expected.last and expected.last >= 1.0


# ---------------------------------------------------------------- batches


def test_a_batch_keeps_its_concurrency_at_the_provider_and_prepares_the_next_clips_meanwhile(
        emulator, wavespeed_env, tmp_path):
    emulator.model_seconds = 1.0
    sources = [write_clip(tmp_path / f"clip{i}.mp4", 12, Fraction(24), 64, 48, flash_at=(i,)) for i in range(6)]
    out = tmp_path / "out"
    engine = batch.Batch(MMAUDIO_V2, {"prompt": "rain"}, batch.plan(MMAUDIO_V2, {"prompt": "rain"}, sources, out),
                         out, concurrency=2)
    engine.run(lambda: None)
    assert engine.counts()["done"] == 6 and emulator.submits() == 6
    assert all("slot" in item.info["seconds"] for item in engine.items)  # the wait for a slot is a stage
    tasks = [emulator.tasks.get(item.task_id) for item in engine.items]
    for task in tasks:  # when each was submitted, at most one other was still at the provider
        assert sum(1 for other in tasks if other.submitted < task.submitted < other.completed_at) <= 1
    uploads = sorted(r.at for r in emulator.requests if r.method == "POST" and r.path == "/api/v3/media/uploads")
    assert uploads[3] < min(task.completed_at for task in tasks)  # 4 clips ready before the first job ended


def test_cancelling_a_batch_stops_the_clips_waiting_for_a_slot_before_their_submit(emulator, wavespeed_env, tmp_path):
    emulator.model_seconds = 30.0
    sources = [write_clip(tmp_path / f"clip{i}.mp4", 12, Fraction(24), 64, 48, flash_at=(i,)) for i in range(4)]
    out = tmp_path / "out"
    engine = batch.Batch(MMAUDIO_V2, {"prompt": "rain"}, batch.plan(MMAUDIO_V2, {"prompt": "rain"}, sources, out),
                         out, concurrency=1, is_cancelled=lambda: emulator.submits() > 0)  # Ctrl-C after the first submit
    engine.run(lambda: None)
    assert emulator.submits() == 1
    assert [item.state for item in engine.items] == ["cancelled"] * 4
    assert sum(1 for item in engine.items if item.task_id) == 1  # the submitted one says which task to fetch


# ---------------------------------------------------------------- the benchmark itself


def test_bench_quick_prints_its_tables_and_writes_json(tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "sonify", "bench", "--quick", "--json", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for title in ("prepare", "Upload proxy", "Detection latency", "batch:", "start-up", "Targets:"):
        assert title in done.stdout
    record = json.loads(report.read_text())
    for case in record["clips"]:
        assert set(case["seconds"]) == {"prepare", "encode", "upload", "submit", "wait", "download", "decode",
                                        "align", "mux"}
        assert case["uploaded_bytes"] > 0 and case["peak_rss_bytes"] > 0 and case["detection_seconds"] is not None
        assert case["picture_copied"] and case["audio_packets_copied"] and case["frames"]["within_one_frame"]
    assert any(not c["proxy"] and c["uploaded_unchanged"] for c in record["clips"])  # a fitting file went as is
    assert any(c.get("reference") for c in record["clips"])
    assert all(r["stream_requests"] == 1 and r["status_polls"] == 0 for r in record["fal"])
    assert all(r["status_polls"] >= 1 for r in record["fal_fallback"])
    assert {r["attempt"] for r in record["wavespeed"]} == {"first", "repeat", "new process"}
    assert record["batch"]["jobs"] > 0 and record["lipsync"][0]["torch_shares_memory"] is True
    assert not record["startup"]["imports_pyav"] and not record["startup"]["imports_emulator"]
    assert all(set(t) == {"target", "measured", "met"} for t in record["targets"])
