"""The WaveSpeed client's error paths, through the real pipeline and the emulator; and the key
never shows up in an error or a log record."""

from __future__ import annotations

import logging

import pytest

from sonify import pipeline
from sonify.catalog import MMAUDIO_V2
from sonify.errors import JobFailed, ProviderError

MODEL = MMAUDIO_V2.model_id


@pytest.fixture
def all_logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def run(clip, tmp_path, **params):
    return pipeline.run(MMAUDIO_V2, {"prompt": "rain", **params}, clip, out_dir=tmp_path / "out")


def assert_no_key(key: str, *texts: str) -> None:
    for text in texts:
        assert key not in text


def test_bad_key_is_a_clear_401(emulator, wavespeed_env, clip, tmp_path, monkeypatch, all_logs):
    wrong = "ws-wrong-key-0123456789abcdef"
    monkeypatch.setenv("WAVESPEED_API_KEY", wrong)
    with pytest.raises(ProviderError) as caught:
        run(clip, tmp_path)
    assert caught.value.status == 401
    assert "WAVESPEED_API_KEY is not valid" in str(caught.value)
    assert emulator.submits() == 0
    assert_no_key(wrong, str(caught.value), repr(caught.value), all_logs.text)


def test_failed_task_carries_the_provider_message_and_task_id(emulator, wavespeed_env, clip, tmp_path, all_logs):
    emulator.fail_next(MODEL, error="content moderation flagged the input", code=1200)
    with pytest.raises(JobFailed) as caught:
        run(clip, tmp_path)
    message = str(caught.value)
    assert "content moderation flagged the input" in message
    assert caught.value.task_id and caught.value.task_id in message
    assert emulator.submits() == 1
    assert_no_key(wavespeed_env["WAVESPEED_API_KEY"], message, all_logs.text)


def test_5xx_on_poll_then_success(emulator, wavespeed_env, clip, tmp_path, all_logs):
    emulator.inject("GET", r"/api/v3/predictions/.*/result", 503, times=2)
    emulator.inject("GET", r"/api/v3/predictions/.*/result", 429, times=1, retry_after=0)
    result = run(clip, tmp_path)
    assert result.info["status"] == "completed"
    statuses = [r.status for r in emulator.requests if r.path.endswith("/result")]
    assert statuses[:3] == [503, 503, 429] and statuses[-1] == 200
    assert emulator.submits() == 1  # polls were retried, the submit never was
    assert_no_key(wavespeed_env["WAVESPEED_API_KEY"], all_logs.text, str(result.info))


def test_submit_is_not_retried_on_5xx(emulator, wavespeed_env, clip, tmp_path):
    emulator.inject("POST", rf"/api/v3/{MODEL}$", 502, times=1)
    with pytest.raises(ProviderError) as caught:
        run(clip, tmp_path)
    assert caught.value.status == 502
    assert [r.status for r in emulator.requests if r.method == "POST" and r.path.endswith(MODEL)] == [502]


def test_legacy_upload_when_the_ticket_route_is_missing(emulator, wavespeed_env, clip, tmp_path):
    emulator.inject("POST", r"/api/v3/media/uploads$", 404, times=1)
    result = run(clip, tmp_path)
    assert result.info["status"] == "completed"
    assert any(r.path == "/api/v3/media/upload/binary" and r.status == 200 for r in emulator.requests)


def test_key_is_sent_only_to_the_api(emulator, wavespeed_env, clip, tmp_path):
    run(clip, tmp_path)
    for record in emulator.requests:
        assert record.authorized == record.path.startswith("/api/v3/"), record.path
