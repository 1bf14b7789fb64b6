"""Webhooks as wake-ups, on both providers, through both receivers (the command line's listener and the pack's
aiohttp route), with the emulator's signed deliveries over real HTTP: a valid one wakes the waiting job at once
(a model's first job included); a bad signature, a replay, a stale timestamp or an unknown task changes
nothing; one arriving before the submit's answer still takes effect; without SONIFY_PUBLIC_URL nothing is
asked for."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pack import module

from sonify import cli, media, pipeline
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL
from sonify.cli import webhook_listener
from sonify.errors import ConfigurationError
from sonify.providers import webhooks
from sonify_devtools.emulator import Emulator

PROVIDERS = ("wavespeed", "fal")
SPECS = {"wavespeed": MMAUDIO_V2, "fal": THINKSOUND_FAL}
SUBMIT = {"wavespeed": rf"^/api/v3/{MMAUDIO_V2.model_id}$", "fal": rf"^/{THINKSOUND_FAL.model_id}$"}
FAL_STREAM = r"/requests/[^/]+/status/stream$"
# A first job ending here falls between cold polls 0.9 s apart (schedule.base_interval): polling alone sees it
# up to 0.9 s late, a delivery at once.
SLOW = 5.0
NOTICED = 0.2  # the detection target with webhooks


@pytest.fixture
def provider_env(request: pytest.FixtureRequest, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """The provider under test (parametrized), its environment pointed at the emulator; fal's stream fails,
    so that its wait polls (the stream itself notices the end at once, webhook or not)."""
    provider = request.param
    request.getfixturevalue(f"{provider}_env")
    monkeypatch.setenv("SONIFY_FAL_JWKS_URL", f"{emulator.url}/.well-known/jwks.json")
    if provider == "fal":
        emulator.inject("GET", FAL_STREAM, 500)
    return provider


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> webhook_listener.Listener:
    """The command line's listener on a free port, and SONIFY_PUBLIC_URL pointing at it."""
    server = webhook_listener.Listener(("127.0.0.1", 0))
    monkeypatch.setenv("SONIFY_PUBLIC_URL", server.url)
    yield server
    server.close()


def run_job(spec: Any, clip: Path, out: Path, engine: Any = pipeline, sources: Any = media) -> tuple[Any, float]:
    """One job (through `engine`: the pack's own copy for its route) and when the client saw its end."""
    seen: list[float] = []

    def observe(event: str, info: Any) -> None:
        if event == "final" and not seen:
            seen.append(time.monotonic())

    result = engine.run(spec, {"prompt": "rain", "seed": -1}, sources.VideoSource(path=str(clip)), out_dir=out,
                        observe=observe)
    return result, seen[0]


def deliveries(emulator: Emulator) -> list[tuple[str, int | None]]:
    emulator.webhooks.join(5.0)
    return [(d.kind, d.status) for d in emulator.deliveries]


def noticed_after(emulator: Emulator, task_id: str, seen: float) -> float:
    return seen - emulator.task_completed_at(task_id)


def verified_and_used(emulator: Emulator) -> None:
    """The one delivery was verified and went to the job: it woke the waiting job (200), or the job had seen the end
    itself a few milliseconds before (a poll, fal's status stream) and the delivery was kept (202), as for a wait to
    come. Which comes first is a race of milliseconds; the job's end is seen at once either way."""
    assert [(kind, status in (200, 202)) for kind, status in deliveries(emulator)] == [("valid", True)]
    detail = emulator.deliveries[0].detail
    assert "woke" in detail if emulator.deliveries[0].status == 200 else "kept" in detail


@pytest.mark.parametrize("provider_env", PROVIDERS, indirect=True)
def test_a_verified_delivery_wakes_a_first_job_at_once(provider_env, listener, emulator, clip_path, tmp_path):
    spec = SPECS[provider_env]
    emulator.per_model_seconds[spec.model_id] = SLOW
    result, seen = run_job(spec, clip_path, tmp_path / "out")
    task_id = result.info["task_id"]
    assert emulator.tasks.get(task_id).webhook == f"{listener.url}/sonify/webhook/{provider_env}"
    verified_and_used(emulator)
    assert noticed_after(emulator, task_id, seen) < NOTICED


@pytest.mark.parametrize("provider_env", PROVIDERS, indirect=True)
def test_the_pack_route_on_aiohttp_wakes_the_job(provider_env, emulator, clip_path, tmp_path, monkeypatch):
    """The route the pack registers on ComfyUI's server, on a real aiohttp server, feeding the pack's own engine."""
    spec = SPECS[provider_env]
    emulator.per_model_seconds[spec.model_id] = SLOW
    route, engine, sources = module("nodes.webhook_route"), module("sonify.pipeline"), module("sonify.media")
    pack_spec = module("sonify.catalog").MODELS[spec.key]

    async def scenario() -> tuple[Any, float]:
        table = web.RouteTableDef()
        route.register(table)
        app = web.Application()
        app.add_routes(table)
        async with TestServer(app, host="127.0.0.1") as server:
            monkeypatch.setenv("SONIFY_PUBLIC_URL", str(server.make_url("")).rstrip("/"))
            return await asyncio.get_running_loop().run_in_executor(
                None, run_job, pack_spec, clip_path, tmp_path / "out", engine, sources)

    result, seen = asyncio.run(scenario())
    verified_and_used(emulator)
    assert noticed_after(emulator, result.info["task_id"], seen) < NOTICED


@pytest.mark.parametrize("provider_env", PROVIDERS, indirect=True)
def test_a_bad_signature_wakes_nothing_and_the_job_ends_by_polling(provider_env, listener, emulator, clip, tmp_path):
    emulator.next_delivery("bad_signature")
    result = pipeline.run(SPECS[provider_env], {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert result.info["status"] == "completed"
    assert deliveries(emulator) == [("bad_signature", 401)]
    assert "signature" in emulator.deliveries[0].detail
    with webhooks.WAKEUPS.listening(provider_env, result.info["task_id"]) as wake:
        assert not wake.is_set()  # nothing was kept for a wait to come either


@pytest.mark.parametrize("provider_env", PROVIDERS, indirect=True)
def test_a_replayed_or_stale_delivery_is_ignored(provider_env, listener, emulator, clip, tmp_path):
    emulator.next_delivery("duplicate")
    first = pipeline.run(SPECS[provider_env], {"prompt": "rain"}, clip, out_dir=tmp_path / "a")
    emulator.next_delivery("stale")
    second = pipeline.run(SPECS[provider_env], {"prompt": "rain", "seed": 7}, clip, out_dir=tmp_path / "b")
    assert {first.info["status"], second.info["status"]} == {"completed"}
    emulator.webhooks.join(5.0)
    answers = [(d.kind, d.status, d.detail) for d in emulator.deliveries]
    assert [a[:2] for a in answers][1:] == [("duplicate", 200), ("stale", 401)]
    assert answers[0][1] in (200, 202) and "seen before" in answers[1][2] and "timestamp" in answers[2][2]
    with webhooks.WAKEUPS.listening(provider_env, second.info["task_id"]) as wake:
        assert not wake.is_set()


@pytest.mark.parametrize("provider_env", PROVIDERS, indirect=True)
def test_a_delivery_for_an_unknown_task_changes_nothing(provider_env, listener, emulator, clip, tmp_path):
    pipeline.run(SPECS[provider_env], {"prompt": "rain"}, clip, out_dir=tmp_path / "out")  # the receiver trusts the keys
    unknown = "0123456789abcdef0123456789abcdef"
    payload = {"id": unknown} if provider_env == "wavespeed" else {"request_id": unknown, "status": "OK", "payload": {}}
    emulator.webhooks.deliver(provider_env, webhooks.hook_url(provider_env), unknown, payload)
    assert deliveries(emulator)[-1] == ("valid", 202)
    assert "no job is waiting" in emulator.deliveries[-1].detail


@pytest.mark.parametrize("provider_env", PROVIDERS, indirect=True)
def test_a_delivery_before_the_submit_answer_still_wakes(provider_env, listener, emulator, clip, tmp_path):
    """The task ends (and is delivered) while its submit's answer is held back: the wake-up is kept, and the
    wait that starts once the answer comes is woken at once."""
    emulator.delay("POST", SUBMIT[provider_env], 1.0)
    result = pipeline.run(SPECS[provider_env], {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert result.info["status"] == "completed"
    record = emulator.deliveries[0]
    submitted = next(r for r in emulator.requests if r.method == "POST" and r.fault == "delay")
    assert record.at < submitted.at  # delivered before the submit was answered
    assert (record.status, "kept" in record.detail) == (202, True)


def test_an_early_wake_is_kept_for_a_while():
    now = [0.0]
    wakeups = webhooks.Wakeups(keep=60.0, clock=lambda: now[0])
    assert not wakeups.wake("fal", "early")
    now[0] = 59.0
    with wakeups.listening("fal", "early") as wake:
        assert wake.is_set()
    assert not wakeups.wake("fal", "late")
    now[0] = 121.0
    with wakeups.listening("fal", "late") as wake:
        assert not wake.is_set()
        assert wakeups.wake("fal", "late") and wake.is_set()


@pytest.mark.parametrize("provider_env", PROVIDERS, indirect=True)
def test_without_a_public_url_no_webhook_is_asked_for(provider_env, emulator, clip, tmp_path, monkeypatch):
    monkeypatch.delenv("SONIFY_PUBLIC_URL", raising=False)
    result = pipeline.run(SPECS[provider_env], {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert emulator.tasks.get(result.info["task_id"]).webhook == ""
    paths = [r.path for r in emulator.requests]
    assert not {"/api/v3/webhook/secret", "/.well-known/jwks.json"} & set(paths)
    emulator.webhooks.join(5.0)
    assert emulator.deliveries == []


@pytest.mark.parametrize("url", ["http://sonify.example.com", "ftp://127.0.0.1", "https://box.example.com/?a=1"])
@pytest.mark.parametrize("provider_env", PROVIDERS, indirect=True)
def test_a_public_url_that_is_not_https_is_refused_before_the_submit(provider_env, url, emulator, clip, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("SONIFY_PUBLIC_URL", url)
    with pytest.raises(ConfigurationError, match="SONIFY_PUBLIC_URL"):
        pipeline.run(SPECS[provider_env], {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert emulator.requests == []  # not even an upload


@pytest.mark.parametrize("provider_env", PROVIDERS, indirect=True)
def test_key_material_that_cannot_be_had_is_not_asked_for_again_on_every_submit(provider_env, listener, emulator,
                                                                                 clip, tmp_path, monkeypatch):
    monkeypatch.setattr(webhooks, "_fetch_paused_until", {})
    monkeypatch.setattr(webhooks.RECEIVER, "_fal_keys", {})
    path = {"wavespeed": "/api/v3/webhook/secret", "fal": "/.well-known/jwks.json"}[provider_env]
    emulator.inject("GET", re.escape(path), 404, times=100)
    for run in ("first", "second"):
        result = pipeline.run(SPECS[provider_env], {"prompt": "rain"}, clip, out_dir=tmp_path / run)
        assert emulator.tasks.get(result.info["task_id"]).webhook == ""  # polling only, as without webhooks
    assert [r.path for r in emulator.requests].count(path) == 1  # the second submit did not try again


@pytest.mark.parametrize("provider_env", ["fal"], indirect=True)
def test_fal_webhooks_are_not_asked_for_without_cryptography(provider_env, listener, emulator, clip, tmp_path,
                                                             monkeypatch, caplog):
    for name in [m for m in sys.modules if m.split(".")[0] == "cryptography"] + ["cryptography"]:
        monkeypatch.setitem(sys.modules, name, None)  # an install without the package
    monkeypatch.setattr(webhooks.RECEIVER, "_fal_keys", {})
    with caplog.at_level(logging.INFO, logger="sonify"):
        result = pipeline.run(THINKSOUND_FAL, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert emulator.tasks.get(result.info["task_id"]).webhook == ""
    assert "cryptography" in caplog.text


def test_the_listener_refuses_what_is_not_a_delivery(listener):
    base = f"{listener.url}/sonify/webhook"
    assert requests.post(f"{listener.url}/elsewhere", data=b"{}", timeout=5).status_code == 404
    assert requests.post(f"{base}/nobody", data=b"{}", timeout=5).status_code == 404
    assert requests.post(f"{base}/wavespeed", data=b"{}", timeout=5).status_code == 400  # no signature headers
    too_big = requests.post(f"{base}/fal", headers={"Content-Length": str(webhooks.MAX_BODY + 1)}, data=b"", timeout=5)
    assert too_big.status_code == 413


def test_the_pack_route_refuses_what_is_not_a_delivery():
    route = module("nodes.webhook_route")

    async def scenario() -> list[int]:
        table = web.RouteTableDef()
        route.register(table)
        app = web.Application()
        app.add_routes(table)
        async with TestClient(TestServer(app)) as client:
            answers = [await client.post("/sonify/webhook/wavespeed", data=b"{}"),
                       await client.post("/sonify/webhook/fal", data=b"x" * (webhooks.MAX_BODY + 1)),
                       await client.post("/sonify/webhook/other", data=b"{}")]
            return [a.status for a in answers]

    assert asyncio.run(scenario()) == [400, 413, 404]


def test_the_pack_registers_its_route_on_comfyuis_server(monkeypatch):
    comfy = module("nodes.comfy")
    comfy.add_webhook_route()  # no PromptServer here: nothing happens, nothing fails
    routes = web.RouteTableDef()
    host = types.ModuleType("server")
    host.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(routes=routes))
    monkeypatch.setitem(sys.modules, "server", host)
    comfy.add_webhook_route()
    assert [(r.method, r.path) for r in routes] == [("POST", webhooks.ROUTE)]


@pytest.mark.parametrize("provider_env", ["wavespeed"], indirect=True)
def test_the_run_command_listens_while_it_waits(provider_env, emulator, clip_path, tmp_path, monkeypatch, capsys):
    with socket.socket() as probe:  # a free port for the command's own listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SONIFY_WEBHOOK_LISTEN", f"127.0.0.1:{port}")
    monkeypatch.setenv("SONIFY_PUBLIC_URL", f"http://127.0.0.1:{port}")
    assert cli.main(["run", MMAUDIO_V2.key, "--prompt", "rain", "--video", str(clip_path), "-o",
                     str(tmp_path / "out")]) == 0
    verified_and_used(emulator)
    with pytest.raises(requests.ConnectionError):  # the listener ended with the command
        requests.post(f"http://127.0.0.1:{port}/sonify/webhook/wavespeed", data=b"{}", timeout=2)
