"""The fault matrix, for both providers, through the real pipeline against the emulator's switchboard.

Transient faults: the job completes, each submit is sent once (only a 429 — which creates nothing —
is answered by sending it again). Permanent faults: a clear SonifyError within a bounded time, with
the provider's message and the task id once a task exists. Downloads: https (or loopback http),
bounded redirects, a size cap.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
from clips import write_clip

from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL, ModelSpec
from sonify.errors import JobFailed, JobTimedOut, ProviderError, SonifyError, ValidationError
from sonify.net import http
from sonify_devtools.emulator import Emulator

BOUND = 10.0  # seconds: every permanent fault ends the job within this


@dataclass(frozen=True)
class Provider:
    name: str
    spec: ModelSpec
    submit: str  # path regexes on the emulator
    poll: str  # the status route a job waits on (fal: its event stream)
    upload: str  # the upload route that carries the bytes
    bad_request: int  # the provider's validation status
    bad_request_body: dict

    @property
    def model(self) -> str:
        return self.spec.model_id


WAVESPEED = Provider(
    "wavespeed", MMAUDIO_V2, rf"^/api/v3/{MMAUDIO_V2.model_id}$", r"^/api/v3/predictions/[^/]+/result$",
    r"^/storage/put/", 400, {"code": 400, "message": "prompt: contains a forbidden word", "data": None},
)
FAL = Provider(
    "fal", THINKSOUND_FAL, rf"^/{THINKSOUND_FAL.model_id}$", r"/requests/[^/]+/status/stream$",
    r"^/files/upload$", 422,
    {"detail": [{"loc": ["body", "prompt"], "msg": "contains a forbidden word", "type": "value_error"}]},
)
FAL_POLL = r"/requests/[^/]+/status$"
OUTPUT = r"^/outputs/"


@pytest.fixture(params=[WAVESPEED, FAL], ids=lambda p: p.name)
def provider(request: pytest.FixtureRequest) -> Provider:
    env = "wavespeed_env" if request.param.name == "wavespeed" else "fal_env"
    request.getfixturevalue(env)
    return request.param


@pytest.fixture
def clip(tmp_path: Path) -> media.VideoSource:
    return media.VideoSource(path=str(write_clip(tmp_path / "clip.mp4", 12, Fraction(24), 64, 48, flash_at=(5,))))


def run(provider: Provider, clip: media.VideoSource, tmp_path: Path) -> pipeline.Result:
    return pipeline.run(provider.spec, {"prompt": "rain on a tin roof"}, clip, out_dir=tmp_path / "out")


def fails(provider: Provider, clip: media.VideoSource, tmp_path: Path, kind: type[SonifyError] = SonifyError,
          bound: float = BOUND) -> SonifyError:
    """Run a job that must fail: within `bound` seconds, with a SonifyError of `kind` whose message is
    one clear sentence (no traceback)."""
    start = time.monotonic()
    with pytest.raises(kind) as caught:
        run(provider, clip, tmp_path)
    assert time.monotonic() - start < bound
    message = str(caught.value)
    assert message and "Traceback" not in message and "\n" not in message
    return caught.value


def assert_task_named(error: SonifyError, provider: Provider) -> None:
    assert error.task_id and error.task_id in str(error)
    assert f"python -m sonify fetch {provider.name} {error.task_id}" in str(error)


def statuses(emulator: Emulator, method: str, regex: str) -> list[int | None]:
    return [r.status for r in emulator.requests if r.method == method and re.search(regex, r.path)]


def journal_rows(env_state: Path) -> list[dict]:
    with sqlite3.connect(env_state / "jobs.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY id")]


def short_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2 s queue-and-run bound: how long a lost fal submit's request is looked for (fal lists finished ones only)."""
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "1")
    monkeypatch.setenv("SONIFY_RUN_TIMEOUT", "1")


def unanswered(provider: Provider, error: SonifyError, state: Path) -> None:
    """A submit without a usable answer that created no task. WaveSpeed's listing shows unfinished tasks too: none
    listed, none was created, nothing to remember. fal's shows finished requests only: looked for until the bound,
    then the row stays open (a request may still be queued) and nothing is claimed uncharged."""
    if provider.name == "wavespeed":
        assert "lists no task from this submit, so none was created" in str(error)
        assert journal_rows(state) == []  # nothing to resume or to ask about
        return
    assert isinstance(error, JobTimedOut) and "lists a request only once it has finished" in str(error)
    assert "none was created" not in str(error) and "nothing is charged" not in str(error)
    assert [row["status"] for row in journal_rows(state)] == ["unknown"]


def completed_once(emulator: Emulator, provider: Provider, result: pipeline.Result) -> None:
    assert result.info["status"] == "completed" and result.video_path is not None and result.video_path.is_file()
    assert result.audio.shape[1] == round(Fraction(12, 24) * result.sample_rate)
    assert emulator.submits(provider.model) == 1
    assert statuses(emulator, "POST", provider.submit).count(200) == 1


# ---------------------------------------------------------------- transient faults: the job completes


@pytest.mark.parametrize("retry_after", [0.2, None], ids=["retry-after", "no-retry-after"])
def test_429_everywhere_then_success(emulator, provider, clip, tmp_path, retry_after) -> None:
    for method, regex in (("PUT" if provider.name == "wavespeed" else "POST", provider.upload),
                          ("POST", provider.submit), ("GET", provider.poll), ("GET", OUTPUT)):
        emulator.inject(method, regex, 429, retry_after=retry_after,
                        body={"detail": "rate limited"} if provider.name == "fal" else None)
    result = run(provider, clip, tmp_path)
    completed_once(emulator, provider, result)
    assert statuses(emulator, "POST", provider.submit) == [429, 200]  # a refused submit created nothing


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_upload_poll_and_download(emulator, provider, clip, tmp_path, status) -> None:
    if provider.name == "wavespeed":
        emulator.inject("POST", r"^/api/v3/media/uploads$", status)
        emulator.inject("PUT", provider.upload, status)
        emulator.inject("GET", provider.poll, status, times=2)
    else:
        emulator.inject("POST", r"^/storage/auth/token$", status, body={"detail": "cdn down"})  # -> storage upload
        emulator.inject("PUT", r"^/storage/put/", status)
        emulator.inject("GET", provider.poll, status, body={"detail": "no stream"})  # -> polling
        emulator.inject("GET", FAL_POLL, status, times=2)
    emulator.inject("GET", OUTPUT, status)
    result = run(provider, clip, tmp_path)
    completed_once(emulator, provider, result)
    assert statuses(emulator, "GET", OUTPUT) == [status, 200]


def test_connection_reset_during_poll_and_download(emulator, provider, clip, tmp_path) -> None:
    emulator.drop("GET", provider.poll)
    if provider.name == "fal":
        emulator.drop("GET", FAL_POLL)  # the stream dropped: polling, whose first answer is lost too
    emulator.drop("GET", OUTPUT)
    emulator.truncate("GET", OUTPUT, keep=200)
    result = run(provider, clip, tmp_path)
    completed_once(emulator, provider, result)
    assert [r.fault for r in emulator.requests if re.search(OUTPUT, r.path)] == ["drop", "truncate", None]


def test_truncated_download_is_never_kept(emulator, provider, clip, tmp_path) -> None:
    emulator.truncate("GET", OUTPUT, keep=1000, times=2)
    result = run(provider, clip, tmp_path)
    completed_once(emulator, provider, result)
    kept = Path(result.info["result_file"])
    served = emulator.storage.output_dir(result.info["task_id"]) / Path(result.info["outputs"][0]).name
    assert kept.read_bytes() == served.read_bytes()
    assert not list(kept.parent.glob(".*"))  # no partial file left (atomic.atomically names them .<stem>-<id>)
    assert [r.fault for r in emulator.requests if re.search(OUTPUT, r.path)] == ["truncate", "truncate", None]


def test_slow_upload_and_slow_answers(emulator, provider, clip, tmp_path) -> None:
    emulator.delay("*", provider.upload, 1.0)
    emulator.delay("GET", OUTPUT, 0.5)
    result = run(provider, clip, tmp_path)
    completed_once(emulator, provider, result)
    assert result.info["seconds"]["upload"] >= 1.0


def test_a_submit_dropped_before_the_provider_saw_it_is_never_resent(emulator, provider, clip, tmp_path,
                                                                     monkeypatch) -> None:
    """No answer, and the provider's listing shows no task from it: nothing is resent."""
    short_bound(monkeypatch)
    emulator.drop("POST", provider.submit)
    error = fails(provider, clip, tmp_path)
    unanswered(provider, error, tmp_path / "state")
    assert statuses(emulator, "POST", provider.submit) == [None] and emulator.submits() == 0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_submit_is_never_resent(emulator, provider, clip, tmp_path, status, monkeypatch) -> None:
    short_bound(monkeypatch)
    emulator.inject("POST", provider.submit, status)
    error = fails(provider, clip, tmp_path)
    assert f"HTTP {status}" in str(error) and getattr(error, "status", status) == status
    unanswered(provider, error, tmp_path / "state")
    assert statuses(emulator, "POST", provider.submit) == [status]


def test_backoff_is_jittered_bounded_and_honours_retry_after() -> None:
    for attempt in range(1, 8):
        delays = {http.backoff(attempt) for _ in range(50)}
        cap = min(0.5 * 2 ** (attempt - 1), 8.0)
        assert len(delays) > 1 and all(cap / 2 <= d <= cap for d in delays)
    assert http.backoff(1, retry_after=3.0) == 3.0
    assert http.backoff(1, retry_after=3600.0) == 60.0  # a bad header cannot stall a job


def test_429_without_end_is_a_clear_error(emulator, provider, clip, tmp_path, monkeypatch) -> None:
    """A refused submit created nothing, so it is sent again — until the job's queue bound, then a clear error."""
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "1")
    emulator.inject("POST", provider.submit, 429, times=1000, retry_after=0.2)
    error = fails(provider, clip, tmp_path, JobTimedOut)
    # (at once when the last Retry-After ends past the bound: waiting for it would be in vain)
    assert re.search(r"(waited 1 s \(SONIFY_QUEUE_TIMEOUT\) for a submit slot|the next submit slot at \w+ comes only "
                     r"after this job's 1 s \(SONIFY_QUEUE_TIMEOUT\))", str(error)) and "answered 429" in str(error)
    assert "nothing was created or charged" in str(error)
    assert 2 <= statuses(emulator, "POST", provider.submit).count(429) <= 6  # each after its Retry-After
    assert emulator.submits(provider.model) == 0
    assert journal_rows(Path(tmp_path / "state")) == []  # nothing was created: nothing to remember


# ---------------------------------------------------------------- permanent faults: a clear error, in bounded time


def test_401_bad_key(emulator, provider, clip, tmp_path, monkeypatch) -> None:
    if provider.name == "wavespeed":
        monkeypatch.setenv("WAVESPEED_API_KEY", "ws-not-a-key-0123456789")
    else:
        monkeypatch.setenv("FAL_KEY", "not-an-id:not-a-secret")
    error = fails(provider, clip, tmp_path, ProviderError)
    assert error.status == 401 and "is not valid" in str(error)
    assert emulator.submits() == 0


def test_403_account(emulator, provider, clip, tmp_path) -> None:
    body = {"detail": "User is locked: exhausted balance"} if provider.name == "fal" else {
        "code": 403, "message": "Insufficient balance", "data": None}
    emulator.inject("POST", provider.submit, 403, body=body)
    error = fails(provider, clip, tmp_path, ProviderError)
    assert error.status == 403 and ("balance" in str(error)) and "check the account" in str(error)


def test_validation_refused_by_the_provider(emulator, provider, clip, tmp_path) -> None:
    emulator.inject("POST", provider.submit, provider.bad_request, body=provider.bad_request_body)
    error = fails(provider, clip, tmp_path)
    assert "contains a forbidden word" in str(error) and "prompt" in str(error)
    if provider.name == "fal":
        assert isinstance(error, ValidationError) and error.input_name == "prompt"
    assert emulator.submits() == 0


@pytest.mark.parametrize("message,code", [("Emulated task failure", 1403),
                                          ("content flagged by the moderation filter", 1200)])
def test_failed_task_and_moderation(emulator, provider, clip, tmp_path, message, code) -> None:
    emulator.fail_next(provider.model, error=message, code=code)
    error = fails(provider, clip, tmp_path, JobFailed)
    assert message in str(error)
    assert_task_named(error, provider)
    assert journal_rows(Path(tmp_path / "state"))[-1]["status"] == "failed"


def test_unknown_status_is_final(emulator, provider, clip, tmp_path) -> None:
    word = "rejected" if provider.name == "wavespeed" else "REJECTED"
    emulator.report_next(provider.model, word)
    error = fails(provider, clip, tmp_path, JobFailed)
    assert f"unknown status '{word}'" in str(error)
    assert_task_named(error, provider)


def test_malformed_status_body(emulator, provider, clip, tmp_path) -> None:
    if provider.name == "fal":
        emulator.malformed("GET", provider.poll)  # an event stream that is not one: polling, which is malformed too
        emulator.malformed("GET", FAL_POLL)
    else:
        emulator.malformed("GET", provider.poll)
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "not JSON" in str(error)
    assert_task_named(error, provider)
    assert journal_rows(Path(tmp_path / "state"))[-1]["status"] == "detached"  # fetch can still get it


def test_malformed_submit_answer_may_have_created_a_task(emulator, provider, clip, tmp_path, monkeypatch) -> None:
    short_bound(monkeypatch)
    emulator.malformed("POST", provider.submit)  # the emulator's malformed answer comes before any task
    error = fails(provider, clip, tmp_path)
    assert "not JSON" in str(error)
    unanswered(provider, error, tmp_path / "state")


def test_an_unreadable_listing_after_a_lost_answer_says_check_the_dashboard(emulator, provider, clip, tmp_path) -> None:
    emulator.lose("POST", provider.submit)
    emulator.inject("*", r"^/api/v3/predictions$|/v1/models/requests/by-endpoint$", 401)
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "may have been created anyway" in str(error) and "dashboard" in str(error)
    assert emulator.submits() == 1 and journal_rows(Path(tmp_path / "state"))[-1]["status"] == "unknown"


def test_output_that_is_not_media(emulator, provider, clip, tmp_path) -> None:
    emulator.inject("GET", OUTPUT, 200, body=b"<html>Access denied</html>")
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "not usable audio" in str(error)
    assert_task_named(error, provider)


def test_output_that_is_not_media_is_fetched_again_not_reused(emulator, provider, clip, tmp_path) -> None:
    emulator.inject("GET", OUTPUT, 200, body=b"<html>try again later</html>")
    fails(provider, clip, tmp_path, ProviderError)
    result = run(provider, clip, tmp_path)  # resumes the same task: downloads again, submits nothing
    assert result.info["resumed"] and emulator.submits(provider.model) == 1
    assert result.info["status"] == "completed"


def test_output_over_the_size_cap(emulator, provider, clip, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SONIFY_MAX_DOWNLOAD_MB", "0.001")
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "SONIFY_MAX_DOWNLOAD_MB" in str(error)
    assert_task_named(error, provider)
    assert not list((tmp_path / "state" / "results").glob("*"))


def test_queue_that_never_starts(emulator, provider, clip, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "1")
    emulator.stick_next(provider.model)
    error = fails(provider, clip, tmp_path, JobTimedOut)
    assert "still queued after 1 s" in str(error)
    assert_task_named(error, provider)
    assert journal_rows(Path(tmp_path / "state"))[-1]["status"] == "detached"


def test_processing_that_never_ends(emulator, provider, clip, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SONIFY_RUN_TIMEOUT", "1")
    emulator.per_model_seconds[provider.model] = 60
    error = fails(provider, clip, tmp_path, JobTimedOut)
    assert "still processing after 1 s" in str(error)
    assert_task_named(error, provider)


# ---------------------------------------------------------------- downloads


def test_redirects_within_the_bound_are_followed(emulator, provider, clip, tmp_path) -> None:
    emulator.redirect("GET", OUTPUT, emulator.files_url + "{path}", times=http.MAX_REDIRECTS)
    result = run(provider, clip, tmp_path)
    completed_once(emulator, provider, result)
    assert [r.fault for r in emulator.requests if re.search(OUTPUT, r.path)] == ["redirect"] * http.MAX_REDIRECTS + [None]


def test_endless_redirects_are_an_error(emulator, provider, clip, tmp_path) -> None:
    emulator.redirect("GET", OUTPUT, emulator.files_url + "{path}", times=100)
    error = fails(provider, clip, tmp_path, ProviderError)
    assert f"more than {http.MAX_REDIRECTS} times" in str(error)
    assert_task_named(error, provider)
    assert len(statuses(emulator, "GET", OUTPUT)) <= http.MAX_ATTEMPTS * (http.MAX_REDIRECTS + 1)


@pytest.mark.parametrize("location", ["http://files.example.com{path}", "ftp://127.0.0.1{path}", "file:///etc/passwd"])
def test_redirect_away_from_https_is_refused(emulator, provider, clip, tmp_path, location) -> None:
    emulator.redirect("GET", OUTPUT, location)
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "only over https" in str(error)
    assert_task_named(error, provider)


def test_redirect_from_https_to_local_http_is_refused() -> None:
    def check(url: str, came_from: str) -> None:
        http.check_handed_url(url, local=True, provider="fal", task_id="t1", came_from=came_from)

    with pytest.raises(ProviderError, match="only over https"):
        check("http://127.0.0.1:8188/api/prompt", "https://cdn.example.com/out.mp4")
    check("https://cdn.example.com/b.mp4", "https://cdn.example.com/a.mp4")
    check("http://127.0.0.1:9/out.mp4", "http://127.0.0.1:8/out.mp4")


def test_output_url_must_be_https(emulator, wavespeed_env, clip, tmp_path) -> None:
    body = {"code": 200, "message": "success", "data": {
        "id": "a" * 32, "status": "completed", "outputs": ["http://cdn.example.com/out.wav"], "error": ""}}
    emulator.inject("GET", WAVESPEED.poll, 200, body=body)
    error = fails(WAVESPEED, clip, tmp_path, ProviderError)
    assert "only over https" in str(error)


def test_results_are_written_to_a_private_folder(emulator, provider, clip, tmp_path) -> None:
    result = run(provider, clip, tmp_path)
    store = Path(result.info["result_file"]).parent
    for folder in (store, store.parent):  # the result store and the state folder (which holds keys.json)
        assert folder.stat().st_mode & 0o077 == 0, oct(folder.stat().st_mode)


def test_the_key_goes_only_to_api_routes(emulator, provider, clip, tmp_path) -> None:
    emulator.redirect("GET", OUTPUT, emulator.files_url + "{path}")
    run(provider, clip, tmp_path)
    files_paths = (r"^/outputs/", r"^/files/", r"^/storage/put/")
    for record in emulator.requests:
        on_files_host = any(re.search(p, record.path) for p in files_paths)
        if provider.name == "fal" and record.path == "/files/upload":
            assert record.authorized  # the CDN's own short-lived token, never the key (the emulator refuses the key)
            continue
        assert record.authorized != on_files_host, record.path


# ---------------------------------------------------------------- the node never passes an error downstream


def test_node_raises_instead_of_returning_an_error(emulator, wavespeed_env, tmp_path) -> None:
    from pack import load_pack, module

    emulator.fail_next(MMAUDIO_V2.model_id, error="the model crashed")
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyMMAudioV2"]
    source = write_clip(tmp_path / "clip.mp4", 12, Fraction(24), 64, 48)
    errors = module("sonify.errors")
    with pytest.raises(errors.JobFailed, match="the model crashed"):
        node_cls().run(video=module("nodes.comfy").FileVideo(str(source)), prompt="rain", negative_prompt="",
                       duration=0, num_inference_steps=25, guidance_scale=4.5, mask_away_clip=False, seed=-1)

