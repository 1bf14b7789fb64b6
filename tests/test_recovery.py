"""A submit whose answer was lost is recovered from the provider's listing, not stranded: WaveSpeed's task
listing (by model and created-at window, no inputs), fal's request listing by endpoint (matched by its
`json_input`). One submit, the result delivered; several candidates → a clear error naming them and no
second submit; a crash between sending the submit and recording its id → the re-run adopts the task."""

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

from sonify import jobs, media, pipeline
from sonify.errors import JobFailed
from sonify.models import MMAUDIO_V2, THINKSOUND_FAL, ModelSpec
from sonify_devtools.emulator import Emulator

SUBMIT = {"wavespeed": rf"^/api/v3/{MMAUDIO_V2.model_id}$", "fal": rf"^/{THINKSOUND_FAL.model_id}$"}
SPECS = [MMAUDIO_V2, THINKSOUND_FAL]


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
    answer = requests.get(f"{emulator.url}/v1/models/requests/by-endpoint", params={
        "endpoint_id": THINKSOUND_FAL.model_id}, headers={"Authorization": f"Key {FAL_KEY}"}, timeout=30).json()
    (item,) = answer["items"]
    assert item["json_input"]["prompt"] == "rain" and item["json_input"]["video_url"].startswith(emulator.files_url)
    assert answer["has_more"] is False


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
