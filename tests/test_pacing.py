"""Pacing within an account's limits: the setting that names them, one pacer per provider and key shared by a run's
takes and windows and by a batch, a 429 on a submit waited out and sent again (never given up on within the queue
bound), and the emulator's account limits (per key: starts per window, running at once) that these run against —
its minute shortened to a second, so the tests are fast."""

from __future__ import annotations

import itertools
import threading
from fractions import Fraction
from pathlib import Path

import pytest
import requests
from clips import write_clip
from conftest import EMULATOR_KEY

from sonify import journal as jobs
from sonify import media, pipeline, providers, settings
from sonify.catalog import MMAUDIO_V2, THINKSOUND_WAVESPEED
from sonify.errors import ConfigurationError
from sonify.pipeline import batch
from sonify.providers.pacing import rate_text
from sonify_devtools.emulator import Emulator

MMAUDIO = MMAUDIO_V2.model_id
BRONZE_IN_A_SECOND = "2,2/1"  # a default-tier account's limits with its minute shortened to a second


def submits_sent(emulator: Emulator, model_id: str) -> list:
    """Every submit POST the emulator answered, refused ones too, oldest first."""
    return [r for r in emulator.requests if r.method == "POST" and r.path == f"/api/v3/{model_id}"]


def most_at_once(emulator: Emulator) -> int:
    """The most tasks processing at any moment, from the emulator's own record of each task."""
    events = sorted(itertools.chain.from_iterable(((t.started, 1), (t.completed_at, -1)) for t in emulator.tasks.all()
                                                  if t.started is not None and t.completed_at is not None))
    return max(itertools.accumulate(change for _, change in events), default=0)


def most_started_within(emulator: Emulator, seconds: float) -> int:
    """The most tasks created within any `seconds` (the emulator's submit times)."""
    starts = sorted(t.submitted for t in emulator.tasks.all())
    return max((sum(1 for s in starts if first <= s < first + seconds) for first in starts), default=0)


# --- the setting ---

@pytest.mark.parametrize("env, provider, expected", [
    ({}, "wavespeed", settings.Limits(2, 2, 60.0, "Bronze")),  # the documented default tier
    ({}, "fal", settings.Limits(2, None, 60.0, "a new fal account's")),
    ({"SONIFY_WAVESPEED_TIER": "Silver"}, "wavespeed", settings.Limits(300, 500, 60.0, "Silver")),
    ({"SONIFY_WAVESPEED_TIER": "ultra"}, "wavespeed", settings.Limits(10000, 5000, 60.0, "Ultra")),
    ({"SONIFY_WAVESPEED_LIMITS": "3,5/30"}, "wavespeed", settings.Limits(3, 5, 30.0, "SONIFY_WAVESPEED_LIMITS")),
    ({"SONIFY_FAL_LIMITS": " 4 "}, "fal", settings.Limits(4, None, 60.0, "SONIFY_FAL_LIMITS")),
    ({"SONIFY_WAVESPEED_URL": "http://127.0.0.1:9"}, "wavespeed", None),  # the emulator: no account level
    ({"SONIFY_FAL_QUEUE_URL": "http://127.0.0.1:9", "SONIFY_FAL_LIMITS": "2"}, "fal",
     settings.Limits(2, None, 60.0, "SONIFY_FAL_LIMITS")),
])
def test_the_setting_names_the_tier_or_the_limits_and_defaults_to_a_new_account(monkeypatch, env, provider, expected):
    for name in ("SONIFY_WAVESPEED_TIER", "SONIFY_WAVESPEED_LIMITS", "SONIFY_FAL_LIMITS", "SONIFY_WAVESPEED_URL",
                 "SONIFY_FAL_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    now = settings.current()
    assert now.limits(provider, providers.endpoint(provider, now)) == expected


def test_the_rate_reads_as_the_docs_say_it():
    assert rate_text(settings.WAVESPEED_TIERS["bronze"]) == "2 a minute"
    assert rate_text(settings.Limits(2, 2, 1.0)) == "2 a second"
    assert rate_text(settings.Limits(2, 5, 30.0)) == "5 every 30 s"


@pytest.mark.parametrize("env, message", [
    ({"SONIFY_WAVESPEED_TIER": "platinum"}, r"SONIFY_WAVESPEED_TIER must be one of bronze\|silver\|gold\|ultra .*got 'platinum'"),
    ({"SONIFY_WAVESPEED_LIMITS": "0"}, r"SONIFY_WAVESPEED_LIMITS must be AT_ONCE or AT_ONCE,STARTS/SECONDS .*got '0'"),
    ({"SONIFY_WAVESPEED_LIMITS": "2,2"}, r"SONIFY_WAVESPEED_LIMITS must be AT_ONCE or AT_ONCE,STARTS/SECONDS .*got '2,2'"),
    ({"SONIFY_WAVESPEED_LIMITS": "2,2/0"}, r"SONIFY_WAVESPEED_LIMITS must be .*seconds above 0, got '2,2/0'"),
    ({"SONIFY_WAVESPEED_LIMITS": "2,"}, r"SONIFY_WAVESPEED_LIMITS must be .*got '2,'"),
    ({"SONIFY_WAVESPEED_LIMITS": "two"}, r"SONIFY_WAVESPEED_LIMITS must be .*got 'two'"),
    ({"SONIFY_WAVESPEED_LIMITS": "2.5"}, r"SONIFY_WAVESPEED_LIMITS must be .*got '2.5'"),
    ({"SONIFY_WAVESPEED_TIER": "gold", "SONIFY_WAVESPEED_LIMITS": "2"},
     r"set SONIFY_WAVESPEED_TIER or SONIFY_WAVESPEED_LIMITS, not both"),
])
def test_a_bad_setting_is_refused_by_name_before_any_request(emulator, wavespeed_env, clip, tmp_path, monkeypatch,
                                                             env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert emulator.requests == []


# --- the emulator's account limits, on the wire ---

def test_the_emulator_refuses_a_start_past_the_rate_with_429_and_queues_past_the_running_limit(clip_path):
    other = "ws-test-9c2e4a7f1b3d5608"
    with Emulator(api_keys=(EMULATOR_KEY, other), model_seconds=0.5) as emulator:
        emulator.limit_account(EMULATOR_KEY, starts=3, seconds=60.0, at_once=2)
        emulator.limit_account(other, starts=1, seconds=60.0, retry_after=False)
        with open(clip_path, "rb") as f:  # the emulator reads its own files: upload the clip the legacy way
            url = requests.post(f"{emulator.url}/api/v3/media/upload/binary", files={"file": ("c.mp4", f)},
                                headers={"Authorization": f"Bearer {EMULATOR_KEY}"}).json()["data"]["download_url"]

        def submit(key: str) -> requests.Response:
            return requests.post(f"{emulator.url}/api/v3/{MMAUDIO}", json={"video": url, "prompt": "rain"},
                                 headers={"Authorization": f"Bearer {key}"}, timeout=10)

        answers = [submit(EMULATOR_KEY) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert 58 <= int(answers[3].headers["Retry-After"]) <= 60  # whole seconds (RFC 9110), until a start is due
        assert len(emulator.tasks.all()) == 3  # the refused start created nothing
        ids = [a.json()["data"]["id"] for a in answers[:3]]
        assert all(emulator.tasks.wait_final(task_id, 10).status == "completed" for task_id in ids)
        first, second, third = (emulator.tasks.get(task_id) for task_id in ids)
        assert third.started >= min(first.completed_at, second.completed_at)  # it waited for one of two to finish
        assert most_at_once(emulator) == 2

        answers = [submit(other) for _ in range(2)]  # another key: an account of its own
        assert [a.status_code for a in answers] == [200, 429] and "Retry-After" not in answers[1].headers


# --- a default-tier account ---

def test_four_takes_on_a_default_tier_account_all_finish_within_its_limits(emulator, wavespeed_env, clip, tmp_path,
                                                                          monkeypatch):
    emulator.limit_account(EMULATOR_KEY, starts=2, seconds=1.0, at_once=2)
    monkeypatch.setenv("SONIFY_WAVESPEED_LIMITS", BRONZE_IN_A_SECOND)
    seen: list[str] = []
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 3}, clip, out_dir=tmp_path / "out", variations=4,
                          on_progress=lambda text, fraction: seen.append(text))
    assert [t["status"] for t in result.info["takes"]] == ["completed"] * 4
    assert all(take.video_path.is_file() for take in result.takes)
    assert [r.status for r in submits_sent(emulator, MMAUDIO)] == [200] * 4  # paced: never refused
    assert most_at_once(emulator) <= 2 and most_started_within(emulator, 1.0) <= 2
    assert any("waiting for a submit slot: WaveSpeed runs 2 at once on this account" in text for text in seen)
    journal = jobs.Journal(Path(wavespeed_env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE)
    assert sorted(r.task_id for r in journal.recent() if r.delivered) == sorted(t.id for t in emulator.tasks.all())


@pytest.fixture
def five_windows(tmp_path: Path) -> Path:
    """40 s at 12 fps: ThinkSound's ~9 s windows make five of it."""
    return write_clip(tmp_path / "forty.mp4", 480, Fraction(12), 64, 48, flash_at=(100, 300))


@pytest.mark.parametrize("told", [True, False], ids=["limits set", "limits unknown: 429s waited out"])
def test_a_five_window_clip_on_a_default_tier_account_delivers_every_window(emulator, wavespeed_env, five_windows,
                                                                            tmp_path, monkeypatch, told):
    """Told the limits, Sonify keeps within them; not told (a loopback API, no setting), the emulator refuses the
    starts past its rate with 429 and Sonify sends each again, once, after its Retry-After: every window delivered
    either way."""
    emulator.limit_account(EMULATOR_KEY, starts=2, seconds=1.0, at_once=2)
    if told:
        monkeypatch.setenv("SONIFY_WAVESPEED_LIMITS", BRONZE_IN_A_SECOND)
    model = THINKSOUND_WAVESPEED.model_id
    result = pipeline.run(THINKSOUND_WAVESPEED, {"seed": 4}, media.VideoSource(path=str(five_windows)),
                          out_dir=tmp_path / "out")
    windows = result.info["windows"]
    assert len(windows) == 5 and all(w["status"] == "completed" for w in windows)
    assert result.video_path.is_file() and media.probe(result.video_path).duration == media.probe(five_windows).duration
    sent = submits_sent(emulator, model)
    refused = [r for r in sent if r.status == 429]
    assert len(emulator.tasks.all()) == 5 and len(sent) == 5 + len(refused)  # each refusal sent again, once
    assert (refused == []) if told else (len(refused) >= 1)
    assert most_started_within(emulator, 1.0) <= 2
    journal = jobs.Journal(Path(wavespeed_env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE)
    assert sorted(r.task_id for r in journal.recent() if r.delivered) == sorted(w["task_id"] for w in windows)


def test_runs_side_by_side_share_the_accounts_slots(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    """Two node runs of two takes each (ComfyUI runs coroutine nodes side by side): one pacer for the account."""
    monkeypatch.setenv("SONIFY_WAVESPEED_LIMITS", "2")
    emulator.model_seconds = 0.6
    outcomes: list[object] = []

    def run(prompt: str) -> None:
        outcomes.append(pipeline.run(MMAUDIO_V2, {"prompt": prompt, "seed": 1}, clip, out_dir=tmp_path / prompt,
                                     variations=2))

    threads = [threading.Thread(target=run, args=(prompt,)) for prompt in ("rain", "wind")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == 2 and emulator.submits(MMAUDIO) == 4
    assert most_at_once(emulator) == 2


def test_a_batch_keeps_within_the_account_whatever_its_concurrency(emulator, wavespeed_env, tmp_path, monkeypatch):
    emulator.limit_account(EMULATOR_KEY, starts=2, seconds=1.0, at_once=2)
    monkeypatch.setenv("SONIFY_WAVESPEED_LIMITS", BRONZE_IN_A_SECOND)
    sources = [write_clip(tmp_path / f"clip{i}.mp4", 12, Fraction(24), 64, 48, flash_at=(i,)) for i in range(5)]
    out = tmp_path / "out"
    engine = batch.Batch(MMAUDIO_V2, {"prompt": "rain"}, batch.plan(MMAUDIO_V2, {"prompt": "rain"}, sources, out),
                         out, concurrency=4)
    engine.run(lambda: None)
    assert engine.counts()["done"] == 5 and emulator.submits() == 5
    assert [r.status for r in submits_sent(emulator, MMAUDIO)] == [200] * 5
    assert most_at_once(emulator) <= 2 and most_started_within(emulator, 1.0) <= 2


# --- a 429 on a submit ---

def test_a_429_is_waited_out_for_its_retry_after_and_sent_again_once_per_refusal(emulator, wavespeed_env, clip,
                                                                                tmp_path):
    emulator.inject("POST", rf"^/api/v3/{MMAUDIO}$", 429, times=2, retry_after=1)
    seen: list[str] = []
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out",
                          on_progress=lambda text, fraction: seen.append(text))
    sent = submits_sent(emulator, MMAUDIO)
    assert [r.status for r in sent] == [429, 429, 200] and emulator.submits(MMAUDIO) == 1
    assert all(later.at - earlier.at >= 1.0 for earlier, later in itertools.pairwise(sent))  # its Retry-After
    assert result.info["status"] == "completed" and result.info["task_id"] == emulator.tasks.all()[0].id
    assert any("waiting for a submit slot: WaveSpeed answered 429 to a submit, which created nothing; sending it "
               "again after 1.0 s" in text for text in seen)


def test_a_submit_refused_again_and_again_is_not_given_up_within_the_queue_bound(emulator, wavespeed_env, clip,
                                                                                tmp_path):
    emulator.inject("POST", rf"^/api/v3/{MMAUDIO}$", 429, times=8, retry_after=0.1)  # more than any retry budget
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert [r.status for r in submits_sent(emulator, MMAUDIO)] == [429] * 8 + [200]
    assert result.info["status"] == "completed" and emulator.submits(MMAUDIO) == 1


def test_a_429_without_retry_after_waits_the_rest_of_the_window(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_WAVESPEED_LIMITS", "2,2/1.5")
    emulator.inject("POST", rf"^/api/v3/{MMAUDIO}$", 429, times=1)  # no Retry-After: someone else used the account
    seen: list[str] = []
    pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out",
                 on_progress=lambda text, fraction: seen.append(text))
    refused, accepted = submits_sent(emulator, MMAUDIO)
    assert (refused.status, accepted.status) == (429, 200) and emulator.submits(MMAUDIO) == 1
    assert 1.5 <= accepted.at - refused.at < 3.0  # a whole window: no start of this pacer was in it
    assert any("WaveSpeed answered 429 to a submit (its limit of 2 every 1.5 s on this account), which created "
               "nothing; sending it again after 1.5 s" in text for text in seen)


def test_a_pacing_wait_past_the_queue_bound_ends_with_a_message_and_no_paid_task_lost(emulator, wavespeed_env, clip,
                                                                                      tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_WAVESPEED_LIMITS", "2,1/60")  # one start a minute: the second take's wait is long
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "1")
    # the second take's start is known to come only past its bound: it fails at once, and the first take is kept
    first = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 7}, clip, out_dir=tmp_path / "out", variations=2)
    (failed,) = first.failed
    assert failed["error"] == (
        "the next submit slot at WaveSpeed comes only after this job's 1 s (SONIFY_QUEUE_TIMEOUT) have passed; "
        "WaveSpeed allows 1 a minute on this account. This job was not submitted, so nothing was created or charged "
        "for it: run it again, raise SONIFY_QUEUE_TIMEOUT, or set SONIFY_WAVESPEED_TIER to your account's level "
        "(bronze|silver|gold|ultra) or SONIFY_WAVESPEED_LIMITS")
    assert failed["task_id"] is None and len(first.takes) == 1
    (paid,) = emulator.tasks.all()
    assert paid.status == "completed" and emulator.submits(MMAUDIO) == 1
    journal = jobs.Journal(Path(wavespeed_env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE)
    (row,) = [r for r in journal.recent() if r.task_id]
    assert row.task_id == paid.id and row.delivered and Path(row.result_path).is_file()  # the paid one is kept

    monkeypatch.setenv("SONIFY_WAVESPEED_LIMITS", "2")
    again = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 7}, clip, out_dir=tmp_path / "out", variations=2)
    assert emulator.submits(MMAUDIO) == 2  # only the take that was never sent
    (stored,) = [t for t in again.info["takes"] if t["cached"]]
    assert stored["task_id"] == paid.id and len(again.info["takes"]) == 2
