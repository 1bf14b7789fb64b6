"""Webhook hardening against an outsider (the hostile-world issue, round two): a replay whose signature is
spelled differently wakes nothing; a huge timestamp or deeply nested JSON is a clean refusal; the command
line's listener drops a drip-fed request at its deadline and serves a bounded number of connections; key
material (WaveSpeed's secret, fal's key set) is read under a byte cap and a key-count cap. Signatures are
made here as the providers' docs show them (test_webhook_signatures.py), never by the emulator's signer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import select
import socket
import threading
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pack import module

from sonify import pipeline
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL
from sonify.cli import webhook_listener
from sonify.errors import ConfigurationError
from sonify.providers import webhooks
from sonify_devtools.emulator import Emulator

NOW = 1_765_000_000
TASK = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SECRET = "whsec_hostile-world-secret-text"
BODY = json.dumps({"id": TASK, "status": "completed"}).encode()
FAL_SIGNER = Ed25519PrivateKey.generate()


def wavespeed_headers(body: bytes, stamp: str = str(NOW), webhook_id: str = "msg_1") -> dict[str, str]:
    mac = hmac.new(SECRET[len("whsec_"):].encode(), f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256)
    return {"webhook-id": webhook_id, "webhook-timestamp": stamp, "webhook-signature": "v3," + mac.hexdigest()}


def fal_headers(private: Ed25519PrivateKey, body: bytes, stamp: str = str(NOW)) -> dict[str, str]:
    message = "\n".join((TASK, "user-1", stamp, hashlib.sha256(body).hexdigest())).encode()
    return {"x-fal-webhook-request-id": TASK, "x-fal-webhook-user-id": "user-1", "x-fal-webhook-timestamp": stamp,
            "x-fal-webhook-signature": private.sign(message).hex()}


def jwks_of(*privates: Ed25519PrivateKey) -> dict:
    raws = [p.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for p in privates]
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(r).decode().rstrip("=")}
                     for r in raws]}


@pytest.fixture
def hub() -> webhooks.Receiver:
    """A receiver at a fixed time, trusting SECRET (WaveSpeed) and FAL_SIGNER's public key (fal)."""
    receiver = webhooks.Receiver(webhooks.Wakeups(), clock=lambda: float(NOW))
    receiver.trust_wavespeed_secret(SECRET)
    receiver.trust_fal_jwks("https://jwks.example/keys", jwks_of(FAL_SIGNER))
    return receiver


# --- replays spelled differently (item 8) ---

def respellings(provider: str, header: str) -> list[str]:
    if provider == "wavespeed":
        hexed = header.removeprefix("v3,")
        return [f"v3,{hexed.upper()}", f"  v3,{hexed}  ", f"v3,{hexed} v3,{hexed}", f"v3,{'0' * 64} v3,{hexed.upper()}",
                f"v3,{hexed[:32].upper()}{hexed[32:]}"]
    pairs = [header[i:i + 2] for i in range(0, len(header), 2)]
    return [header.upper(), f" {header} ", " ".join(pairs), "\t".join(pairs), header[:64].upper() + header[64:]]


@pytest.mark.parametrize("provider", ["wavespeed", "fal"])
def test_a_replay_with_its_signature_respelled_wakes_nothing(hub, provider):
    headers = wavespeed_headers(BODY) if provider == "wavespeed" else fal_headers(FAL_SIGNER, BODY)
    name = "webhook-signature" if provider == "wavespeed" else "x-fal-webhook-signature"
    with hub.wakeups.listening(provider, TASK) as wake:
        assert hub.receive(provider, headers, BODY) == (200, "woke the waiting job")
        wakes = 1
        for spelling in respellings(provider, headers[name]):
            wake.clear()
            status, reason = hub.receive(provider, {**headers, name: spelling}, BODY)
            wakes += wake.is_set()
            assert status in (200, 401) and (status == 401 or reason == "seen before: ignored"), (spelling, reason)
    assert wakes == 1


def test_the_emulators_respelled_replay_is_ignored_end_to_end(wavespeed_env, emulator, monkeypatch, clip, tmp_path):
    listener = webhook_listener.Listener(("127.0.0.1", 0))
    monkeypatch.setenv("SONIFY_PUBLIC_URL", listener.url)
    monkeypatch.setattr(webhooks, "_fetch_paused_until", {})
    try:
        emulator.next_delivery("respelled")
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
        emulator.webhooks.join(5.0)
    finally:
        listener.close()
    answers = [(d.kind, d.status, d.detail) for d in emulator.deliveries]
    assert [a[:2] for a in answers][1:] == [("respelled", 200)] and answers[0][1] in (200, 202)
    assert "seen before" in answers[1][2]


# --- inputs that crashed or stalled the receiver (item 9) ---

@pytest.mark.parametrize("provider", ["wavespeed", "fal"])
@pytest.mark.parametrize("stamp", ["9" * 401, "1" * 5000, "١٧٦٥٠٠٠٠٠٠", "+1765000000", "1_765_000_000", "-1"])
def test_a_timestamp_that_is_not_unix_seconds_is_a_clean_400(hub, provider, stamp):
    headers = (wavespeed_headers(BODY, stamp) if provider == "wavespeed" else fal_headers(FAL_SIGNER, BODY, stamp))
    status, reason = hub.receive(provider, headers, BODY)
    assert status == 400 and ("timestamp" in reason if stamp.isascii() else "ASCII" in reason)


def test_a_validly_signed_deep_json_array_is_refused_cleanly(hub):
    body = b"[" * 50_000 + b"]" * 50_000
    assert hub.receive("wavespeed", wavespeed_headers(body), body) == (400, "the delivery's JSON is nested too deeply to read")


def test_huge_numbers_and_deep_json_get_an_answer_from_the_pack_route(monkeypatch):
    """On aiohttp (ComfyUI's server) too: an answer, not an exception in the event loop."""
    route, pack_webhooks = module("nodes.webhook_route"), module("sonify.providers.webhooks")
    pack_webhooks.RECEIVER.trust_wavespeed_secret(SECRET)
    deep = b"[" * 50_000 + b"]" * 50_000
    now = str(int(time.time()))

    async def scenario() -> list[tuple[int, str]]:
        table = web.RouteTableDef()
        route.register(table)
        app = web.Application()
        app.add_routes(table)
        async with TestClient(TestServer(app)) as client:
            answers = []
            for body, stamp in ((BODY, "9" * 401), (deep, now)):
                answer = await client.post("/sonify/webhook/wavespeed", data=body, headers=wavespeed_headers(body, stamp))
                answers.append((answer.status, (await answer.json())["detail"]))
            return answers

    (huge, huge_reason), (nested, nested_reason) = asyncio.run(scenario())
    assert (huge, nested) == (400, 400) and "timestamp" in huge_reason and "nested" in nested_reason


@pytest.mark.parametrize("kind", ["huge_timestamp", "deep_json"])
def test_the_emulators_huge_timestamp_and_deep_json_get_a_400_from_the_listener(kind, wavespeed_env, emulator,
                                                                                 monkeypatch, clip, tmp_path):
    listener = webhook_listener.Listener(("127.0.0.1", 0))
    monkeypatch.setenv("SONIFY_PUBLIC_URL", listener.url)
    monkeypatch.setattr(webhooks, "_fetch_paused_until", {})
    try:
        emulator.next_delivery(kind)
        result = pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
        emulator.webhooks.join(5.0)
    finally:
        listener.close()
    assert result.info["status"] == "completed"
    assert [(d.kind, d.status) for d in emulator.deliveries] == [(kind, 400)]


def test_a_content_length_of_401_digits_is_a_413(monkeypatch):
    listener = webhook_listener.Listener(("127.0.0.1", 0))
    try:
        with socket.create_connection(listener.server_address[:2], timeout=5) as client:
            client.sendall(b"POST /sonify/webhook/fal HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 401 + b"\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 413")
    finally:
        listener.close()


def test_a_body_dripped_slowly_is_dropped_at_the_whole_request_deadline(monkeypatch):
    """One byte every 0.2 s (well inside any per-read timeout) is cut when the request's deadline passes."""
    monkeypatch.setenv("SONIFY_WEBHOOK_SECONDS", "1")
    listener = webhook_listener.Listener(("127.0.0.1", 0))
    try:
        with socket.create_connection(listener.server_address[:2], timeout=5) as client:
            start = time.monotonic()
            client.sendall(b"POST /sonify/webhook/wavespeed HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            while time.monotonic() - start < 4.0:
                readable, _, _ = select.select([client], [], [], 0.2)  # the listener's answer, or drip one more
                if readable:
                    break
                client.sendall(b"{")
            answered = time.monotonic() - start
            answer = b"".join(iter(lambda: client.recv(4096), b""))  # the answer, then the connection closes
    finally:
        listener.close()
    assert 0.9 < answered < 2.5, answered  # (without the deadline: no answer for as long as bytes come)
    assert answer.startswith(b"HTTP/1.1 408") and b"SONIFY_WEBHOOK_SECONDS" in answer


def test_half_sent_requests_get_no_more_threads_than_the_cap(monkeypatch):
    monkeypatch.setenv("SONIFY_WEBHOOK_THREADS", "4")
    listener = webhook_listener.Listener(("127.0.0.1", 0))
    clients: list[socket.socket] = []
    try:
        for _ in range(150):
            client = socket.create_connection(listener.server_address[:2], timeout=5)
            client.sendall(b"POST /sonify/webhook/fal HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            clients.append(client)
        refused: set[socket.socket] = set()
        deadline = time.monotonic() + 5.0
        while len(refused) < 146 and time.monotonic() < deadline:  # refused at once: answered, or closed
            readable, _, _ = select.select([c for c in clients if c not in refused], [], [], 0.5)
            refused.update(readable)
        serving = [t for t in threading.enumerate() if "process_request_thread" in t.name]
        answers = b"".join(_read_all(c) for c in list(refused)[:5])
    finally:
        for client in clients:
            client.close()
        listener.close()
    assert len(refused) == 146 and len(serving) <= 4
    assert b"503" in answers and b"SONIFY_WEBHOOK_THREADS" in answers


def _read_all(client: socket.socket) -> bytes:
    try:
        return client.recv(4096)
    except OSError:  # reset after the answer: the refused request's bytes were never read
        return b""


@pytest.mark.parametrize("variable", ["SONIFY_WEBHOOK_SECONDS", "SONIFY_WEBHOOK_THREADS"])
@pytest.mark.parametrize("value", ["0", "-1", "lots", "1e999", "9" * 5000])
def test_a_listener_limit_that_is_not_a_positive_number_is_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        webhook_listener.Listener(("127.0.0.1", 0))


# --- unbounded reads of key material (item 10) ---

KEY_PATHS = {"wavespeed": r"^/api/v3/webhook/secret$", "fal": r"^/\.well-known/jwks\.json$"}
SPECS = {"wavespeed": MMAUDIO_V2, "fal": THINKSOUND_FAL}


@pytest.fixture
def hooked(request, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """The provider under test pointed at the emulator, with webhooks on (the listener) and nothing held."""
    provider = request.param
    request.getfixturevalue(f"{provider}_env")
    listener = webhook_listener.Listener(("127.0.0.1", 0))
    request.addfinalizer(listener.close)
    monkeypatch.setenv("SONIFY_PUBLIC_URL", listener.url)
    monkeypatch.setenv("SONIFY_FAL_JWKS_URL", f"{emulator.url}/.well-known/jwks.json")
    monkeypatch.setenv("SONIFY_TRANSFER_TIMEOUT", "5")  # without the cap, reading on would end here
    monkeypatch.setattr(webhooks, "_fetch_paused_until", {})
    monkeypatch.setattr(webhooks.RECEIVER, "_fal_keys", {})
    return provider


@pytest.mark.parametrize("shape", ["endless", "declared"])
@pytest.mark.parametrize("hooked", ["wavespeed", "fal"], indirect=True)
def test_an_oversized_key_answer_is_refused_without_reading_it_whole(hooked, shape, emulator, clip, tmp_path, caplog):
    """An answer without a length that never ends, or one that declares 150 MiB: refused at the cap (64 KiB by
    default), the job goes on without a webhook."""
    if shape == "endless":
        emulator.endless("GET", KEY_PATHS[hooked])
    else:
        emulator.bogus_length("GET", KEY_PATHS[hooked], str(150 << 20))
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="sonify"):
        result = pipeline.run(SPECS[hooked], {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert emulator.tasks.get(result.info["task_id"]).webhook == ""
    assert "larger than 64 KiB (SONIFY_WEBHOOK_KEYS_MAX_KB" in caplog.text
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("hooked", ["fal"], indirect=True)
def test_a_key_set_of_20000_keys_is_refused_and_says_the_cap(hooked, emulator, clip, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("SONIFY_WEBHOOK_KEYS_MAX_KB", "4096")  # so that the count, not the size, refuses it
    keys = [{"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(hashlib.sha256(b"%d" % i).digest())
             .decode().rstrip("=")} for i in range(20_000)]
    emulator.inject("GET", KEY_PATHS["fal"], 200, body={"keys": keys})
    with caplog.at_level(logging.INFO, logger="sonify"):
        result = pipeline.run(THINKSOUND_FAL, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert emulator.tasks.get(result.info["task_id"]).webhook == ""
    assert re.search(r"holds 20000 keys, more than the 16 .*SONIFY_FAL_JWKS_MAX_KEYS", caplog.text)


def test_a_forged_delivery_is_checked_against_at_most_the_capped_keys(monkeypatch):
    monkeypatch.setenv("SONIFY_FAL_JWKS_MAX_KEYS", "3")
    hub = webhooks.Receiver(webhooks.Wakeups(), clock=lambda: float(NOW))
    signers = [Ed25519PrivateKey.generate() for _ in range(4)]
    with pytest.raises(ValueError, match="holds 4 keys, more than the 3"):
        hub.trust_fal_jwks("https://jwks.example/keys", jwks_of(*signers))
    assert hub.trust_fal_jwks("https://jwks.example/keys", jwks_of(*signers[:3])) == 3


@pytest.mark.parametrize("variable", ["SONIFY_WEBHOOK_KEYS_MAX_KB", "SONIFY_FAL_JWKS_MAX_KEYS"])
def test_a_key_material_cap_that_is_not_a_positive_number_is_named_before_any_request(
        variable, wavespeed_env, emulator, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_PUBLIC_URL", "https://box.example.com")
    monkeypatch.setenv(variable, "none")
    with pytest.raises(ConfigurationError, match=variable):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert emulator.requests == []
