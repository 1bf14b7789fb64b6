"""The two signature schemes as the providers publish them, each expected value computed here with `hmac`,
`hashlib` and `cryptography` as the docs show it — never through the emulator's signer:

- WaveSpeed (https://wavespeed.ai/docs/docs-api/verifying_webhook): `webhook-signature: v3,<hex>`, the hex
  HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed by the secret's text after `whsec_`
  (not base64-decoded); the secret from GET /api/v3/webhook/secret in any of three shapes.
- fal (docs.fal.ai Webhooks, "Verifying your webhook"): hex ED25519 over
  `request_id\\nuser_id\\ntimestamp\\n<hex sha256 of body>`, against a JWKS fetched from the documented URL first
  (then rest.fal.ai), any key whose `x` is 32 bytes accepted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sonify import pipeline, settings
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL
from sonify.cli import webhook_listener
from sonify.providers import webhooks

NOW = 1_765_000_000
TASK = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
# A secret whose text after whsec_ is itself valid base64 (as the docs' example is): the key must be that text.
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
BODY = json.dumps({"id": TASK, "model": MMAUDIO_V2.model_id, "status": "completed", "outputs": []}).encode()


def wavespeed_signature(secret: str, webhook_id: str, stamp: str, body: bytes) -> str:
    """As WaveSpeed's docs compute it: hex HMAC-SHA256, key = the secret's text after `whsec_`."""
    key = secret[len("whsec_"):].encode()
    return hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).hexdigest()


def wavespeed_headers(signature_header: str, webhook_id: str = "msg_1", stamp: str = str(NOW)) -> dict[str, str]:
    return {"webhook-id": webhook_id, "webhook-timestamp": stamp, "webhook-signature": signature_header}


def fal_message(request_id: str, user_id: str, stamp: str, body: bytes) -> bytes:
    """As fal's docs build it: the three headers and the body's sha256 hex, joined by newlines."""
    return "\n".join((request_id, user_id, stamp, hashlib.sha256(body).hexdigest())).encode()


def fal_headers(private: Ed25519PrivateKey, body: bytes, request_id: str = TASK, stamp: str = str(NOW)) -> dict[str, str]:
    signature = private.sign(fal_message(request_id, "user-1", stamp, body)).hex()
    return {"x-fal-webhook-request-id": request_id, "x-fal-webhook-user-id": "user-1",
            "x-fal-webhook-timestamp": stamp, "x-fal-webhook-signature": signature}


def x_of(private: Ed25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def receiver() -> webhooks.Receiver:
    return webhooks.Receiver(webhooks.Wakeups(), clock=lambda: float(NOW))


# --- WaveSpeed ---

def test_a_wavespeed_delivery_signed_as_the_docs_show_verifies():
    hub = receiver()
    hub.trust_wavespeed_secret(SECRET)
    signature = wavespeed_signature(SECRET, "msg_1", str(NOW), BODY)
    with hub.wakeups.listening("wavespeed", TASK) as wake:
        assert hub.receive("wavespeed", wavespeed_headers(f"v3,{signature}"), BODY) == (200, "woke the waiting job")
        assert wake.is_set()


def test_the_wavespeed_key_is_the_secrets_text_not_its_base64_decoding():
    """The Standard Webhooks form (v1, base64, decoded key) that Sonify expected before is not WaveSpeed's."""
    hub = receiver()
    hub.trust_wavespeed_secret(SECRET)
    signed = f"msg_1.{NOW}.".encode() + BODY
    decoded_key = hmac.new(base64.b64decode(SECRET[len("whsec_"):]), signed, hashlib.sha256)
    for header in (f"v3,{decoded_key.hexdigest()}", f"v1,{base64.b64encode(decoded_key.digest()).decode()}"):
        status, reason = hub.receive("wavespeed", wavespeed_headers(header), BODY)
        assert status == 401, reason


@pytest.mark.parametrize("layout", ["{wrong} {right}", "{right} {wrong}", "v1,abc= {right}"])
def test_any_one_of_several_wavespeed_signatures_may_match(layout):
    hub = receiver()
    hub.trust_wavespeed_secret(SECRET)
    right = "v3," + wavespeed_signature(SECRET, "msg_1", str(NOW), BODY)
    wrong = "v3," + wavespeed_signature(SECRET, "msg_1", str(NOW), BODY + b" ")
    header = layout.format(right=right, wrong=wrong)
    assert hub.receive("wavespeed", wavespeed_headers(header), BODY)[0] == 202


@pytest.mark.parametrize("header", ["", "v3,", "v3,zz", "v2,{sig}", "v3;{sig}", "{sig}"])
def test_a_wavespeed_signature_not_in_the_v3_hex_form_is_refused(header):
    hub = receiver()
    hub.trust_wavespeed_secret(SECRET)
    sig = wavespeed_signature(SECRET, "msg_1", str(NOW), BODY)
    status, _ = hub.receive("wavespeed", wavespeed_headers(header.format(sig=sig)), BODY)
    assert status in (400, 401)


@pytest.mark.parametrize("answer", [
    {"code": 200, "message": "success", "data": {"secret": SECRET}},  # data.secret: two public clients
    {"secret": SECRET},  # a top-level secret: a guide
    {"code": 200, "message": "success", "data": SECRET},  # data as the string itself
])
def test_the_secret_is_read_from_each_of_its_shapes(answer):
    assert webhooks.wavespeed_secret(answer) == SECRET


@pytest.mark.parametrize("answer", [{}, {"data": {}}, {"data": {"secret": "plain"}}, {"secret": "whsec_"},
                                    {"data": 7}, [SECRET], None])
def test_an_answer_without_a_whsec_secret_is_refused_without_repeating_it(answer):
    with pytest.raises(ValueError, match="no whsec_ secret") as caught:
        webhooks.wavespeed_secret(answer)
    assert "plain" not in str(caught.value)


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> webhook_listener.Listener:
    server = webhook_listener.Listener(("127.0.0.1", 0))
    monkeypatch.setenv("SONIFY_PUBLIC_URL", server.url)
    monkeypatch.setattr(webhooks, "_fetch_paused_until", {})
    yield server
    server.close()


@pytest.mark.parametrize("shape", ["data.secret", "secret", "data"])
def test_the_client_takes_the_secret_in_each_shape_and_deliveries_signed_with_it_verify(
        shape, wavespeed_env, emulator, listener, clip, tmp_path):
    secret = "whsec_" + base64.b64encode(hashlib.sha256(shape.encode()).digest()).decode()
    answer = {"data.secret": {"code": 200, "data": {"secret": secret}}, "secret": {"secret": secret},
              "data": {"code": 200, "data": secret}}[shape]
    emulator.inject("GET", r"^/api/v3/webhook/secret$", 200, body=answer)
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    task_id = result.info["task_id"]
    assert emulator.tasks.get(task_id).webhook == f"{listener.url}/sonify/webhook/wavespeed"
    body = json.dumps({"id": task_id, "status": "completed"}).encode()
    stamp = str(int(time.time()))
    headers = wavespeed_headers("v3," + wavespeed_signature(secret, "msg_" + shape, stamp, body), "msg_" + shape, stamp)
    answer = requests.post(f"{listener.url}/sonify/webhook/wavespeed", data=body, headers=headers, timeout=5)
    assert answer.status_code == 202, answer.text  # verified; the job is over, so nobody waits on it


# --- fal ---

def test_a_fal_delivery_signed_as_the_docs_show_verifies_with_a_key_that_names_no_kty_or_crv():
    private = Ed25519PrivateKey.generate()
    hub = receiver()
    assert hub.trust_fal_jwks("https://jwks.example/keys", {"keys": [{"x": x_of(private)}]}) == 1
    with hub.wakeups.listening("fal", TASK) as wake:
        assert hub.receive("fal", fal_headers(private, BODY), BODY) == (200, "woke the waiting job")
        assert wake.is_set()
    other = Ed25519PrivateKey.generate()
    assert hub.receive("fal", fal_headers(other, BODY), BODY)[0] == 401


def test_every_jwks_entry_whose_x_is_32_bytes_is_a_key_and_no_other():
    signers = [Ed25519PrivateKey.generate() for _ in range(2)]
    short = base64.urlsafe_b64encode(bytes(31)).decode().rstrip("=")
    jwks = {"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": x_of(signers[0]), "kid": "a"},
        {"x": x_of(signers[1])},
        {"kty": "OKP", "crv": "Ed25519", "x": short},
        {"x": "not base64url!"},
        {"kid": "no x"},
        "not an object",
    ]}
    hub = receiver()
    assert hub.trust_fal_jwks("https://jwks.example/keys", jwks) == 2
    for signer in signers:
        assert hub.receive("fal", fal_headers(signer, BODY), BODY)[0] == 202
    with pytest.raises(ValueError, match="32 bytes"):
        hub.trust_fal_jwks("https://jwks.example/keys", {"keys": [{"x": short}]})


def test_the_documented_key_set_url_comes_first_then_rest_fal_ai(monkeypatch):
    monkeypatch.delenv("SONIFY_FAL_JWKS_URL", raising=False)
    monkeypatch.setattr(settings, "emulator", None)
    assert settings.current().fal_jwks_urls() == ("https://rest.alpha.fal.ai/.well-known/jwks.json",
                                      "https://rest.fal.ai/.well-known/jwks.json")


def test_a_key_set_url_that_fails_falls_back_to_the_next(fal_env, emulator, listener, clip, tmp_path, monkeypatch):
    monkeypatch.setattr(webhooks.RECEIVER, "_fal_keys", {})
    monkeypatch.setenv("SONIFY_FAL_JWKS_URL", f"{emulator.url}/missing/jwks.json {emulator.url}/.well-known/jwks.json")
    result = pipeline.run(THINKSOUND_FAL, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert emulator.tasks.get(result.info["task_id"]).webhook == f"{listener.url}/sonify/webhook/fal"
    asked = [(r.path, r.status) for r in emulator.requests if re.search(r"jwks", r.path)]
    assert asked == [("/missing/jwks.json", 404), ("/.well-known/jwks.json", 200)]
    emulator.webhooks.join(5.0)
    assert [(d.kind, d.status in (200, 202)) for d in emulator.deliveries] == [("valid", True)]


def test_a_delivery_through_the_real_listener_with_a_test_made_fal_key(listener, monkeypatch):
    """The listener hands the raw bytes and headers to the receiver unchanged: a signature made here verifies."""
    private = Ed25519PrivateKey.generate()
    monkeypatch.setattr(webhooks.RECEIVER, "_fal_keys", {})
    webhooks.RECEIVER.trust_fal_jwks("https://jwks.example/keys", {"keys": [{"x": x_of(private)}]})
    body = b'{"request_id": "%s", "status": "OK", "payload": {}}' % TASK.encode()
    headers: dict[str, Any] = fal_headers(private, body, stamp=str(int(time.time())))
    answer = requests.post(f"{listener.url}/sonify/webhook/fal", data=body, headers=headers, timeout=5)
    assert answer.status_code == 202, answer.text
