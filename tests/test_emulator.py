"""The emulator speaks WaveSpeed's REST v3: checked with the official `wavespeed` SDK and raw HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests
import wavespeed

from sonify import media
from sonify_devtools.emulator import Emulator, serve_forever

KEY = "ws-test-3f9a7c1e5b2d8046"  # the emulator's default
MMAUDIO = "wavespeed-ai/mmaudio-v2"
LIPSYNC = "sync/lipsync-1.9.0-beta"
KLING = "kwaivgi/kling-video-to-audio"


# ---------------------------------------------------------------- helpers


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """1 s, 24 fps, 64×48: a white square that moves."""
    frames = np.zeros((24, 48, 64, 3), np.float32)
    for i in range(24):
        frames[i, 16:32, 2 * i : 2 * i + 16] = 1.0
    path = tmp_path / "clip.mp4"
    media.frames_to_mp4(frames, Fraction(24), path)
    return path


def client(emulator: Emulator, key: str = KEY) -> wavespeed.Client:
    return wavespeed.Client(api_key=key, base_url=emulator.url, retry_interval=0.01, max_connection_retries=3)


def api(emulator: Emulator, method: str, path: str, key: str | None = KEY, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return requests.request(method, emulator.url + path, headers=headers, timeout=30, **kwargs)


def submit(emulator: Emulator, model: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = api(emulator, "POST", f"/api/v3/{model}", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def result(emulator: Emulator, task_id: str) -> dict[str, Any]:
    answer = api(emulator, "GET", f"/api/v3/predictions/{task_id}/result")
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def poll_until(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    """The first truthy value of condition(), polled in a bounded loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout} s")


def final_result(emulator: Emulator, task_id: str) -> dict[str, Any]:
    return poll_until(lambda: (data := result(emulator, task_id))["status"] in ("completed", "failed") and data)


def audio_streams(path_or_bytes: Path | bytes, tmp_path: Path, suffix: str = ".mp4") -> int:
    path = path_or_bytes if isinstance(path_or_bytes, Path) else tmp_path / f"download{suffix}"
    if isinstance(path_or_bytes, bytes):
        path.write_bytes(path_or_bytes)
    with av.open(str(path)) as container:
        return len(container.streams.audio)


# ---------------------------------------------------------------- conformance with the official SDK


def test_sdk_upload_run_and_download(emulator: Emulator, clip: Path, tmp_path: Path) -> None:
    sdk = client(emulator)
    url = sdk.upload(str(clip))
    assert url.startswith(emulator.files_url + "/files/") and emulator.files_url != emulator.url
    output = sdk.run(MMAUDIO, {"video": url, "prompt": "rain", "duration": 2}, poll_interval=0.1, timeout=30)
    [output_url] = output["outputs"]
    assert output_url.startswith(emulator.files_url + "/outputs/") and "/emulator-" in output_url
    download = requests.get(output_url, timeout=30)  # no auth, like a CDN
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "video/mp4"
    assert int(download.headers["Content-Length"]) == len(download.content)
    assert download.headers["X-Sonify-Emulator"] == "1"
    assert audio_streams(download.content, tmp_path) == 1
    assert emulator.submits(MMAUDIO) == 1 and emulator.submits() == 1
    for record in emulator.requests:  # the SDK sends its key to the API only, never to storage
        assert record.authorized == record.path.startswith("/api/v3/"), record.path


def test_sdk_sync_mode(emulator: Emulator, clip: Path, tmp_path: Path) -> None:
    sdk = client(emulator)
    url = sdk.upload(str(clip))
    output = sdk.run("wavespeed-ai/think-sound", {"video": url}, enable_sync_mode=True, timeout=30)
    [output_url] = output["outputs"]
    assert audio_streams(requests.get(output_url, timeout=30).content, tmp_path) == 1
    assert not any(r.path.endswith("/result") for r in emulator.requests)  # the POST alone carried the result


def test_sdk_sees_a_sync_mode_timeout_as_processing(emulator: Emulator, clip: Path) -> None:
    emulator.sync_timeout = 0.05
    emulator.model_seconds = 1.0
    sdk = client(emulator)
    outcome = sdk.run_no_throw(MMAUDIO, {"video": sdk.upload(str(clip)), "prompt": "rain"}, enable_sync_mode=True)
    assert outcome["status"] == "processing" and "Sync mode timed out" in outcome["error"]
    assert final_result(emulator, outcome["task_id"])["status"] == "completed"


def test_sdk_reports_a_failed_task(emulator: Emulator, clip: Path) -> None:
    emulator.fail_next(MMAUDIO, error="content moderation flagged the input", code=1200)
    sdk = client(emulator)
    with pytest.raises(RuntimeError, match="content moderation flagged the input"):
        sdk.run(MMAUDIO, {"video": sdk.upload(str(clip)), "prompt": "rain"}, poll_interval=0.05, timeout=30)


def test_sdk_rides_out_two_injected_503s(emulator: Emulator, clip: Path) -> None:
    emulator.inject("GET", r"/api/v3/predictions/[^/]+/result$", 503, times=2)
    sdk = client(emulator)
    output = sdk.run(MMAUDIO, {"video": sdk.upload(str(clip)), "prompt": "rain"}, poll_interval=0.05, timeout=30)
    assert len(output["outputs"]) == 1
    statuses = [r.status for r in emulator.requests if r.path.endswith("/result")]
    assert statuses[:2] == [503, 503] and statuses[-1] == 200


# ---------------------------------------------------------------- task life


def test_status_flow_and_completion_time(emulator: Emulator, clip: Path) -> None:
    emulator.per_model_seconds[MMAUDIO] = 0.6
    url = client(emulator).upload(str(clip))
    submitted = time.monotonic()
    data = submit(emulator, MMAUDIO, {"video": url, "prompt": "rain", "duration": 1, "webhook": "http://x"})
    assert data["status"] == "created" and data["outputs"] == [] and data["model"] == MMAUDIO
    assert data["urls"]["get"] == f"{emulator.url}/api/v3/predictions/{data['id']}/result"
    assert emulator.task_completed_at(data["id"]) is None
    seen = [data["status"]]

    def completed() -> dict[str, Any] | None:
        now = result(emulator, data["id"])
        if now["status"] != seen[-1]:
            seen.append(now["status"])
        return now if now["status"] == "completed" else None

    done = poll_until(completed)
    assert seen == ["created", "processing", "completed"]
    assert len(done["outputs"]) == 1 and done["error"] == "" and done["timings"]["inference"] > 0
    completed_at = emulator.task_completed_at(data["id"])
    assert completed_at is not None and completed_at - submitted >= 0.6


def test_audio_format_per_model(emulator: Emulator, clip: Path, tmp_path: Path) -> None:
    emulator.formats[MMAUDIO] = "wav"
    url = client(emulator).upload(str(clip))
    done = final_result(emulator, submit(emulator, MMAUDIO, {"video": url, "prompt": "rain", "duration": 1})["id"])
    [output_url] = done["outputs"]
    assert output_url.endswith(".wav")
    head = requests.head(output_url, timeout=30)
    assert head.headers["Content-Type"] == "audio/wav" and int(head.headers["Content-Length"]) > 44
    assert audio_streams(requests.get(output_url, timeout=30).content, tmp_path, ".wav") == 1


def test_failed_task_is_http_200_with_the_error(emulator: Emulator, clip: Path) -> None:
    emulator.fail_next(MMAUDIO, error="task failed upstream", code=1403)
    url = client(emulator).upload(str(clip))
    done = final_result(emulator, submit(emulator, MMAUDIO, {"video": url, "prompt": "rain"})["id"])
    assert (done["status"], done["error"], done["code"]) == ("failed", "task failed upstream", 1403)
    assert done["outputs"] == []
    second = final_result(emulator, submit(emulator, MMAUDIO, {"video": url, "prompt": "rain"})["id"])
    assert second["status"] == "completed"  # fail_next applies to one task only


def test_synth_error_fails_the_task_with_code_5000(emulator: Emulator, tmp_path: Path) -> None:
    not_a_video = tmp_path / "broken.mp4"
    not_a_video.write_bytes(b"this is not a video" * 100)
    url = client(emulator).upload(str(not_a_video))
    done = final_result(emulator, submit(emulator, MMAUDIO, {"video": url, "prompt": "rain"})["id"])
    assert done["status"] == "failed" and done["code"] == 5000 and done["error"]


def test_media_urls_off_this_machine_are_never_fetched(emulator: Emulator) -> None:
    task = submit(emulator, MMAUDIO, {"video": "https://example.com/a.mp4", "prompt": "x"})
    done = final_result(emulator, task["id"])
    assert done["status"] == "failed" and done["code"] == 1402 and done["error"].startswith("video:")


def test_media_from_another_loopback_server_is_fetched(emulator: Emulator, clip: Path) -> None:
    with Emulator().start() as other:
        url = client(other).upload(str(clip))
        done = final_result(emulator, submit(emulator, MMAUDIO, {"video": url, "prompt": "rain", "duration": 1})["id"])
    assert done["status"] == "completed"


def test_kling_refuses_a_clip_shorter_than_3_s(emulator: Emulator, clip: Path) -> None:
    url = client(emulator).upload(str(clip))
    done = final_result(emulator, submit(emulator, KLING, {"video": url})["id"])
    assert done["status"] == "failed" and done["code"] == 1401 and "3" in done["error"]


def test_unknown_prediction_is_404(emulator: Emulator) -> None:
    answer = api(emulator, "GET", "/api/v3/predictions/0123456789abcdef0123456789abcdef/result")
    assert answer.status_code == 404 and answer.json()["code"] == 404


# ---------------------------------------------------------------- auth and validation


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789", ""])
def test_bad_or_missing_key_is_401_without_the_key(emulator: Emulator, key: str | None) -> None:
    answer = api(emulator, "POST", f"/api/v3/{MMAUDIO}", key=key, json={"video": "http://127.0.0.1/x", "prompt": "x"})
    assert answer.status_code == 401
    body = answer.json()
    assert body["code"] == 401 and body["message"] == "Invalid API key"
    assert not key or key not in answer.text
    assert emulator.submits() == 0
    [record] = emulator.requests
    assert record.status == 401 and record.authorized == (key is not None)
    assert "Authorization" not in record.headers and (not key or key not in repr(emulator.requests))


def test_valid_key_is_never_recorded(emulator: Emulator) -> None:
    assert api(emulator, "GET", "/api/v3/balance").json()["data"]["balance"] > 0
    [record] = emulator.requests
    assert record.authorized and record.status == 200 and KEY not in repr(record)


@pytest.mark.parametrize(
    "model,body,field",
    [
        (MMAUDIO, {"video": "{url}", "prompt": "rain", "duration": 0}, "duration"),
        (MMAUDIO, {"video": "{url}", "prompt": "rain", "duration": 31}, "duration"),
        (MMAUDIO, {"video": "{url}"}, "prompt"),
        (MMAUDIO, {"video": "{url}", "prompt": "rain", "guidance_scale": "high"}, "guidance_scale"),
        (MMAUDIO, {"video": "{url}", "prompt": "rain", "foo": 1}, "foo"),
        (MMAUDIO, {"prompt": "rain"}, "video"),
        (MMAUDIO, {"video": "file:///etc/passwd", "prompt": "rain"}, "video"),
        (MMAUDIO, {"video": "{url}", "prompt": "rain", "enable_sync_mode": "yes"}, "enable_sync_mode"),
        (LIPSYNC, {"video": "{url}"}, "audio"),
        (LIPSYNC, {"video": "{url}", "audio": "{url}", "sync_mode": "stretch"}, "sync_mode"),
        (KLING, {"video": "{url}", "bgm_prompt": "x" * 201}, "bgm_prompt"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(emulator: Emulator, model: str, body: dict, field: str) -> None:
    url = f"{emulator.files_url}/files/0123456789abcdef0123456789abcdef/y.mp4"
    body = {k: v.replace("{url}", url) if isinstance(v, str) else v for k, v in body.items()}
    answer = api(emulator, "POST", f"/api/v3/{model}", json=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == 400 and answer.json()["data"] is None
    assert answer.json()["message"].startswith(f"{field}: ")
    assert emulator.submits() == 0


@pytest.mark.parametrize("model", ["acme/unknown-model", "fal-ai/thinksound"])
def test_unknown_model_is_404(emulator: Emulator, model: str) -> None:
    answer = api(emulator, "POST", f"/api/v3/{model}", json={"video": "http://127.0.0.1/x.mp4"})
    assert answer.status_code == 404 and answer.json()["code"] == 404 and model in answer.json()["message"]


def test_other_api_paths_need_the_key_too(emulator: Emulator) -> None:
    assert api(emulator, "GET", "/api/v3/whatever", key=None).status_code == 401
    assert api(emulator, "GET", "/api/v3/whatever").status_code == 404


def test_api_and_files_live_on_separate_origins(emulator: Emulator) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    assert requests.get(emulator.files_url + "/api/v3/balance", headers=headers, timeout=30).status_code == 404
    assert api(emulator, "GET", "/files/0123456789abcdef0123456789abcdef/a.mp4").status_code == 404


# ---------------------------------------------------------------- uploads


def ticket(emulator: Emulator, size: int, filename: str = "clip.mp4") -> dict[str, Any]:
    body = {"filename": filename, "size": size, "content_type": "video/mp4"}
    answer = api(emulator, "POST", "/api/v3/media/uploads", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_upload_put_must_use_exactly_the_handed_out_headers(emulator: Emulator, clip: Path) -> None:
    content = clip.read_bytes()
    data = ticket(emulator, len(content))
    put_url, headers = data["upload"]["url"], data["upload"]["headers"]
    assert data["upload"]["method"] == "PUT" and headers == {"Content-Type": "video/mp4"}
    assert requests.get(data["download_url"], timeout=30).status_code == 404  # nothing uploaded yet
    wrong_type = requests.put(put_url, data=content, headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert wrong_type.status_code == 403
    with_key = requests.put(put_url, data=content, headers={**headers, "Authorization": f"Bearer {KEY}"}, timeout=30)
    assert with_key.status_code == 400
    wrong_size = requests.put(put_url, data=content[:-1], headers=headers, timeout=30)
    assert wrong_size.status_code == 400
    assert requests.put(put_url, data=content, headers=headers, timeout=30).status_code == 200
    download = requests.get(data["download_url"], timeout=30)
    assert download.content == content and download.headers["Content-Type"] == "video/mp4"


def test_upload_ticket_validates_its_fields(emulator: Emulator) -> None:
    for body in ({"size": 10}, {"filename": "a.mp4", "size": 0}, {"filename": "a.mp4", "size": "10"}):
        answer = api(emulator, "POST", "/api/v3/media/uploads", json=body)
        assert answer.status_code == 400 and answer.json()["code"] == 400


def test_legacy_multipart_upload(emulator: Emulator, clip: Path) -> None:
    content = clip.read_bytes()
    files = {"file": ("my clip.mp4", content, "video/mp4")}
    answer = api(emulator, "POST", "/api/v3/media/upload/binary", files=files, data={"note": "x"})
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert (data["type"], data["filename"], data["size"]) == ("video/mp4", "my_clip.mp4", len(content))
    assert requests.get(data["download_url"], timeout=30).content == content
    done = final_result(emulator, submit(emulator, MMAUDIO, {"video": data["download_url"], "prompt": "rain"})["id"])
    assert done["status"] == "completed"


def test_legacy_upload_streams_binary_data_intact(emulator: Emulator) -> None:
    """Spans several read chunks and holds boundary-like bytes: the parser must not cut there."""
    content = (np.random.default_rng(7).integers(0, 256, 700_000, dtype=np.uint8).tobytes() + b"\r\n--") * 2
    answer = api(emulator, "POST", "/api/v3/media/upload/binary", files={"file": ("noise.bin", content)})
    assert answer.status_code == 200, answer.text
    assert requests.get(answer.json()["data"]["download_url"], timeout=30).content == content


def test_a_refused_body_leaves_the_kept_alive_connection_usable(emulator: Emulator) -> None:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {KEY}"
        bad = session.post(
            emulator.url + "/api/v3/media/upload/binary",
            data=b"--abc\r\nno headers end here" * 100,
            headers={"Content-Type": "multipart/form-data; boundary=abc"},
            timeout=30,
        )
        assert bad.status_code == 400
        assert session.get(emulator.url + "/api/v3/balance", timeout=30).status_code == 200


def test_legacy_upload_without_a_file_is_400(emulator: Emulator) -> None:
    answer = api(emulator, "POST", "/api/v3/media/upload/binary", files={"other": ("a.mp4", b"abc")})
    assert answer.status_code == 400 and answer.json()["message"].startswith("file: ")


# ---------------------------------------------------------------- faults


def test_injected_503_twice_then_the_real_answer(emulator: Emulator) -> None:
    emulator.inject("GET", r"/balance$", 503, times=2, retry_after=1)
    for _ in range(2):
        answer = api(emulator, "GET", "/api/v3/balance")
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1" and answer.json()["code"] == 503
    assert api(emulator, "GET", "/api/v3/balance").status_code == 200
    assert [(r.status, r.fault) for r in emulator.requests] == [(503, "inject"), (503, "inject"), (200, None)]


def test_injected_malformed_body(emulator: Emulator) -> None:
    emulator.inject("GET", r"/balance$", 200, body="<html>gateway</html>")
    answer = api(emulator, "GET", "/api/v3/balance")
    assert answer.status_code == 200 and answer.text == "<html>gateway</html>"


def test_dropped_connection(emulator: Emulator) -> None:
    emulator.drop("POST", rf"/api/v3/{MMAUDIO}$")
    with pytest.raises(requests.ConnectionError):
        api(emulator, "POST", f"/api/v3/{MMAUDIO}", json={"prompt": "x"})
    assert api(emulator, "GET", "/api/v3/balance").status_code == 200
    assert [(r.status, r.fault) for r in emulator.requests] == [(None, "drop"), (200, None)]
    assert emulator.submits() == 0


# ---------------------------------------------------------------- life cycle


def test_stop_is_prompt_and_removes_private_files(clip: Path) -> None:
    emulator = Emulator(model_seconds=30).start()
    root = emulator.storage.root
    url = client(emulator).upload(str(clip))
    task_id = submit(emulator, MMAUDIO, {"video": url, "prompt": "rain"})["id"]
    session = requests.Session()  # a kept-alive connection must not hold stop() up
    assert session.get(emulator.url + "/api/v3/balance", headers={"Authorization": f"Bearer {KEY}"}).ok
    waiting: list[requests.Response | Exception] = []

    def sync_submit() -> None:
        body = {"video": url, "prompt": "x", "enable_sync_mode": True}
        try:
            waiting.append(api(emulator, "POST", f"/api/v3/{MMAUDIO}", json=body))
        except requests.RequestException as e:
            waiting.append(e)

    thread = threading.Thread(target=sync_submit, daemon=True)
    thread.start()
    poll_until(lambda: emulator.submits() == 2)
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert waiting and not root.exists() and emulator.task_completed_at(task_id) is None
    port = int(emulator.url.rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    session.close()


def test_serve_forever_returns_once_stopped() -> None:
    ready: list[Emulator] = []
    done: list[Emulator] = []
    thread = threading.Thread(target=lambda: done.append(serve_forever(0, on_ready=ready.append)), daemon=True)
    thread.start()
    emulator = poll_until(lambda: ready and ready[0])
    assert api(emulator, "GET", "/api/v3/balance").status_code == 200
    emulator.stop()
    thread.join(5)
    assert done == [emulator]


def test_state_dir_is_kept(tmp_path: Path, clip: Path) -> None:
    with Emulator(state_dir=tmp_path / "emu").start() as emulator:
        url = client(emulator).upload(str(clip))
    assert url.rsplit("/", 1)[1] == "clip.mp4"
    assert any(p.name == "clip.mp4" for p in (tmp_path / "emu").rglob("*"))
