"""A submit whose answer was lost is recovered from the provider's listing, not stranded: WaveSpeed's task
listing (by model and created-at window, no inputs), fal's request listing by endpoint (matched by its
`json_input`; finished requests only). One submit, the result delivered; several candidates → a clear error
naming them and no second submit; a crash between sending the submit and recording its id → the re-run adopts
the task. A lost fal submit whose request is still queued or running is looked for until the job's bound has
passed (at once when a webhook comes); then its journal row stays open, the message says how to find it, and
nothing is ever claimed uncharged or submitted again on its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import EMULATOR_KEY, FAL_KEY
from pack import ROOT

from sonify import journal as jobs
from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL, ModelSpec
from sonify.cli import webhook_listener
from sonify.errors import JobFailed, JobTimedOut
from sonify_devtools.emulator import Emulator

SUBMIT = {"wavespeed": rf"^/api/v3/{MMAUDIO_V2.model_id}$", "fal": rf"^/{THINKSOUND_FAL.model_id}$"}
SPECS = [MMAUDIO_V2, THINKSOUND_FAL]
FAL_LISTING = "/v1/models/requests/by-endpoint"
UNCHARGED = ("nothing is charged", "none was created", "nothing was created")  # never said of a fal lost submit


def run(spec: ModelSpec, clip: media.VideoSource, tmp_path: Path, **kwargs) -> pipeline.Result:
    return pipeline.run(spec, {"prompt": "rain"}, clip, out_dir=tmp_path / "out", **kwargs)


def journal(env: dict[str, str]) -> jobs.Journal:
    Path(env["SONIFY_STATE_DIR"]).mkdir(parents=True, exist_ok=True)
    return jobs.Journal(Path(env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE)


def submits_sent(emulator: Emulator, spec: ModelSpec) -> int:
    return sum(1 for r in emulator.requests if r.method == "POST" and re.search(SUBMIT[spec.provider], r.path))


def submit_elsewhere(emulator: Emulator, spec: ModelSpec, video_url: str) -> str:
    """A task made outside this journal (the website, another machine): the listing shows it."""
    if spec.provider == "wavespeed":
        answer = requests.post(f"{emulator.url}/api/v3/{spec.model_id}", timeout=30, json={
            "video": video_url, "prompt": "someone else's"}, headers={"Authorization": f"Bearer {EMULATOR_KEY}"})
        return answer.json()["data"]["id"]
    answer = requests.post(f"{emulator.url}/{spec.model_id}", timeout=30, json={
        "video_url": video_url, "prompt": "someone else's"}, headers={"Authorization": f"Key {FAL_KEY}"})
    return answer.json()["request_id"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.provider)
def test_a_lost_submit_answer_is_recovered_one_submit_the_result_delivered(emulator, wavespeed_env, fal_env, clip,
                                                                           tmp_path, spec):
    emulator.lose("POST", SUBMIT[spec.provider])
    result = run(spec, clip, tmp_path)
    (task,) = emulator.tasks.all()
    assert result.info["status"] == "completed" and result.info["task_id"] == task.id
    assert emulator.submits() == 1 and submits_sent(emulator, spec) == 1
    assert [r.fault for r in emulator.requests if r.method == "POST" and r.status is None] == ["lose"]
    row = journal(wavespeed_env).find_task(spec.provider, task.id)
    assert row.status == "completed" and row.delivered and row.request["body"]


def test_two_candidates_of_one_model_are_named_and_nothing_is_submitted_again(emulator, wavespeed_env, clip,
                                                                              tmp_path):
    spec = MMAUDIO_V2
    run(spec, clip, tmp_path)  # a job of this journal: its task is owned, never a candidate
    owned = emulator.tasks.all()[0].id
    other = submit_elsewhere(emulator, spec, emulator.tasks.all()[0].media["video"])
    emulator.lose("POST", SUBMIT["wavespeed"])
    with pytest.raises(JobFailed) as caught:
        run(spec, clip, tmp_path)
    ours = emulator.tasks.all()[-1].id
    message = str(caught.value)
    assert other in message and ours in message and owned not in message
    assert f"python -m sonify fetch wavespeed {ours}" in message and f"python -m sonify fetch wavespeed {other}" in message
    assert "Nothing was submitted again" in message
    assert emulator.submits() == 3 and submits_sent(emulator, spec) == 3  # the first job, the other, ours: once


def test_the_one_listed_task_is_not_adopted_while_another_submit_sent_then_has_no_answer(emulator, wavespeed_env,
                                                                                          clip, tmp_path):
    """WaveSpeed's listing carries no inputs, so a task another job of the model created in the same seconds looks
    like the lost submit's while that job's answer is not recorded yet (a long clip's other window, another process
    sharing the journal): it is named, never adopted, and nothing is sent again."""
    spec = MMAUDIO_V2
    first = run(spec, clip, tmp_path)
    book = journal(wavespeed_env)
    other = book.claim("elsewhere:1:run", jobs.JobMeta(provider="wavespeed", model=spec.model_id,
                                                       fingerprint="another job", cacheable=False)).row
    book.update(other.id, status=jobs.Status.SUBMITTING, request={"body": {"prompt": "hail"}, "sent_at": time.time()})
    theirs = submit_elsewhere(emulator, spec, emulator.tasks.get(first.info["task_id"]).media["video"])
    emulator.inject("POST", SUBMIT["wavespeed"], 502)  # ours: refused before any task existed, its answer unreadable

    with pytest.raises(JobFailed) as caught:
        pipeline.run(spec, {"prompt": "snow"}, clip, out_dir=tmp_path / "out")

    message = str(caught.value)
    assert theirs in message and "another Sonify job's" in message and "Nothing was submitted again" in message
    assert first.info["task_id"] not in message
    assert emulator.submits() == 2 and submits_sent(emulator, spec) == 3  # the first, theirs, ours (refused): once
    assert book.find_task("wavespeed", theirs) is None  # not taken by our row
    assert [r.status for r in book.recent() if r.params.get("prompt") == "snow"] == [jobs.Status.UNKNOWN_REPORTED]


def test_fal_adopts_the_request_whose_input_is_the_body_sent(emulator, fal_env, clip, tmp_path):
    spec = THINKSOUND_FAL
    first = run(spec, clip, tmp_path)
    other = submit_elsewhere(emulator, spec, first.info["outputs"][0])  # same endpoint, same window, other input
    emulator.lose("POST", SUBMIT["fal"])
    result = run(spec, clip, tmp_path)
    assert result.info["task_id"] not in (other, first.info["task_id"]) and result.info["status"] == "completed"
    assert submits_sent(emulator, spec) == 3  # the first job, the other, ours: once


def test_listings_as_the_providers_document_them(emulator, wavespeed_env, fal_env, clip, tmp_path):
    run(MMAUDIO_V2, clip, tmp_path)
    listing = f"{emulator.url}/api/v3/predictions"
    auth = {"Authorization": f"Bearer {EMULATOR_KEY}"}
    assert requests.post(listing, json={"page": 1}, headers=auth, timeout=30).status_code == 400  # page_size required
    assert requests.post(listing, json={"page": 1, "page_size": 101}, headers=auth, timeout=30).status_code == 400
    data = requests.post(listing, json={"page": 1, "page_size": 10, "model": MMAUDIO_V2.model_id}, headers=auth,
                         timeout=30).json()["data"]
    (item,) = data["items"]
    assert item["model"] == MMAUDIO_V2.model_id and item["status"] == "completed" and "input" not in item
    assert requests.post(listing, json={"page": 1, "page_size": 10, "created_after": "2999-01-01T00:00:00Z"},
                         headers=auth, timeout=30).json()["data"]["items"] == []

    run(THINKSOUND_FAL, clip, tmp_path)
    emulator.stick_next(THINKSOUND_FAL.model_id)  # a request still queued: fal lists finished requests only
    queued = submit_elsewhere(emulator, THINKSOUND_FAL, emulator.tasks.all()[-1].media["video_url"])
    fal_listing = f"{emulator.url}/v1/models/requests/by-endpoint"
    auth = {"Authorization": f"Key {FAL_KEY}"}
    answer = requests.get(fal_listing, params={"endpoint_id": THINKSOUND_FAL.model_id, "expand": "payloads"},
                          headers=auth, timeout=30).json()
    (item,) = answer["items"]
    assert item["request_id"] != queued and item["ended_at"] and item["status_code"] == 200
    assert item["json_input"]["prompt"] == "rain" and item["json_input"]["video_url"].startswith(emulator.files_url)
    assert answer["has_more"] is False
    plain = requests.get(fal_listing, params={"endpoint_id": THINKSOUND_FAL.model_id}, headers=auth, timeout=30).json()
    assert "json_input" not in plain["items"][0]  # the inputs only with expand=payloads
    for status, listed in (("success", 1), ("error", 0)):
        assert len(requests.get(fal_listing, params={"endpoint_id": THINKSOUND_FAL.model_id, "status": status},
                                headers=auth, timeout=30).json()["items"]) == listed


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.provider)
def test_a_crash_between_the_submit_and_its_id_is_recovered_by_the_next_run(emulator, wavespeed_env, fal_env,
                                                                             clip, clip_path, tmp_path, spec):
    emulator.delay("POST", SUBMIT[spec.provider], 60.0)  # the task is created; its answer is held back
    args = [sys.executable, "-m", "sonify", "run", spec.key, "--video", str(clip_path), "--prompt", "rain",
            "-o", str(tmp_path / "first")]
    with subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as first:
        deadline = time.monotonic() + 60
        while emulator.submits() == 0 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)  # sent, not answered: the task exists, its id is nowhere
    assert first.returncode == -signal.SIGKILL and emulator.submits() == 1
    (row,) = journal(wavespeed_env).recent()
    assert row.status == "submitting" and row.task_id is None and row.request["body"]

    result = run(spec, clip, tmp_path)
    (task,) = emulator.tasks.all()
    assert result.info["task_id"] == task.id and result.info["status"] == "completed"
    assert emulator.submits() == 1
    (row,) = journal(wavespeed_env).recent()
    assert row.task_id == task.id and row.status == "completed" and row.delivered


def bound(monkeypatch: pytest.MonkeyPatch, queue: float, running: float) -> None:
    """The job's queue-and-run bound (SONIFY_QUEUE_TIMEOUT + SONIFY_RUN_TIMEOUT)."""
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", str(queue))
    monkeypatch.setenv("SONIFY_RUN_TIMEOUT", str(running))


def listings(emulator: Emulator) -> list[float]:
    return [r.at for r in emulator.requests if r.method == "GET" and r.path == FAL_LISTING]


def test_a_lost_fal_submit_on_a_running_request_is_found_once_it_finishes(emulator, fal_env, clip, tmp_path,
                                                                           monkeypatch):
    spec = THINKSOUND_FAL
    emulator.per_model_seconds[spec.model_id] = 3.0  # still running when the answer is lost and first looked for
    bound(monkeypatch, 30, 30)
    emulator.lose("POST", SUBMIT["fal"])
    shown: list[str] = []
    result = run(spec, clip, tmp_path, on_progress=lambda text, fraction: shown.append(text))
    (task,) = emulator.tasks.all()
    assert result.info["status"] == "completed" and result.info["task_id"] == task.id
    assert submits_sent(emulator, spec) == 1 and emulator.submits() == 1
    looked = listings(emulator)
    assert looked[0] < task.completed_at < looked[-1] and len(looked) >= 3  # not listed while it ran: looked again
    assert any("lists a request only once it has finished" in text for text in shown)
    assert not any(word in text for text in shown for word in UNCHARGED)


def test_a_lost_fal_submit_unfinished_at_the_bound_leaves_its_row_open_and_says_how_to_find_it(
        emulator, fal_env, clip, tmp_path, monkeypatch):
    spec = THINKSOUND_FAL
    emulator.stick_next(spec.model_id)  # queued for good: never listed
    bound(monkeypatch, 1, 1)
    emulator.lose("POST", SUBMIT["fal"])
    started = time.monotonic()
    with pytest.raises(JobTimedOut) as caught:
        run(spec, clip, tmp_path)
    assert 2.0 <= time.monotonic() - started < 10.0  # looked for until the 2 s bound had passed, then told
    message = str(caught.value)
    assert not any(word in message.lower() for word in UNCHARGED)
    assert "may still be queued or running, and be charged" in message and "Nothing was submitted again" in message
    assert "dashboard" in message and spec.model_id in message and " UTC" in message
    assert f"`python -m sonify fetch fal REQUEST_ID --model {spec.key}`" in message
    (row,) = journal(fal_env).recent()
    assert row.status == "unknown" and row.task_id is None and row.request["body"]["prompt"] == "rain"
    assert "may be queued or running" in row.error
    assert submits_sent(emulator, spec) == 1

    # An identical run while it may exist: looks again, submits nothing, and says so once.
    with pytest.raises(JobFailed) as again:
        run(spec, clip, tmp_path)
    assert "Nothing was sent now" in str(again.value) and "run again to submit anew" in str(again.value)
    assert not any(word in str(again.value).lower() for word in UNCHARGED)
    assert submits_sent(emulator, spec) == 1
    assert journal(fal_env).recent()[0].status == "unknown_reported"

    run(spec, clip, tmp_path)  # told once: the next identical run submits anew
    assert submits_sent(emulator, spec) == 2


def test_a_lost_fal_submit_that_finishes_after_the_bound_is_adopted_by_the_next_run(emulator, fal_env, clip,
                                                                                      tmp_path, monkeypatch):
    spec = THINKSOUND_FAL
    emulator.per_model_seconds[spec.model_id] = 4.0
    bound(monkeypatch, 1, 1)
    emulator.lose("POST", SUBMIT["fal"])
    with pytest.raises(JobTimedOut):
        run(spec, clip, tmp_path)
    (task,) = emulator.tasks.all()
    assert emulator.tasks.wait_final(task.id, 30).status == "completed"
    result = run(spec, clip, tmp_path)
    assert result.info["task_id"] == task.id and result.info["status"] == "completed"
    assert submits_sent(emulator, spec) == 1
    (row,) = journal(fal_env).recent()
    assert row.task_id == task.id and row.status == "completed" and row.delivered


def test_a_webhook_makes_a_lost_fal_submit_look_at_once(emulator, fal_env, clip, tmp_path, monkeypatch):
    """The looks grow further apart (1, 1.5, 2.25 s…): a request ending at 2.6 s would be seen at 4.75 s. fal's
    delivery for it (its id unknown here: the answer was lost) makes the listing be read at once."""
    pytest.importorskip("cryptography")
    spec = THINKSOUND_FAL
    listener = webhook_listener.Listener(("127.0.0.1", 0))
    try:
        monkeypatch.setenv("SONIFY_PUBLIC_URL", listener.url)
        monkeypatch.setenv("SONIFY_FAL_JWKS_URL", f"{emulator.url}/.well-known/jwks.json")
        emulator.per_model_seconds[spec.model_id] = 2.6
        bound(monkeypatch, 30, 30)
        emulator.lose("POST", SUBMIT["fal"])
        result = run(spec, clip, tmp_path)
    finally:
        listener.close()
    (task,) = emulator.tasks.all()
    assert result.info["task_id"] == task.id and submits_sent(emulator, spec) == 1
    emulator.webhooks.join(5.0)
    assert [d.kind for d in emulator.deliveries] == ["valid"]
    assert listings(emulator)[-1] - task.completed_at < 0.5
