"""fal: the emulator checked with the official `fal_client` SDK and raw HTTP, and our client
(`sonify.providers.fal`) through the real pipeline against the emulator."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import fal_client
import fal_client.client as fal_sdk
import pytest
import requests
from conftest import FAL_KEY

from sonify import media, pipeline, providers, settings
from sonify.catalog import THINKSOUND_FAL
from sonify.errors import Cancelled, ConfigurationError, JobFailed, JobTimedOut, ProviderError, ValidationError
from sonify.net.sse import sse_data
from sonify.providers.base import COMPLETED, QUEUED, RUNNING, CancelOutcome, TaskState, WaitLimits
from sonify.providers.fal import Fal
from sonify.waiter import Waiter
from sonify_devtools.emulator import Emulator

MODEL = THINKSOUND_FAL.model_id
STATUS_POLL = r"/requests/[^/]+/status$"
STREAM = r"/requests/[^/]+/status/stream$"
RESULT = rf"/{MODEL}/requests/[^/]+$"


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def sdk(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> fal_client.SyncClient:
    """The official client pointed at the emulator: queue and REST on its API origin, CDN on its files origin.
    The CDN token manager reads REST_URL when the client builds it, i.e. after this patch."""
    monkeypatch.setattr(fal_sdk, "QUEUE_URL_FORMAT", emulator.url + "/")
    monkeypatch.setattr(fal_sdk, "REST_URL", emulator.url)
    monkeypatch.setattr(fal_sdk, "CDN_URL", emulator.files_url)
    monkeypatch.setattr(fal_sdk, "BASE_DELAY", 0.01)  # its retries (408/409/429, ingress 5xx) stay short
    return fal_client.SyncClient(key=FAL_KEY, default_timeout=30)


def client() -> Fal:
    found = providers.client("fal", settings.current())
    assert isinstance(found, Fal)
    return found


def run(clip: media.VideoSource, tmp_path: Path, **kwargs) -> pipeline.Result:
    params = {"prompt": kwargs.pop("prompt", "rain on a tin roof")}
    return pipeline.run(THINKSOUND_FAL, params, clip, out_dir=tmp_path / "out", **kwargs)


def paths(emulator: Emulator, method: str, regex: str) -> list[tuple[str, int | None]]:
    return [(r.path, r.status) for r in emulator.requests if r.method == method and re.search(regex, r.path)]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def body_for(url: str, **params) -> dict:
    return {"video_url": url, "prompt": "", "seed": 1, "num_inference_steps": 24, "cfg_scale": 5.0, **params}


# ---------------------------------------------------------------- the official SDK against the emulator


def test_sdk_uploads_and_subscribes(emulator: Emulator, sdk: fal_client.SyncClient, clip_path: Path) -> None:
    url = sdk.upload_file(clip_path)
    assert url.startswith(emulator.files_url + "/files/")
    assert requests.get(url, timeout=30).content == clip_path.read_bytes()

    updates: list[fal_client.Status] = []
    result = sdk.subscribe(MODEL, {"video_url": url, "prompt": "rain"}, with_logs=True, interval=0.02,
                           on_queue_update=updates.append)
    assert result["prompt"] == "rain"
    video = result["video"]
    assert video["content_type"] == "video/mp4" and video["file_name"].startswith("emulator-")
    content = requests.get(video["url"], timeout=30).content
    assert len(content) == video["file_size"]
    assert isinstance(updates[-1], fal_client.Completed) and updates[-1].error is None
    assert any(isinstance(u, fal_client.InProgress) and u.logs for u in updates)
    tokens = paths(emulator, "POST", r"^/storage/auth/token$")
    assert tokens == [("/storage/auth/token", 200)]


def test_sdk_sees_fal_errors(emulator: Emulator, sdk: fal_client.SyncClient, clip_path: Path) -> None:
    url = sdk.upload_file(clip_path)
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        sdk.submit(MODEL, {"video_url": url, "cfg_scale": 50})
    assert caught.value.status_code == 422
    assert caught.value.message[0]["loc"] == ["body", "cfg_scale"]
    bad = fal_client.SyncClient(key="other-id:other-secret", default_timeout=30)
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        bad.submit(MODEL, {"video_url": url})
    assert caught.value.status_code == 401
    assert emulator.submits() == 0


def test_sdk_cancel_and_failed_request(emulator: Emulator, sdk: fal_client.SyncClient, clip_path: Path) -> None:
    url = sdk.upload_file(clip_path)
    emulator.per_model_seconds[MODEL] = 30
    handle = sdk.submit(MODEL, {"video_url": url})
    handle.cancel()
    assert emulator.cancels(MODEL) == 1
    status = handle.status()
    assert isinstance(status, fal_client.Completed) and status.error
    with pytest.raises(fal_client.client.FalClientHTTPError):
        handle.cancel()  # 400 ALREADY_COMPLETED

    emulator.per_model_seconds[MODEL] = 0.2
    emulator.fail_next(MODEL, error="the runner ran out of memory")
    handle = sdk.submit(MODEL, {"video_url": url})
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        handle.get(interval=0.02)
    assert caught.value.message == "the runner ran out of memory"
    assert caught.value.error_type == "runner_server_error"


# ---------------------------------------------------------------- the emulator over raw HTTP


def test_status_stream_sends_keepalives_and_closes_after_completed(emulator: Emulator, sdk, clip_path: Path) -> None:
    emulator.sse_keepalive = 0.05
    emulator.per_model_seconds[MODEL] = 0.5
    handle = sdk.submit(MODEL, {"video_url": sdk.upload_file(clip_path)})
    headers = {"Authorization": f"Key {FAL_KEY}"}
    with requests.get(handle.status_url + "/stream?logs=1", headers=headers, stream=True, timeout=30) as answer:
        assert answer.headers["Content-Type"] == "text/event-stream"
        text = b"".join(answer.iter_content(chunk_size=None)).decode()
    assert ": keep-alive\n\n" in text
    events = [line for line in text.splitlines() if line.startswith("data:")]
    assert '"status": "IN_PROGRESS"' in events[-2] and '"status": "COMPLETED"' in events[-1]
    assert text.endswith("\n\n")
    assert list(sse_data([b": keep-alive\n\n", b'data: {"a"', b": 1}\r\n\r\nda", b"ta: x\n\n"])) == ['{"a": 1}', "x"]


def test_queue_answers(emulator: Emulator, sdk, clip_path: Path) -> None:
    headers = {"Authorization": f"Key {FAL_KEY}"}
    emulator.per_model_seconds[MODEL] = 30
    handle = sdk.submit(MODEL, {"video_url": sdk.upload_file(clip_path)})
    assert requests.get(handle.response_url, headers=headers, timeout=30).status_code == 400  # still running
    unknown = handle.cancel_url.replace(handle.request_id, "00000000-0000-4000-8000-000000000000")
    assert requests.put(unknown, headers=headers, timeout=30).status_code == 404
    wait_until(lambda: emulator.tasks.get(handle.request_id).status == "processing")
    answer = requests.put(handle.cancel_url, headers=headers, timeout=30)
    assert (answer.status_code, answer.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    answer = requests.put(handle.cancel_url, headers=headers, timeout=30)
    assert (answer.status_code, answer.json()) == (400, {"status": "ALREADY_COMPLETED"})
    emulator.stick_next(MODEL)
    queued = sdk.submit(MODEL, {"video_url": sdk.upload_file(clip_path)})
    answer = requests.put(queued.cancel_url, headers=headers, timeout=30)
    assert (answer.status_code, answer.json()) == (200, {"status": "OK"})  # removed from the queue
    assert requests.post(emulator.url + "/" + MODEL, json={}, headers={"Authorization": "Key nocolon"},
                         timeout=30).json() == {"detail": "Invalid key format: send the header Authorization: Key "
                                                          "<key_id>:<key_secret>"}


# ---------------------------------------------------------------- our client: uploads


def test_upload_through_the_cdn_caches_the_token(emulator: Emulator, fal_env, clip_path: Path) -> None:
    fal = client()
    first, second = fal.upload(clip_path, Waiter()), fal.upload(clip_path, Waiter())
    for url in (first, second):
        assert url.startswith(emulator.files_url) and requests.get(url, timeout=30).content == clip_path.read_bytes()
    assert paths(emulator, "POST", r"^/storage/auth/token$") == [("/storage/auth/token", 200)]
    assert paths(emulator, "POST", r"^/files/upload$") == [("/files/upload", 200)] * 2
    assert not paths(emulator, "POST", r"/storage/upload/initiate")
    uploads = [r for r in emulator.requests if r.path == "/files/upload"]
    assert all(r.headers["Content-Length"] == str(clip_path.stat().st_size) for r in uploads)
    assert all(r.headers["X-Fal-File-Name"] == "clip.mp4" for r in uploads)


def test_a_file_goes_to_the_cdn_host_in_one_part_as_the_official_client_sends_it(emulator: Emulator, fal_env,
                                                                                  clip_path: Path) -> None:
    """fal_client 1.0.3 posts a one-part upload to CDN_URL + "/files/upload" (https://v3.fal.media), whatever base_url
    the token answer names (that one is for multipart uploads)."""
    assert settings.DEFAULT_URLS["fal_cdn"] == "https://v3.fal.media" == fal_sdk.CDN_URL
    emulator.hand_out("upload_url", "http://cdn.example.invalid{path}")  # the token's base_url: not where it goes
    url = client().upload(clip_path, Waiter())
    assert requests.get(url, timeout=30).content == clip_path.read_bytes()
    (upload,) = [r for r in emulator.requests if r.path == "/files/upload"]
    assert upload.status == 200 and upload.headers["Host"] == urlsplit(fal_env["SONIFY_FAL_CDN_URL"]).netloc
    assert not paths(emulator, "POST", r"/storage/upload/initiate")


def test_a_cdn_elsewhere_than_the_api_is_not_sent_the_file(emulator: Emulator, fal_env, clip_path: Path,
                                                           monkeypatch) -> None:
    """The emulator's API with fal's own CDN (a setting left out): the file goes to the emulator's storage."""
    monkeypatch.setenv("SONIFY_FAL_CDN_URL", "https://cdn.example.invalid")
    url = client().upload(clip_path, Waiter())
    assert requests.get(url, timeout=30).content == clip_path.read_bytes()
    assert paths(emulator, "POST", r"^/storage/upload/initiate$") == [("/storage/upload/initiate", 200)]


@pytest.mark.parametrize(("hours", "seconds"), [(None, 86400), ("2", 7200), ("0.5", 1800)])
@pytest.mark.parametrize("route", ["cdn", "storage"])
def test_every_upload_asks_fal_to_keep_the_file_only_briefly(emulator: Emulator, fal_env, clip_path: Path,
                                                             monkeypatch, hours, seconds, route) -> None:
    if hours is not None:
        monkeypatch.setenv("SONIFY_UPLOAD_TTL_HOURS", hours)
    if route == "storage":
        emulator.inject("POST", r"^/files/upload$", 503, body={"detail": "injected"})
    url = client().upload(clip_path, Waiter())
    assert requests.get(url, timeout=30).content == clip_path.read_bytes()
    asked = {"expiration_duration_seconds": seconds}
    sent = [r for r in emulator.requests if r.path in ("/files/upload", "/storage/upload/initiate")]
    assert len(sent) == (2 if route == "storage" else 1)
    for record in sent:
        assert json.loads(record.headers["X-Fal-Object-Lifecycle-Preference"]) == asked
        assert json.loads(record.headers["X-Fal-Object-Lifecycle"]) == asked


@pytest.mark.parametrize("hours", ["0", "-1", "soon", "inf"])
def test_a_bad_upload_lifetime_is_refused_before_anything_is_sent(emulator: Emulator, fal_env, clip_path: Path,
                                                                  monkeypatch, hours) -> None:
    monkeypatch.setenv("SONIFY_UPLOAD_TTL_HOURS", hours)
    with pytest.raises(ConfigurationError, match="SONIFY_UPLOAD_TTL_HOURS"):
        client().upload(clip_path, Waiter())
    assert emulator.requests == []


def test_a_fal_upload_is_reused_for_half_its_lifetime_only(emulator: Emulator, fal_env, clip, tmp_path: Path,
                                                           monkeypatch) -> None:
    run(clip, tmp_path, prompt="rain")
    run(clip, tmp_path, prompt="hail")
    assert len(paths(emulator, "POST", r"^/files/upload$")) == 1  # reused
    monkeypatch.setenv("SONIFY_UPLOAD_TTL_HOURS", "0.0001")  # a minute, the least: reused for 30 s at most
    state = Path(fal_env["SONIFY_STATE_DIR"]) / "jobs.sqlite3"
    with sqlite3.connect(state) as db:
        db.execute("UPDATE uploads SET uploaded_at = uploaded_at - 31")
    run(clip, tmp_path, prompt="snow")
    assert len(paths(emulator, "POST", r"^/files/upload$")) == 2


@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", r"^/storage/auth/token$", 500),
    ("POST", r"^/storage/auth/token$", 404),
    ("POST", r"^/files/upload$", 503),
])
def test_upload_falls_back_to_storage(emulator: Emulator, fal_env, clip_path: Path, method, path, status) -> None:
    emulator.inject(method, path, status, body={"detail": "injected"})
    url = client().upload(clip_path, Waiter())
    assert requests.get(url, timeout=30).content == clip_path.read_bytes()
    assert paths(emulator, method, path) == [(path.strip("^$"), status)]  # no retry: the fallback is the retry
    assert paths(emulator, "POST", r"^/storage/upload/initiate$") == [("/storage/upload/initiate", 200)]
    put = [r for r in emulator.requests if r.method == "PUT"]
    assert len(put) == 1 and put[0].status == 200 and not put[0].authorized


# ---------------------------------------------------------------- our client: the whole job


def test_job_follows_the_status_stream_and_never_sends_the_key_to_the_files_host(
    emulator: Emulator, fal_env, clip: media.VideoSource, tmp_path: Path, all_logs
) -> None:
    result = run(clip, tmp_path)
    assert result.extra == {"prompt": "rain on a tin roof"}
    assert result.info["status"] == "completed" and result.info["inference_seconds"] > 0
    assert result.audio.shape[0] == 2 and result.sample_rate == 44100
    assert [status for _, status in paths(emulator, "GET", STREAM)] == [200]
    assert not paths(emulator, "GET", STATUS_POLL)  # no polling at all

    files_host = urlsplit(emulator.files_url).netloc
    on_files = [r for r in emulator.requests if r.headers.get("Host") == files_host]
    assert {r.path for r in on_files} >= {"/files/upload"} and any(r.path.startswith("/outputs/") for r in on_files)
    for record in on_files:  # only the CDN upload carries a header, and the CDN refuses the fal key (401)
        assert not record.authorized or (record.path == "/files/upload" and record.status == 200)
    refused = requests.post(emulator.files_url + "/files/upload", data=b"x", timeout=30,
                            headers={"Authorization": f"Key {FAL_KEY}", "X-Fal-File-Name": "x.bin"})
    assert refused.status_code == 401
    assert FAL_KEY.split(":")[1] not in all_logs.text


def test_the_status_stream_asks_for_server_sent_events(emulator: Emulator, fal_env, clip, tmp_path: Path) -> None:
    run(clip, tmp_path)
    (stream,) = [r for r in emulator.requests if re.search(STREAM, r.path)]
    assert stream.headers["Accept"] == "text/event-stream"  # as fal's JS client asks for its streams


@pytest.mark.parametrize("fault", ["500", "drop", "ends-early"])
def test_polling_when_the_stream_fails(emulator: Emulator, fal_env, clip, tmp_path: Path, fault: str) -> None:
    if fault == "500":
        emulator.inject("GET", STREAM, 500, body={"detail": "stream unavailable"})
    elif fault == "drop":
        emulator.drop("GET", STREAM)
    else:
        emulator.inject("GET", STREAM, 200, body='data: {"status": "IN_QUEUE", "queue_position": 0}\n\n')
    result = run(clip, tmp_path)
    assert result.info["status"] == "completed" and result.extra["prompt"] == "rain on a tin roof"
    assert len(paths(emulator, "GET", STREAM)) == 1  # tried once, then polled
    polls = paths(emulator, "GET", STATUS_POLL)
    assert polls and all(status == 200 for _, status in polls)


def test_queue_position_while_other_jobs_run(emulator: Emulator, fal_env, clip_path: Path) -> None:
    emulator.concurrency["fal"] = 1
    emulator.per_model_seconds[MODEL] = 0.3
    fal, waiter = client(), Waiter()
    url = fal.upload(clip_path, waiter)
    task_ids = [fal.submit(MODEL, body_for(url), waiter) for _ in range(3)]
    seen: list[TaskState] = []
    final = fal.wait(task_ids[2], waiter, lambda state, elapsed: seen.append(state), WaitLimits())
    assert final.status == COMPLETED
    positions = [s.queue_position for s in seen if s.status == QUEUED]
    assert {0, 1} <= set(positions) and positions == sorted(positions, reverse=True)
    assert [s.status for s in seen][-2:] == [RUNNING, COMPLETED]
    first_done = emulator.task_completed_at(task_ids[1])
    assert first_done is not None and emulator.tasks.get(task_ids[2]).started >= first_done


def test_completed_with_error_is_job_failed(emulator: Emulator, fal_env, clip, tmp_path: Path) -> None:
    emulator.fail_next(MODEL, error="the runner ran out of memory")
    with pytest.raises(JobFailed) as caught:
        run(clip, tmp_path)
    message = str(caught.value)
    assert "the runner ran out of memory" in message and "runner_server_error" in message
    assert caught.value.task_id and caught.value.task_id in message
    assert not paths(emulator, "GET", RESULT)  # the status said why: no result to fetch


def test_result_answering_an_error_is_job_failed(emulator: Emulator, fal_env, clip, tmp_path: Path) -> None:
    emulator.inject("GET", RESULT, 500, body={"detail": "the video could not be decoded"})
    with pytest.raises(JobFailed) as caught:
        run(clip, tmp_path)
    assert "the video could not be decoded" in str(caught.value) and caught.value.task_id
    assert [status for _, status in paths(emulator, "GET", RESULT)] == [500]  # fal's own answer: not retried


@pytest.mark.parametrize("where", ["stream", "poll"])
def test_unknown_status_is_a_failure_not_a_loop(emulator: Emulator, fal_env, clip, tmp_path: Path, where) -> None:
    if where == "stream":
        emulator.inject("GET", STREAM, 200, body='data: {"status": "REJECTED"}\n\n')
    else:
        emulator.inject("GET", STREAM, 503, body={"detail": "no stream"})
        emulator.inject("GET", STATUS_POLL, 200, body={"status": "REJECTED"})
    started = time.monotonic()
    with pytest.raises(JobFailed, match="unknown status 'REJECTED'"):
        run(clip, tmp_path)
    assert time.monotonic() - started < 5
    assert len(paths(emulator, "GET", STATUS_POLL)) <= 1


@pytest.mark.parametrize(("field", "value", "name"), [("cfg_scale", 50, "cfg_scale"),
                                                      ("video_url", "https://example.com/a.mp4", "video")])
def test_422_names_our_input(emulator: Emulator, fal_env, clip_path: Path, field, value, name) -> None:
    fal = client()
    body = body_for(fal.upload(clip_path, Waiter()), **{field: value})
    with pytest.raises(ValidationError) as caught:
        fal.submit(MODEL, body, Waiter())
    assert caught.value.input_name == name and str(caught.value).startswith(f"{name}: ")
    assert "HTTP 422" in str(caught.value)
    assert emulator.submits() == 0


def test_bad_key_is_a_clear_401(emulator, fal_env, clip, tmp_path, monkeypatch, all_logs) -> None:
    key = "wrong-id:wrong-secret-0123456789"
    monkeypatch.setenv("FAL_KEY", key)
    with pytest.raises(ProviderError) as caught:
        run(clip, tmp_path)
    assert caught.value.status == 401 and str(caught.value) == "FAL_KEY is not valid (fal answered HTTP 401)"
    for text in (str(caught.value), repr(caught.value), all_logs.text):
        assert key not in text and key.split(":")[-1] not in text
    assert emulator.submits() == 0


@pytest.mark.parametrize("key", ["no-colon-key-0123456789", ":secret-only-0123456789", "id-only-0123456789:"])
def test_a_key_that_is_not_id_and_secret_is_caught_before_any_request(emulator, fal_env, clip, tmp_path,
                                                                      monkeypatch, all_logs, key: str) -> None:
    monkeypatch.setenv("FAL_KEY", key)
    with pytest.raises(ConfigurationError, match="not of the form key_id:key_secret") as caught:
        run(clip, tmp_path)
    for text in (str(caught.value), repr(caught.value), all_logs.text):
        assert key.strip(":") not in text
    assert not emulator.requests


def test_submit_is_never_retried(emulator: Emulator, fal_env, clip, tmp_path: Path, monkeypatch) -> None:
    """A 502 may or may not have queued a request (fal lists finished ones only): looked for until the job's
    bound (2 s here) has passed, never sent again."""
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "1")
    monkeypatch.setenv("SONIFY_RUN_TIMEOUT", "1")
    emulator.inject("POST", rf"^/{MODEL}$", 502, body={"detail": "bad gateway"})
    with pytest.raises(JobTimedOut) as caught:
        run(clip, tmp_path)
    assert "HTTP 502" in str(caught.value) and "bad gateway" in str(caught.value)
    assert paths(emulator, "POST", rf"^/{MODEL}$") == [(f"/{MODEL}", 502)]


def test_cancel_during_the_wait_reaches_fal(emulator: Emulator, fal_env, clip, tmp_path: Path) -> None:
    emulator.model_seconds = 30
    cancel_at: list[float] = []

    def on_progress(text: str, fraction: float | None) -> None:
        if text.startswith(("queued", "processing")) and not cancel_at:
            cancel_at.append(time.monotonic())

    with pytest.raises(Cancelled) as caught:
        run(clip, tmp_path, on_progress=on_progress, is_cancelled=lambda: bool(cancel_at))
    assert time.monotonic() - cancel_at[0] < 1.0
    task_id = caught.value.task_id
    assert task_id and "python -m sonify fetch fal" in str(caught.value)
    assert emulator.cancels(MODEL) == 1 and emulator.tasks.get(task_id).status == "cancelled"
    assert "fal accepted the cancel" in str(caught.value)
    assert client().cancel(task_id, Waiter()) == CancelOutcome.FINISHED  # ALREADY_COMPLETED


@pytest.mark.parametrize(("code", "word", "outcome"), [
    (200, "ALREADY_COMPLETED", CancelOutcome.FINISHED), (202, "ALREADY_COMPLETED", CancelOutcome.FINISHED),
    (200, "OK", CancelOutcome.ACCEPTED), (400, "CANCELLATION_REQUESTED", CancelOutcome.ACCEPTED),
    (200, "NOT_FOUND", None), (404, "NOT_FOUND", None),
])
def test_the_cancel_answers_body_status_says_what_came_of_it(emulator: Emulator, fal_env, clip_path: Path, code, word,
                                                             outcome) -> None:
    """fal.ai/docs/inference-api/queue/cancel: the body `status` is OK, CANCELLATION_REQUESTED, ALREADY_COMPLETED or
    NOT_FOUND, read whatever the HTTP code."""
    emulator.model_seconds = 30
    fal = client()
    task_id = fal.submit(MODEL, body_for(fal.upload(clip_path, Waiter())), Waiter())
    emulator.inject("PUT", r"/cancel$", code, body={"status": word})
    if outcome is None:
        with pytest.raises(ProviderError, match="NOT_FOUND"):
            fal.cancel(task_id, Waiter())
    else:
        assert fal.cancel(task_id, Waiter()) == outcome


def test_queue_wait_is_bounded(emulator: Emulator, fal_env, clip, tmp_path: Path, monkeypatch) -> None:
    emulator.concurrency["fal"] = 0  # nothing ever starts
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "0.3")
    with pytest.raises(JobTimedOut) as caught:
        run(clip, tmp_path)
    assert "still queued" in str(caught.value) and caught.value.task_id in str(caught.value)


def test_a_journalled_request_is_found_by_model_id(emulator: Emulator, fal_env, clip_path: Path) -> None:
    waiter = Waiter()
    submitter = client()
    task_id = submitter.submit(MODEL, body_for(submitter.upload(clip_path, waiter)), waiter)
    fresh = Fal(FAL_KEY, emulator.url, emulator.url, emulator.url)  # knows nothing of the submit
    with pytest.raises(ProviderError, match="model id"):
        fresh.state(task_id, waiter)
    state = fresh.wait(task_id, waiter, lambda s, e: None, WaitLimits(), model_id=MODEL)
    assert state.status == COMPLETED and state.outputs and state.extra["prompt"].startswith("[written by the Sonify")
    assert fresh.cancel(task_id, waiter, model_id=MODEL) == CancelOutcome.FINISHED
    with pytest.raises(ProviderError) as unknown:
        fresh.cancel("00000000-0000-4000-8000-000000000000", waiter, model_id=MODEL)
    assert unknown.value.status == 404


def test_cancel_wakes_a_quiet_stream_at_once(emulator: Emulator, fal_env, clip_path: Path) -> None:
    emulator.model_seconds = 30
    fal, flag = client(), threading.Event()
    task_id = fal.submit(MODEL, body_for(fal.upload(clip_path, Waiter())), Waiter())
    seen: list[str] = []
    worker = threading.Thread(target=lambda: seen.append(_wait_outcome(fal, task_id, flag)))
    worker.start()
    wait_until(lambda: emulator.tasks.get(task_id).status == "processing")
    flag.set()
    worker.join(2.0)
    assert seen == ["cancelled"]


def _wait_outcome(fal: Fal, task_id: str, flag: threading.Event) -> str:
    try:
        fal.wait(task_id, Waiter(flag.is_set), lambda s, e: None, WaitLimits())
    except Cancelled:
        return "cancelled"
    return "finished"
