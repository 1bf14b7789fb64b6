"""Webhooks as wake-ups: a provider's delivery, once verified, only wakes the job waiting on that task; the
job then reads the task's state as usual (polling stays the source of truth).

Only when SONIFY_PUBLIC_URL is set do submits ask for deliveries, at `<SONIFY_PUBLIC_URL>/sonify/webhook/<provider>`
(`hook_url`). What answers there — the pack's route on ComfyUI's server (nodes/webhook_route.py) or the
command line's listener (webhook_listener.py) — hands the raw delivery to `RECEIVER.receive`, which verifies
it, refuses replays, and wakes `WAKEUPS`. A delivery that comes before the submit's answer (no job knows the
task id yet) is kept for KEEP_SECONDS: the wait that starts on that task is woken at once.

Verification, as each provider publishes it:
- WaveSpeed (https://wavespeed.ai/docs/docs-api/verifying_webhook): the account's `whsec_` secret
  (GET /api/v3/webhook/secret, fetched once per key by the client and handed to `trust_wavespeed_secret`);
  `webhook-signature: v3,<hex>`, the hex HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{raw body}` whose
  key is the secret's text after `whsec_` as it is ("do not base64 decode it"); 300 s. Several space-separated
  signatures are accepted if one matches (the header's form allows a list; the docs show one).
- fal (docs.fal.ai, Webhooks, "Verifying your webhook"): `X-Fal-Webhook-Signature` (hex) is an ED25519
  signature of `{request id}\\n{user id}\\n{timestamp}\\n{sha256 hex of the body}` (the X-Fal-Webhook-Request-Id,
  -User-Id and -Timestamp headers), checked against the keys of fal's JWKS (Settings.fal_jwks_urls(); fetched
  by the client, handed to `trust_fal_jwks`, at most a day old before it is fetched again); ±300 s. ED25519
  needs the `cryptography` package; without it fal deliveries are not asked for (`ed25519_missing`).
Both: the timestamp within TOLERANCE seconds of now. A delivery seen before is acknowledged and ignored: it is
remembered by its canonical signature (the verified bytes, however the header spelled them).

What a delivery may cost is bounded: MAX_BODY bytes, a timestamp of at most STAMP_DIGITS digits, JSON parsed
without a RecursionError, and (settings.py) the key material's size and fal's key count, which bound the work a
forged delivery makes on ComfyUI's event loop.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import settings
from ..net.http import ByteCap
from ..redact import register_secret
from .base import is_task_id

ROUTE = "/sonify/webhook/{provider}"  # aiohttp's pattern syntax; the listener matches the same paths


PROVIDERS = ("wavespeed", "fal")


TOLERANCE = 300.0  # seconds a delivery's timestamp may be off from now (both providers' documented window)


KEEP_SECONDS = 120.0  # a verified wake-up for a task nobody waits on yet is kept this long


MAX_BODY = 1 << 20  # a delivery carries a prediction or a result's URLs: far less than this


JWKS_SECONDS = 24 * 3600.0  # fal asks for its keys to be cached no longer than a day


KEY_FETCH_PAUSE = 600.0  # seconds without trying again after the secret or key set could not be fetched


STAMP_DIGITS = 12  # a Unix time in seconds has 10 digits until the year 2286


WAVESPEED_SIGNATURE = re.compile(r"v3,([0-9a-fA-F]{64})")  # one entry of webhook-signature (its hex in any case)


FAL_SIGNATURE = re.compile(r"[0-9a-fA-F]{128}")  # an ED25519 signature's 64 bytes as hex


BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def hook_url(provider: str) -> str | None:
    """Where `provider` is asked to deliver, or None when webhooks are off (no SONIFY_PUBLIC_URL). Read from
    settings.current() at the submit: the client that asks has no run's snapshot."""
    base = settings.current().public_url
    return None if base is None else base + ROUTE.format(provider=provider)


def key_answer_cap() -> ByteCap:
    """The byte cap on an answer that carries key material (WaveSpeed's secret, fal's key set)."""
    return ByteCap(settings.current().key_answer_max_bytes, settings.KEY_ANSWER_KB_ENV)


def ed25519_missing() -> str:
    """Why fal deliveries cannot be verified here ('' when they can)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
    except ImportError:
        return "the Python package `cryptography` (needed to check fal's ED25519 signatures) is not installed"
    return ""


_fetch_paused_until: dict[str, float] = {}  # provider -> monotonic time: its key material failed to come


def key_fetch_paused(provider: str) -> bool:
    """The provider's secret or key set could not be had a short while ago: submits go without a webhook
    meanwhile instead of paying the fetch's retries again on every submit."""
    return time.monotonic() < _fetch_paused_until.get(provider, 0.0)


def key_fetch_failed(provider: str) -> None:
    _fetch_paused_until[provider] = time.monotonic() + KEY_FETCH_PAUSE


class Rejected(Exception):
    """A delivery that changes nothing: `status` is the HTTP answer, the message says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Wakeups:
    """Task id -> wake-up. A wait listens on its task (`listening`); a verified delivery `wake`s it. A wake-up
    for a task nobody listens on is kept for `keep` seconds, so a wait that starts meanwhile is woken at once."""

    def __init__(self, keep: float = KEEP_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._keep, self._clock = keep, clock
        self._lock = threading.Lock()
        self._listeners: dict[tuple[str, str], list[threading.Event]] = {}
        self._early: dict[tuple[str, str], float] = {}  # (provider, task id) -> when it was woken
        self._watchers: dict[str, list[threading.Event]] = {}  # provider -> events set by any of its deliveries

    @contextlib.contextmanager
    def listening(self, provider: str, task_id: str) -> Iterator[threading.Event]:
        """An event set when a delivery for the task is verified (already set if one came in the last `keep`
        seconds). The waiter clears it before each look at the task."""
        key, event = (provider, task_id), threading.Event()
        with self._lock:
            self._prune()
            if self._early.pop(key, None) is not None:
                event.set()
            self._listeners.setdefault(key, []).append(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._listeners.get(key, [])
                if event in events:
                    events.remove(event)
                if not events:
                    self._listeners.pop(key, None)

    @contextlib.contextmanager
    def watching(self, provider: str) -> Iterator[threading.Event]:
        """An event set by every verified delivery of `provider`, whatever its task: a submit whose answer was lost
        does not know its task id, and a delivery says a task has just ended (remote_job then looks at once at the
        provider's listing, which shows the task now)."""
        event = threading.Event()
        with self._lock:
            self._watchers.setdefault(provider, []).append(event)
        try:
            yield event
        finally:
            with self._lock:
                self._watchers[provider].remove(event)

    def wake(self, provider: str, task_id: str) -> bool:
        """Wake the waits on the task (and whoever watches the provider); False if none listens on the task (the
        wake-up is kept for a wait to come)."""
        key = (provider, task_id)
        with self._lock:
            events = list(self._listeners.get(key, []))
            if not events:
                self._prune()
                self._early[key] = self._clock()
            watchers = list(self._watchers.get(provider, []))
        for event in events + watchers:
            event.set()
        return bool(events)

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, at in self._early.items() if now - at > self._keep]:
            del self._early[key]


class Receiver:
    """Verifies deliveries and wakes `wakeups`; holds what they are verified with. Thread-safe."""

    def __init__(self, wakeups: Wakeups, clock: Callable[[], float] = time.time) -> None:
        self.wakeups, self._clock = wakeups, clock
        self._lock = threading.Lock()
        self._secrets: list[bytes] = []  # WaveSpeed HMAC keys
        self._fal_keys: dict[str, tuple[list[Any], float]] = {}  # JWKS URL -> (Ed25519PublicKeys, monotonic time)
        self._seen: dict[str, float] = {}  # "<provider> <canonical signature>" -> wall time it may be forgotten

    # --- what deliveries are verified with ---

    def trust_wavespeed_secret(self, secret: str) -> None:
        """The account's `whsec_…` secret (registered for redaction: it is never logged)."""
        register_secret(secret)
        key = secret.removeprefix("whsec_").encode()  # the text itself is the key: WaveSpeed's docs
        with self._lock:
            if key not in self._secrets:
                self._secrets.append(key)

    def trust_fal_jwks(self, url: str, jwks: Any) -> int:
        """fal's key set (the answer from the JWKS at `url`): its Ed25519 keys replace those held (one set, so
        that a delivery is checked against at most Settings.jwks_max_keys keys). Returns how many; ValueError if
        it holds none or too many, ImportError without `cryptography`."""
        keys = ed25519_keys(jwks, settings.current().jwks_max_keys)
        with self._lock:
            self._fal_keys = {url: (keys, time.monotonic())}
        return len(keys)

    def fal_keys_fresh(self, url: str) -> bool:
        """Keys from the JWKS at `url` are held, fetched less than JWKS_SECONDS ago."""
        with self._lock:
            held = self._fal_keys.get(url)
        return held is not None and time.monotonic() - held[1] < JWKS_SECONDS

    # --- a delivery ---

    def receive(self, provider: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """(HTTP status, a short reason) for one delivery; `headers` with lower-case names. 200: a waiting job
        was woken, or the delivery was seen before; 202: verified, no job waits on that task (kept a while);
        400/401/404/413: refused, nothing changed."""
        try:
            if provider not in PROVIDERS:
                raise Rejected(404, f"no webhook route for {provider!r}")
            if len(body) > MAX_BODY:
                raise Rejected(413, f"a delivery is at most {MAX_BODY} bytes")
            now = self._clock()
            if provider == "wavespeed":
                with self._lock:
                    secrets = list(self._secrets)
                delivery, task_id = verify_wavespeed(headers, body, secrets, now)
            else:
                with self._lock:
                    keys = [key for held, _ in self._fal_keys.values() for key in held]
                delivery, task_id = verify_fal(headers, body, keys, now)
        except Rejected as exc:
            return exc.status, str(exc)
        if not self._first_time(f"{provider} {delivery}", now):
            return 200, "seen before: ignored"
        if self.wakeups.wake(provider, task_id):
            return 200, "woke the waiting job"
        return 202, f"no job is waiting for this task now (kept {KEEP_SECONDS:.0f} s for one that starts)"

    def _first_time(self, delivery: str, now: float) -> bool:
        """Remember a verified delivery for as long as its timestamp would pass; False if it was seen."""
        with self._lock:
            for old in [d for d, until in self._seen.items() if until < now]:
                del self._seen[old]
            if delivery in self._seen:
                return False
            self._seen[delivery] = now + 2 * TOLERANCE
            return True


def wavespeed_secret(answer: Any) -> str:
    """The `whsec_` secret in an answer of GET /api/v3/webhook/secret: `data.secret` (as two public clients read
    it), a top-level `secret` (as a guide shows it), or `data` as the secret itself. ValueError without one
    (its text is never repeated: it may be the secret in a form not foreseen)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    places = (data.get("secret") if isinstance(data, dict) else data,
              answer.get("secret") if isinstance(answer, dict) else None)
    for secret in places:
        if isinstance(secret, str) and secret.startswith("whsec_") and len(secret) > len("whsec_"):
            return secret
    raise ValueError("WaveSpeed's webhook secret answer holds no whsec_ secret (looked at data.secret, secret, data)")


def verify_wavespeed(headers: Mapping[str, str], body: bytes, keys: list[bytes], now: float) -> tuple[str, str]:
    """(the delivery's canonical signature, the task id it is about), or Rejected."""
    webhook_id, stamp, signatures = (headers.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (webhook_id and stamp and signatures):
        raise Rejected(400, "webhook-id, webhook-timestamp and webhook-signature headers are required")
    _check_signed_headers(webhook_id, stamp, signatures)
    _check_time(stamp, now)
    if not keys:
        raise Rejected(401, "no WaveSpeed webhook secret is known here (no submit asked for this delivery)")
    given = [bytes.fromhex(m[1]) for m in map(WAVESPEED_SIGNATURE.fullmatch, signatures.split()) if m]
    if not given:
        raise Rejected(401, "webhook-signature holds no v3,<64 hex digits> signature")
    signed = f"{webhook_id}.{stamp}.".encode() + body
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        if any(hmac.compare_digest(g, expected) for g in given):
            break
    else:
        raise Rejected(401, "the signature does not match")
    task_id = _json_field(body, "id")  # the body is the prediction (PROTOCOLS.md)
    if not is_task_id(task_id):
        raise Rejected(400, "the delivery names no task id")
    return expected.hex(), task_id


def verify_fal(headers: Mapping[str, str], body: bytes, keys: list[Any], now: float) -> tuple[str, str]:
    """(the delivery's canonical signature, the request id it is about), or Rejected."""
    names = ("x-fal-webhook-request-id", "x-fal-webhook-user-id", "x-fal-webhook-timestamp", "x-fal-webhook-signature")
    request_id, user_id, stamp, signature = (headers.get(h, "") for h in names)
    if not (request_id and user_id and stamp and signature):
        raise Rejected(400, "the X-Fal-Webhook-Request-Id, -User-Id, -Timestamp and -Signature headers are required")
    _check_signed_headers(request_id, user_id, stamp, signature)
    _check_time(stamp, now)
    if not keys:
        raise Rejected(401, "no fal public key is known here (no submit asked for this delivery)")
    if not FAL_SIGNATURE.fullmatch(signature.strip()):
        raise Rejected(401, "the signature is not 128 hex digits (an ED25519 signature)")
    raw = bytes.fromhex(signature.strip())
    message = "\n".join((request_id, user_id, stamp, hashlib.sha256(body).hexdigest())).encode()
    from cryptography.exceptions import InvalidSignature

    for key in keys:
        try:
            key.verify(raw, message)
            break
        except InvalidSignature:
            continue
    else:
        raise Rejected(401, "the signature does not match")
    if not is_task_id(request_id):
        raise Rejected(400, "the delivery names no request id")
    return raw.hex(), request_id


def ed25519_keys(jwks: Any, max_keys: int) -> list[Any]:
    """The Ed25519 public keys of a JWKS (`{"keys": [{"x": <base64url>, …}, …]}`): every entry whose `x` is 32
    bytes — fal's docs do not promise `kty`/`crv`. ValueError if it has none, or more than `max_keys` entries."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    entries = entries if isinstance(entries, list) else []
    if len(entries) > max_keys:
        raise ValueError(f"fal's key set holds {len(entries)} keys, more than the {max_keys} a delivery is checked "
                         f"against ({settings.JWKS_MAX_KEYS_ENV} sets this cap)")
    keys = []
    for entry in entries:
        x = entry.get("x") if isinstance(entry, dict) else None
        if not isinstance(x, str) or not BASE64URL.fullmatch(x):
            continue
        digits = x.rstrip("=")
        try:
            raw = base64.urlsafe_b64decode(digits + "=" * (-len(digits) % 4))
            if len(raw) == 32:
                keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (binascii.Error, ValueError):
            continue
    if not keys:
        raise ValueError("fal's key set holds no key whose x is 32 bytes (an Ed25519 public key)")
    return keys


def _check_signed_headers(*values: str) -> None:
    """Signed header values are ASCII (ids, digits, hex): other text has no one byte form to check."""
    if not all(value.isascii() for value in values):
        raise Rejected(400, "the signed webhook headers must be ASCII")


def _check_time(stamp: str, now: float) -> None:
    if not (stamp.isdigit() and len(stamp) <= STAMP_DIGITS):  # (ASCII already: _check_signed_headers)
        raise Rejected(400, f"the timestamp is not Unix seconds (at most {STAMP_DIGITS} digits)")
    if abs(now - int(stamp)) > TOLERANCE:
        raise Rejected(401, f"the timestamp is more than {TOLERANCE:.0f} s from now (a replay, or a clock far off)")


def _json_field(body: bytes, name: str) -> Any:
    try:
        value = json.loads(body)
    except RecursionError:  # json's C decoder refuses cleanly at the interpreter's depth limit
        raise Rejected(400, "the delivery's JSON is nested too deeply to read") from None
    except ValueError:
        return None
    return value.get(name) if isinstance(value, dict) else None


WAKEUPS = Wakeups()


RECEIVER = Receiver(WAKEUPS)
