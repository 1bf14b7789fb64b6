"""Signed webhook deliveries: when a task whose submit carried a webhook URL (WaveSpeed `?webhook=`, fal
`?fal_webhook=`) reaches its final status, the emulator POSTs to that URL, signed the way the provider signs:

- WaveSpeed, as https://wavespeed.ai/docs/docs-api/verifying_webhook publishes it: headers `webhook-id`,
  `webhook-timestamp`, `webhook-signature: v3,<hex>`, the hex HMAC-SHA256 over `{id}.{timestamp}.{raw body}` whose
  key is the account's secret after its `whsec_` prefix, as text (not base64-decoded); the secret is served at
  GET /api/v3/webhook/secret as `data.secret`.
- fal: `X-Fal-Webhook-Request-Id`, `-User-Id`, `-Timestamp`, `-Signature` (hex ED25519 over
  `{request id}\\n{user id}\\n{timestamp}\\n{sha256 hex of the body}`), with a key pair made at start whose
  public half is served as a JWKS at /.well-known/jwks.json. Needs `cryptography`; without it fal tasks are
  not delivered (and the JWKS answers 503).

Deliveries go only to this machine (the emulator never posts anywhere else), each once, on its own thread;
`deliveries` records what the receiver answered. Hostile deliveries (`next_delivery`): "bad_signature" (the
signature of another body), "duplicate" (the same delivery twice), "stale" (a timestamp 10 minutes old),
"respelled" (the same delivery again with its signature's hex in upper case), "huge_timestamp" (a timestamp of
401 digits, signed), "deep_json" (a validly signed body that is an array nested DEEP_JSON levels deep).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from .storage import is_loopback

log = logging.getLogger("sonify.emulator")

KINDS = ("bad_signature", "duplicate", "stale", "respelled", "huge_timestamp", "deep_json")
FAL_USER_ID = "sonify-emulator-user"
POST_TIMEOUT = (2.0, 5.0)
STALE_SECONDS = 600
DEEP_JSON = 50_000


@dataclass(frozen=True)
class DeliveryRecord:
    provider: str
    task_id: str  # as the provider's answers name it
    kind: str  # "valid" or one of KINDS
    status: int | None  # what the receiver answered (None: no answer)
    detail: str  # the answer's body (its start)
    at: float  # time.monotonic() the POST was sent


class Deliveries:
    def __init__(self) -> None:
        self.wavespeed_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self._fal_key = _ed25519_private_key()
        self._lock = threading.Lock()
        self._next: deque[str] = deque()
        self._records: list[DeliveryRecord] = []
        self._threads: list[threading.Thread] = []

    def next_delivery(self, kind: str, times: int = 1) -> None:
        """The next `times` deliveries (of either provider) are hostile in this way (KINDS)."""
        if kind not in KINDS:
            raise ValueError(f"unknown delivery kind {kind!r}; one of {KINDS}")
        with self._lock:
            self._next.extend([kind] * times)

    @property
    def records(self) -> list[DeliveryRecord]:
        with self._lock:
            return list(self._records)

    def jwks(self) -> dict[str, Any] | None:
        """The public half of the fal signing key as a JWKS (None without `cryptography`)."""
        if self._fal_key is None:
            return None
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = self._fal_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "sonify-emulator", "use": "sig"}]}

    def deliver(self, provider: str, url: str, task_id: str, payload: dict[str, Any]) -> None:
        """POST `payload` to `url` on a thread, signed as `provider` signs (or as the next hostile kind)."""
        if not is_loopback(urlsplit(url).hostname) or urlsplit(url).scheme not in ("http", "https"):
            log.warning("emulator: webhook URL %s is not on this machine; not delivered", url)
            return
        if provider == "fal" and self._fal_key is None:
            log.warning("emulator: fal webhooks need the `cryptography` package; not delivered")
            return
        with self._lock:
            kind = self._next.popleft() if self._next else "valid"
        thread = threading.Thread(target=self._post, args=(provider, url, task_id, payload, kind),
                                  name=f"sonify-emulator-webhook-{task_id[:8]}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _post(self, provider: str, url: str, task_id: str, payload: dict[str, Any], kind: str) -> None:
        body = b"[" * DEEP_JSON + b"]" * DEEP_JSON if kind == "deep_json" else json.dumps(payload).encode()
        now = int(time.time()) - (STALE_SECONDS if kind == "stale" else 0)
        stamp = "9" * 401 if kind == "huge_timestamp" else str(now)
        signed_body = body + b" " if kind == "bad_signature" else body
        sign: Callable[[bytes, str], dict[str, str]] = self._wavespeed_headers if provider == "wavespeed" else (
            lambda b, t: self._fal_headers(task_id, b, t))
        headers = {"Content-Type": "application/json", **sign(signed_body, stamp)}
        signature = "webhook-signature" if provider == "wavespeed" else "X-Fal-Webhook-Signature"
        respelled = {**headers, signature: headers[signature].upper().replace("V3,", "v3,")}
        for sent in {"duplicate": [headers, headers], "respelled": [headers, respelled]}.get(kind, [headers]):
            at, status, text = time.monotonic(), None, ""
            try:
                with requests.Session() as session:
                    session.trust_env = False  # never through a proxy from the environment
                    with session.post(url, data=body, headers=sent, timeout=POST_TIMEOUT) as answer:
                        status, text = answer.status_code, answer.text[:300]
            except requests.RequestException as exc:
                log.info("emulator: webhook delivery to %s failed (%s)", url, type(exc).__name__)
            with self._lock:
                self._records.append(DeliveryRecord(provider, task_id, kind, status, text, at))

    def _wavespeed_headers(self, body: bytes, stamp: str) -> dict[str, str]:
        """WaveSpeed's published form (module docstring): the key is the secret's text after `whsec_`."""
        webhook_id = "msg_" + secrets.token_hex(12)
        key = self.wavespeed_secret.removeprefix("whsec_").encode()
        mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        return {"webhook-id": webhook_id, "webhook-timestamp": stamp, "webhook-signature": "v3," + mac}

    def _fal_headers(self, request_id: str, body: bytes, stamp: str) -> dict[str, str]:
        message = "\n".join((request_id, FAL_USER_ID, stamp, hashlib.sha256(body).hexdigest())).encode()
        return {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": FAL_USER_ID,
                "X-Fal-Webhook-Timestamp": stamp, "X-Fal-Webhook-Signature": self._fal_key.sign(message).hex()}


def _ed25519_private_key() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        return None
    return Ed25519PrivateKey.generate()
