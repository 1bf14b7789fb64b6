"""A hostile world: each case seen with a look-alike of a provider's API that means harm, played by the
emulator's hostile mode over real HTTP on 127.0.0.1, for WaveSpeed and fal alike.

Every case ends in a clear error (naming the task id once one exists) within a bounded time — a bound on a
hang, not a speed claim — or in a completed job; and always: the key nowhere (exception text, stderr,
journal rows), no file outside the state and output folders, never a second submit.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import sqlite3
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from clips import write_clip
from conftest import EMULATOR_KEY, FAL_KEY
from hypothesis import given
from hypothesis import strategies as st
from pack import ROOT, load_pack, module
from test_faults import fails as job_fails
from test_faults import short_bound, unanswered

from sonify import media, pipeline, settings
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL, ModelSpec
from sonify.cli import doctor
from sonify.errors import Cancelled, ConfigurationError, ProviderError, SonifyError, ValidationError
from sonify.net import http
from sonify.pipeline.deliver import output_name
from sonify.providers.base import TASK_ID, given_task_id, recovery_hint
from sonify.providers.fal import Fal
from sonify.providers.wavespeed import WaveSpeed
from sonify.redact import MASK, RUN, Redactor
from sonify.waiter import Waiter
from sonify_devtools.emulator import Emulator
from sonify_devtools.emulator.faults import Fault

BOUND = 5.0  # seconds: every hostile case ends within this (a bound on a hang)
CANCEL_BOUND = 1.0  # seconds from Cancel to the job's end, at any byte
OUTPUT = r"^/outputs/"
UPLOADS = r"^/(storage/put/|files/upload$)"  # the routes that carry an upload's bytes (files or API origin)


@dataclass(frozen=True)
class Provider:
    name: str
    spec: ModelSpec
    key: str
    scheme: str  # of its Authorization header

    @property
    def submit(self) -> str:
        prefix = "/api/v3/" if self.name == "wavespeed" else "/"
        return rf"^{prefix}{self.spec.model_id}$"


WAVESPEED = Provider("wavespeed", MMAUDIO_V2, EMULATOR_KEY, "Bearer")
FAL = Provider("fal", THINKSOUND_FAL, FAL_KEY, "Key")


@pytest.fixture(params=[WAVESPEED, FAL], ids=lambda p: p.name)
def provider(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Provider:
    request.getfixturevalue("wavespeed_env" if request.param.name == "wavespeed" else "fal_env")
    monkeypatch.setenv("SONIFY_TRANSFER_TIMEOUT", "1")  # each transfer: 1 s + its size at 32 KiB/s
    return request.param


@pytest.fixture
def clip(tmp_path: Path) -> media.VideoSource:
    return media.VideoSource(path=str(write_clip(tmp_path / "clip.mp4", 12, Fraction(24), 64, 48, flash_at=(5,))))


def run(provider: Provider, clip: media.VideoSource, tmp_path: Path, **params) -> pipeline.Result:
    is_cancelled = params.pop("is_cancelled", None)
    return pipeline.run(provider.spec, {"prompt": "rain on a tin roof", **params}, clip, out_dir=tmp_path / "out",
                        is_cancelled=is_cancelled)


def fails(provider: Provider, clip: media.VideoSource, tmp_path: Path, kind: type[SonifyError] = SonifyError) -> SonifyError:
    """A job that must fail: within BOUND, with one clear line (no traceback)."""
    return job_fails(provider, clip, tmp_path, kind, bound=BOUND)


def assert_task_named(error: SonifyError, provider: Provider) -> None:
    assert error.task_id and error.task_id in str(error)
    assert f"python -m sonify fetch {provider.name} {shlex.quote(error.task_id)}" in str(error)


def key_pieces(key: str) -> set[str]:
    """The key and every RUN characters of it: none may show anywhere."""
    return {key} | {key[i:i + RUN] for i in range(len(key) - RUN + 1)}


def journal_text(state: Path) -> str:
    if not (state / "jobs.sqlite3").is_file():
        return ""
    with sqlite3.connect(state / "jobs.sqlite3") as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for table in tables for row in db.execute(f"SELECT * FROM {table}"))


def journal_rows(state: Path) -> list[dict]:
    with sqlite3.connect(state / "jobs.sqlite3") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY id")]


def submits_sent(emulator: Emulator, provider: Provider) -> int:
    return sum(1 for r in emulator.requests if r.method == "POST" and re.search(provider.submit, r.path))


def assert_contained(emulator: Emulator, provider: Provider, tmp_path: Path, *texts: str, jobs: int = 1) -> None:
    """The key in no text and no journal row; no file outside the state and output folders (and the
    test's own clip); no more than one submit sent per job."""
    leaked = [(piece, text[:80]) for text in (*texts, journal_text(tmp_path / "state"))
              for piece in key_pieces(provider.key) if piece in text]
    assert leaked == []
    inside = (tmp_path / "state", tmp_path / "out")
    outside = [p for p in tmp_path.rglob("*")
               if not p.is_dir() and p.name != "clip.mp4" and not any(p.is_relative_to(f) for f in inside)]
    assert outside == []
    assert submits_sent(emulator, provider) <= jobs and emulator.submits() <= jobs


def completed_once(emulator: Emulator, provider: Provider, result: pipeline.Result) -> None:
    assert result.info["status"] == "completed" and result.video_path is not None and result.video_path.is_file()
    assert emulator.submits(provider.spec.model_id) == 1 and submits_sent(emulator, provider) == 1


def finish_in_thread(job) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = job()
        except BaseException as exc:  # noqa: BLE001 - the test looks at whatever ended the job
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


# ---------------------------------------------------------------- 1. downloads and uploads end, in time and on Cancel


def test_a_drip_fed_result_ends_at_its_deadline(emulator, provider, clip, tmp_path) -> None:
    emulator.drip("GET", OUTPUT, rate=1.0)  # the real file, 1 byte a second: hours
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "too slow" in str(error) and "32 KiB/s" in str(error)
    assert_task_named(error, provider)
    assert_contained(emulator, provider, tmp_path, str(error))
    assert list((tmp_path / "state" / "results").iterdir()) == []  # nothing partial kept
    row = journal_rows(tmp_path / "state")[-1]
    assert row["task_id"] == error.task_id and row["result_path"] is None  # the next run or a fetch downloads it


@pytest.mark.parametrize("rate", [None, 300.0], ids=["flood", "trickle"])
def test_an_endless_result_ends_at_the_cap_or_its_deadline(emulator, provider, clip, tmp_path, monkeypatch,
                                                           rate) -> None:
    monkeypatch.setenv("SONIFY_MAX_DOWNLOAD_MB", "0.5")
    emulator.endless("GET", OUTPUT, rate=rate)  # no Content-Length, and bytes that never end
    error = fails(provider, clip, tmp_path, ProviderError)
    assert ("SONIFY_MAX_DOWNLOAD_MB" if rate is None else "too slow") in str(error)
    assert_task_named(error, provider)
    assert_contained(emulator, provider, tmp_path, str(error))
    assert list((tmp_path / "state" / "results").iterdir()) == []


@pytest.mark.parametrize("value", ["lots", "-1", "0x400", "12 bytes", ""])
def test_a_content_length_that_is_not_a_number_is_read_to_the_end(emulator, provider, clip, tmp_path, value) -> None:
    emulator.bogus_length("GET", OUTPUT, value)
    result = run(provider, clip, tmp_path)
    completed_once(emulator, provider, result)
    served = emulator.storage.output_dir(emulator.tasks.get(result.info["task_id"]).id)
    assert Path(result.info["result_file"]).read_bytes() == next(served.iterdir()).read_bytes()


def test_a_content_length_beyond_the_cap_is_refused_before_reading(emulator, provider, clip, tmp_path) -> None:
    emulator.bogus_length("GET", OUTPUT, "999999999999")
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "SONIFY_MAX_DOWNLOAD_MB" in str(error)
    assert_task_named(error, provider)


def cancelled_midway(provider: Provider, clip: media.VideoSource, tmp_path: Path, fault: Fault) -> Cancelled:
    """Run a job, press Cancel once a request met `fault`: the job must end within CANCEL_BOUND, cancelled."""
    cancel = threading.Event()
    thread, outcome = finish_in_thread(lambda: run(provider, clip, tmp_path, is_cancelled=cancel.is_set))
    assert fault.taken.wait(BOUND)
    pressed = time.monotonic()
    cancel.set()
    thread.join(BOUND)
    assert not thread.is_alive() and isinstance(outcome.get("error"), Cancelled)
    assert outcome["at"] - pressed < CANCEL_BOUND
    return outcome["error"]


def test_cancel_ends_a_drip_fed_download_within_a_second(emulator, provider, clip, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SONIFY_TRANSFER_TIMEOUT", "600")  # only Cancel can end it
    error = cancelled_midway(provider, clip, tmp_path, emulator.drip("GET", OUTPUT, rate=1.0))
    assert_contained(emulator, provider, tmp_path, str(error))
    row = journal_rows(tmp_path / "state")[-1]
    assert row["task_id"] and row["result_path"] is None  # the next run or a fetch downloads it


def test_an_upload_whose_answer_never_comes_ends_at_its_deadline(emulator, provider, clip, tmp_path) -> None:
    emulator.delay("*", UPLOADS, 3600, times=2)  # fal: its CDN, then the storage upload it falls back to
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "too slow" in str(error)
    assert emulator.submits() == 0 and journal_rows(tmp_path / "state") == []
    assert_contained(emulator, provider, tmp_path, str(error))


def test_cancel_ends_an_upload_within_a_second(emulator, provider, clip, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SONIFY_TRANSFER_TIMEOUT", "600")
    cancelled_midway(provider, clip, tmp_path, emulator.delay("*", UPLOADS, 3600))  # an answer that never comes
    assert emulator.submits() == 0


# ---------------------------------------------------------------- 2. an echoed key is masked, before any cut


def test_an_echoed_key_is_masked_before_any_cut(emulator, provider, clip, tmp_path, monkeypatch) -> None:
    """The key straddles character 300, where the error text is cut: 10 of its characters before it."""
    short_bound(monkeypatch)  # fal: how long the lost submit's request is looked for
    at = 300 - len(f"Authorization: {provider.scheme} ") - 10
    emulator.echo("POST", provider.submit, 500, at=at)
    error = fails(provider, clip, tmp_path)
    assert "HTTP 500" in str(error) and f"Authorization: {MASK}" in str(error)
    unanswered(provider, error, tmp_path / "state")  # the provider's listing, asked after the lost answer, shows none
    assert_contained(emulator, provider, tmp_path, str(error), repr(error.args))
    assert submits_sent(emulator, provider) == 1

    emulator.echo("POST", provider.submit, 502, at=at)  # the command line: stderr and its journal row
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "sonify", "run", provider.spec.key, "--video", clip.path, "--prompt", "rain", "-o",
         str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )
    exit_code = 4 if provider.name == "wavespeed" else 5  # fal: its request may still be queued (timed out looking)
    assert done.returncode == exit_code and "error:" in done.stderr and "Traceback" not in done.stderr
    assert_contained(emulator, provider, tmp_path, done.stdout, done.stderr, jobs=2)
    assert submits_sent(emulator, provider) == 2 and emulator.submits() == 0  # one per run: none created


# ---------------------------------------------------------------- 3. two tasks never share a stored result


@pytest.mark.parametrize("first,second", [("a" * 40 + "1", "a" * 40 + "2"), ("task.1", "task_1"), ("Task1", "task1")],
                         ids=["same-first-40", "replaced-character", "case"])
def test_tasks_whose_ids_look_alike_keep_their_own_results(emulator, provider, clip, tmp_path, first,
                                                           second) -> None:
    emulator.hand_out("task_id", first)
    one = run(provider, clip, tmp_path, seed=1)
    emulator.hand_out("task_id", second)
    two = run(provider, clip, tmp_path, prompt="thunder and hail", seed=2)
    assert (one.info["task_id"], two.info["task_id"]) == (first, second)
    assert one.info["result_file"].lower() != two.info["result_file"].lower()
    assert one.video_path.name.lower() != two.video_path.name.lower()
    assert not np.array_equal(one.audio, two.audio)
    for task_id, result in ((first, one), (second, two)):
        again = pipeline.fetch(provider.name, task_id, model=provider.spec.key, out_dir=tmp_path / "out")
        assert again.info["cached"] and np.array_equal(again.audio, result.audio)  # its own sound, from the store
    assert_contained(emulator, provider, tmp_path, jobs=2)
    assert emulator.submits() == 2


# ---------------------------------------------------------------- 4. provider URLs: https elsewhere, never this machine


def test_a_result_url_on_plain_http_elsewhere_is_refused(emulator, provider, clip, tmp_path) -> None:
    emulator.hand_out("output_url", "http://files.example.com{path}")
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "only over https" in str(error)
    assert_task_named(error, provider)
    assert_contained(emulator, provider, tmp_path, str(error))


def cdn_fails(emulator: Emulator, provider: Provider) -> None:
    """fal's uploads go to its CDN's fixed host first: failing there, to the upload URL its storage hands out."""
    if provider.name == "fal":
        emulator.inject("POST", r"^/files/upload$", 503, body={"detail": "injected"})


def test_an_upload_url_on_plain_http_elsewhere_is_refused(emulator, provider, clip, tmp_path) -> None:
    cdn_fails(emulator, provider)
    emulator.hand_out("upload_url", "http://uploads.example.com{path}", times=2)  # fal: its token's and storage's
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "only over https" in str(error)
    assert not [r for r in emulator.requests if re.search(UPLOADS, r.path) and r.status != 503]
    assert emulator.submits() == 0
    assert_contained(emulator, provider, tmp_path, str(error))


def test_a_remote_api_never_sends_sonify_to_this_machine(emulator, tmp_path) -> None:
    """With the real https API bases, URLs of this machine's services are refused before any connection:
    the emulator stands for such a service and sees no request at all."""
    port = emulator.files_url.rsplit(":", 1)[1]
    here = [f"http://127.0.0.1:{port}/outputs/x/out.mp4", f"https://127.0.0.1:{port}/x", f"http://localhost:{port}/x",
            f"http://[::ffff:127.0.0.1]:{port}/x", f"http://0.0.0.0:{port}/x", f"https://[::1]:{port}/x",
            "http://files.example.com/out.mp4"]
    clients = [WaveSpeed(EMULATOR_KEY, settings.DEFAULT_URLS["wavespeed"]),
               Fal(FAL_KEY, settings.DEFAULT_URLS["fal_queue"], settings.DEFAULT_URLS["fal_rest"])]
    waiter = Waiter()
    for client in clients:
        assert not client.http.local
        for url in here:
            with pytest.raises(ProviderError, match="only over https"):
                client.http.download(url, tmp_path / "out.mp4", max_bytes=1 << 20, waiter=waiter, task_id="t1")
            with pytest.raises(ProviderError, match="only over https"):
                client.http.request("PUT", url, idempotent=True, waiter=waiter, data=b"x", auth=False)
    with pytest.raises(ProviderError, match="only over https"):  # nor by a redirect from an https host
        http.check_handed_url(f"https://127.0.0.1:{port}/x", local=False, provider="fal",
                              came_from="https://cdn.example.com/out.mp4")
    assert emulator.requests == [] and not (tmp_path / "out.mp4").exists()


BASE_VARIABLES = {"wavespeed": ("SONIFY_WAVESPEED_URL",),
                  "fal": ("SONIFY_FAL_QUEUE_URL", "SONIFY_FAL_REST_URL", "SONIFY_FAL_API_URL")}


def test_a_base_url_with_a_fragment_user_info_or_query_is_refused_before_any_request(emulator, provider, clip, tmp_path,
                                                                                    monkeypatch) -> None:
    """`http://127.0.0.1:PORT#@evil.example.com` is the emulator to one URL parser and evil.example.com to another:
    the key would go wherever the one that sends lands. Such a base URL (user info, a fragment, a query, a
    backslash) is refused, naming its variable, before any request; a password in it is never repeated."""
    port = emulator.url.rsplit(":", 1)[1]
    odd = [f"{emulator.url}#@evil.example.com", f"http://127.0.0.1:{port}#@evil.example.com/",
           f"http://user:pa55word@127.0.0.1:{port}", f"http://evil.example.com@127.0.0.1:{port}",
           f"{emulator.url}?next=https://evil.example.com", f"{emulator.url}/#", f"http://127.0.0.1:{port}\\@evil.example.com",
           f"http://127.0.0.1:{port} @evil.example.com"]
    for variable in BASE_VARIABLES[provider.name]:
        for url in odd:
            monkeypatch.setenv(variable, url)
            error = fails(provider, clip, tmp_path, ConfigurationError)
            assert variable in str(error) and "pa55word" not in str(error), url
        monkeypatch.setenv(variable, emulator.url)
    assert emulator.requests == []
    for client in (lambda url: WaveSpeed(EMULATOR_KEY, url), lambda url: Fal(FAL_KEY, url, url, url)):
        for url in odd:  # a client made elsewhere than from the settings refuses them too
            with pytest.raises(ConfigurationError, match="plain base URL"):
                client(url)


def test_a_plain_base_url_still_works_and_plain_http_stays_loopback_only(monkeypatch) -> None:
    monkeypatch.setenv("SONIFY_WAVESPEED_URL", "http://127.0.0.1:8787/")
    assert settings.current().url("wavespeed") == "http://127.0.0.1:8787"
    for url in ("http://api.example.com", "http://10.0.0.1:8787", "http://127.0.0.1:port"):
        monkeypatch.setenv("SONIFY_WAVESPEED_URL", url)
        with pytest.raises(ConfigurationError, match="SONIFY_WAVESPEED_URL"):
            settings.current()


@pytest.mark.parametrize("remote", [["SONIFY_FAL_API_URL"], ["SONIFY_FAL_REST_URL", "SONIFY_FAL_API_URL"],
                                    ["SONIFY_FAL_QUEUE_URL"]], ids=["listing", "rest-and-listing", "queue"])
def test_a_mix_of_local_and_remote_api_urls_is_refused_before_any_request(emulator, fal_env, clip, tmp_path, monkeypatch,
                                                                          remote) -> None:
    """A local queue URL with the real listing API (or any such mix) would submit, and pay, on one side and
    refuse the result as a URL of the other: refused before anything is sent, naming the variables. A remote
    base is left at its default (no request reaches it: none is made)."""
    for variable in remote:
        monkeypatch.delenv(variable)
    error = fails(FAL, clip, tmp_path, ConfigurationError)
    assert all(variable in str(error) for variable in BASE_VARIABLES["fal"]) and "nothing was sent" in str(error)
    assert "the default" in str(error)
    assert emulator.requests == [] and emulator.submits() == 0
    checked = doctor.provider_checks("fal")[-1]  # the doctor says so too
    assert checked.ok is False and "SONIFY_FAL_API_URL" in checked.detail
    with pytest.raises(ConfigurationError, match="partly on this machine"):  # and so does a client made elsewhere
        Fal(FAL_KEY, *(settings.DEFAULT_URLS[n] if settings.URL_ENV[n] in remote else emulator.url
                       for n in settings.API_BASES["fal"]))


def test_the_webhook_key_set_may_live_elsewhere_than_the_api(emulator, fal_env, clip, tmp_path, monkeypatch) -> None:
    """fal's JWKS URL is no API base (fetched without a key, only with webhooks on): left at its default beside
    local API bases, a run completes."""
    monkeypatch.delenv("SONIFY_FAL_JWKS_URL", raising=False)
    monkeypatch.delenv("SONIFY_PUBLIC_URL", raising=False)
    completed_once(emulator, FAL, run(FAL, clip, tmp_path))


# ---------------------------------------------------------------- 5. task ids are checked before any use


def test_a_traversal_task_id_from_the_provider_is_refused(emulator, provider, clip, tmp_path) -> None:
    emulator.hand_out("task_id", "../../escape")
    error = fails(provider, clip, tmp_path, ProviderError)
    assert "not one" in str(error) and "may have been created" in str(error)
    assert "python -m sonify fetch" not in str(error)  # no command built from it
    after_submit = [r.path for r in emulator.requests if not re.search(provider.submit + "|" + UPLOADS + "|" + LISTINGS,
                                                                      r.path)
                    and not r.path.startswith(("/api/v3/media/", "/storage/"))]
    assert after_submit == []  # never polled: the id went into no URL (the listing, asked after, needs no id)
    assert journal_rows(tmp_path / "state")[-1]["status"] == "unknown"  # a task may exist: not submitted blindly again
    assert not (tmp_path / "escape").exists()
    assert_contained(emulator, provider, tmp_path, str(error))


LISTINGS = r"^/api/v3/predictions$|^/v1/models/requests/by-endpoint$"  # asked when a submit's answer is unusable
BAD_IDS = ["../../../../tmp/x", "x/../../y", "a b", "$(touch pwned)", "x;rm -rf ~", "-rf", ".hidden", "a" * 129,
           "ü", "a\nb"]


@pytest.mark.parametrize("task_id", BAD_IDS, ids=range(len(BAD_IDS)))
def test_a_task_id_given_by_the_user_is_checked_before_any_use(emulator, provider, tmp_path, task_id) -> None:
    start = time.monotonic()
    with pytest.raises(ValidationError) as caught:
        pipeline.fetch(provider.name, task_id, model=provider.spec.key, out_dir=tmp_path / "out")
    assert caught.value.input_name == "task_id" and "is not a task id" in str(caught.value)
    assert time.monotonic() - start < BOUND
    node = load_pack().NODE_CLASS_MAPPINGS["SonifyFetchResult"]()
    with pytest.raises(module("sonify.errors").ValidationError, match="is not a task id"):
        node.run(provider=provider.name, model=provider.spec.key, task_id=task_id)
    assert emulator.requests == []
    assert_contained(emulator, provider, tmp_path, str(caught.value))


def test_the_fetch_command_checks_the_task_id(emulator, wavespeed_env, tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "sonify", "fetch", "wavespeed", "../../../../tmp/x", "-o",
                           str(tmp_path / "out")], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 3 and "is not a task id" in done.stderr and "Traceback" not in done.stderr
    assert emulator.requests == []


def test_a_task_id_is_quoted_inside_a_command() -> None:
    assert "`python -m sonify fetch fal 'a b'`" in recovery_hint("fal", "a b")
    real = ("0f3c5a7e9b1d4f6a8c2e4b6d8f0a1c3e", "8c3e1b2a-4d5f-4e6a-9b7c-0d1e2f3a4b5c")  # WaveSpeed hex, a fal UUID
    for task_id in real:
        assert given_task_id(f" {task_id} ") == task_id
        assert f"`python -m sonify fetch wavespeed {task_id}`" in recovery_hint("wavespeed", task_id)


# ---------------------------------------------------------------- 6. an upload URL on the API's host gets no key


def test_an_upload_url_on_the_api_host_gets_exactly_its_headers(emulator, provider, clip, tmp_path) -> None:
    cdn_fails(emulator, provider)
    emulator.hand_out("upload_url", "{api}{path}", times=2)  # WaveSpeed's ticket; fal's token base_url and storage
    result = run(provider, clip, tmp_path)
    completed_once(emulator, provider, result)
    uploads = [r for r in emulator.requests if re.search(UPLOADS, r.path) and r.status != 503]
    assert uploads and all(r.status == 200 for r in uploads)  # the emulator refuses the key there (400 / 401)
    assert all(not r.authorized for r in uploads if r.path.startswith("/storage/put/"))
    assert_contained(emulator, provider, tmp_path)


# ---------------------------------------------------------------- 7. the command line: a message and an exit code


def sonify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonify", *args], env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_command_line_failures_are_messages_with_documented_codes(emulator, wavespeed_env, tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = sonify("emulator", "--port", str(busy.getsockname()[1]))
    assert taken.returncode == 3 and taken.stderr.startswith("error: the emulator cannot listen on 127.0.0.1:")
    assert "--port 0" in taken.stderr
    assert sonify("emulator", "--port", "70000").returncode == 2

    state_file = tmp_path / "state-is-a-file"
    state_file.write_text("not a folder")
    listed = sonify("jobs", env={"SONIFY_STATE_DIR": str(state_file)})
    assert listed.returncode == 3 and listed.stderr == f"error: Sonify's state folder {state_file} is not a folder: " \
        "set SONIFY_STATE_DIR to a folder of its own\n"
    doctor = sonify("doctor", env={"SONIFY_STATE_DIR": str(state_file), "FAL_KEY": ""})
    assert doctor.returncode == 1 and f"state folder: Sonify's state folder {state_file} is not a folder" in doctor.stdout
    clip = write_clip(tmp_path / "clip.mp4", 12, Fraction(24), 64, 48)
    ran = sonify("run", "mmaudio-v2", "--video", str(clip), "--prompt", "rain", "-o", str(tmp_path / "out"),
                 env={"SONIFY_STATE_DIR": str(state_file)})  # no journal to record it: nothing is submitted
    assert ran.returncode == 3 and "cannot record this job, so it was not submitted" in ran.stderr
    assert emulator.submits(MMAUDIO_V2.model_id) == 0
    for done in (taken, listed, doctor, ran):
        assert "Traceback" not in done.stdout + done.stderr


# ---------------------------------------------------------------- 8. the state folder is private, links never followed


def test_an_open_state_folder_is_made_private(emulator, provider, clip, tmp_path) -> None:
    (tmp_path / "state" / "results").mkdir(parents=True)
    for folder in (tmp_path / "state", tmp_path / "state" / "results"):
        folder.chmod(0o777)
    run(provider, clip, tmp_path)
    for folder in (tmp_path / "state", tmp_path / "state" / "results"):
        assert folder.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("name", ["jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm", "results"])
def test_planted_links_are_never_written_through(emulator, provider, clip, tmp_path, caplog, name) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "out" / "victim"  # inside the output folder, so that nothing lands outside
    (tmp_path / "out").mkdir()
    if name == "results":
        victim.mkdir()
    (state / name).symlink_to(victim, target_is_directory=name == "results")
    if name == "results":  # the result is not stored; the job is journaled and delivered
        completed_once(emulator, provider, run(provider, clip, tmp_path))
    else:  # a journal that cannot be used cannot record the job: nothing is submitted
        with pytest.raises(ConfigurationError, match="cannot record this job, so it was not submitted"):
            run(provider, clip, tmp_path)
        assert emulator.submits(provider.spec.model_id) == 0
    assert (state / name).is_symlink()  # left for the user to look at
    assert (list(victim.iterdir()) == []) if name == "results" else not victim.exists()
    assert any("symbolic link" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert_contained(emulator, provider, tmp_path)


# ---------------------------------------------------------------- properties: redact() and the id check

KEY_CHARACTERS = string.ascii_letters + string.digits + "-_.:"


@st.composite
def key_in_text(draw: st.DrawFn) -> tuple[str, str]:
    """(a key, a text holding the whole key or RUN or more of its characters, among any others)."""
    key = draw(st.text(KEY_CHARACTERS, min_size=RUN, max_size=64))
    start = draw(st.integers(0, len(key) - RUN))
    end = draw(st.integers(start + RUN, len(key)))
    around = st.text(max_size=40)
    return key, draw(around) + key[start:end] + draw(around) + draw(st.sampled_from(["", key]))


@given(key_in_text())
def test_redact_leaves_no_run_of_a_key(case: tuple[str, str]) -> None:
    key, text = case
    redactor = Redactor()
    redactor.register(key)
    cleaned = redactor.redact(text)
    assert key not in cleaned
    assert not any(cleaned[i:i + RUN] in key_pieces(key) for i in range(len(cleaned) - RUN + 1))


@given(st.text(KEY_CHARACTERS, min_size=RUN, max_size=64), st.text(max_size=200))
def test_redact_keeps_text_without_key_material(key: str, text: str) -> None:
    redactor = Redactor()
    redactor.register(key)
    words = ("authorization", "bearer", "key", "basic")
    if any(piece in text for piece in key_pieces(key)) or any(w in text.lower() for w in words) or MASK in text:
        return
    if any(len(part) >= 6 and part in text for part in key.split(":")):
        return
    assert redactor.redact(text) == text


@given(st.sampled_from(["Bearer", "Key", "Basic"]), st.text(KEY_CHARACTERS + "+/=~", min_size=1, max_size=40),
       st.integers(0, 9))
def test_redact_masks_an_echoed_authorization_value(scheme: str, value: str, digit: int) -> None:
    """Anyone's credential, registered or not, is masked after an auth scheme or an Authorization header
    (after the everyday words Key and Basic: one of 12 or more characters with a digit, as keys are)."""
    if scheme != "Bearer":
        value = (value * 12)[:40] + str(digit)
    redactor = Redactor()
    assert redactor.redact(f"echo: {scheme} {value}") == f"echo: {scheme} {MASK}"
    assert redactor.redact(f"Authorization: {scheme} {value}\nHost: x") == f"Authorization: {MASK}\nHost: x"
    assert redactor.redact(f'{{"authorization": "{value}"}}') == f'{{"authorization": "{MASK}"}}'


def test_redact_keeps_everyday_words() -> None:
    for text in ("Key change in the bridge", "Basic drums, then a Key signature", "the key file keys.json"):
        assert Redactor().redact(text) == text


@given(st.text(max_size=140))
def test_the_id_check_takes_exactly_plain_ids(text: str) -> None:
    try:
        checked = given_task_id(text)
    except ValidationError:
        assert not TASK_ID.fullmatch(text.strip())
        return
    assert TASK_ID.fullmatch(checked) and checked == text.strip()
    assert "/" not in checked and "\\" not in checked and not checked.startswith(".") and len(checked) <= 128
    assert shlex.quote(checked) == checked  # safe inside a command as it is


@given(st.from_regex(TASK_ID, fullmatch=True), st.from_regex(TASK_ID, fullmatch=True))
def test_stored_names_are_one_per_task_id(one: str, other: str) -> None:
    """Names come from the whole id, never cut: two ids never share one, on a case-insensitive file system too."""
    for task_id in (one, other):
        name = output_name(MMAUDIO_V2, task_id)
        assert "/" not in name and len(name) < 200 and re.fullmatch(r"[A-Za-z0-9._~-]+", name)
    if one != other:
        assert output_name(MMAUDIO_V2, one).lower() != output_name(MMAUDIO_V2, other).lower()
