"""fal: CDN upload (fallback: storage upload), queue submit, status stream (fallback: polling),
result, cancel. Protocol notes: shared/PROTOCOLS.md; the official client read: fal_client 1.0.3, client.py."""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from .. import settings
from ..errors import ConfigurationError, ProviderError, SonifyError, ValidationError
from ..net.http import RETRYABLE, FileBody, Http, excerpt
from ..net.sse import EventReader
from ..redact import register_secret
from ..waiter import SLICE, Waiter
from . import webhooks
from .base import (
    CANCEL_TIMEOUT,
    COMPLETED,
    FAILED,
    LISTING_PAGES,
    QUEUED,
    RUNNING,
    CancelOutcome,
    KeyCheck,
    TaskState,
    WaitLimits,
    answered_id,
    check_limits,
    iso_utc,
    poll_until_final,
    unix_time,
)
from .schedule import History

log = logging.getLogger("sonify")

NAME = "fal"
TOKEN_MARGIN = 60.0  # a CDN token is renewed this many seconds before it expires
UPLOAD_TIMEOUT = (10.0, 300.0)
REPORT_EVERY = 1.0  # seconds between progress reports while the stream is quiet
MEDIA_FIELDS = {"video_url": "video", "audio_url": "audio"}  # fal's field -> our input name
NAMESPACES = ("workflows", "comfy")  # app ids with a namespace have three parts: namespace/owner/app
# The body `status` of a cancel's answer, whatever its HTTP code (fal.ai/docs/inference-api/queue/cancel): OK —
# removed from the queue; CANCELLATION_REQUESTED — the runner was told to stop; ALREADY_COMPLETED; NOT_FOUND.
CANCEL_ANSWERS = {"OK": CancelOutcome.ACCEPTED, "CANCELLATION_REQUESTED": CancelOutcome.ACCEPTED,
                  "ALREADY_COMPLETED": CancelOutcome.FINISHED}
ERROR_TYPES = {
    "request_timeout": "the request ran past its time limit",
    "startup_timeout": "the model's machine did not start in time",
    "runner_scheduling_failure": "fal found no machine to run the model",
    "internal_error": "fal had an internal error",
}


@dataclass(frozen=True)
class RequestUrls:
    status: str
    response: str
    cancel: str


@dataclass(frozen=True)
class _CdnToken:
    header: str  # "{token_type} {token}"
    usable_until: float  # time.monotonic()


class Fal:
    name = NAME
    # Its request listing shows FINISHED requests only: its status filter is `success | error | user_error` and it
    # sorts by end time (docs.fal.ai/platform-apis/v1/models/requests/by-endpoint). A lost submit's request that is
    # still queued or running is not there yet: an empty listing proves nothing until the job's bound has passed.
    lists_unfinished = False

    def __init__(self, api_key: str, queue_url: str, rest_url: str, api_url: str = "https://api.fal.ai",
                 cdn_url: str = "https://v3.fal.media") -> None:
        self.queue_url = queue_url.rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self.api_url = api_url.rstrip("/")  # the platform API: the request listing
        self.cdn_url = cdn_url.rstrip("/")  # where a file goes in one part (never given the key)
        self.http = Http(
            NAME, self.queue_url, {"Authorization": f"Key {api_key}"}, self._describe_error,
            other_api_urls=(self.rest_url, self.api_url),
        )
        self._lock = threading.Lock()
        self._token: _CdnToken | None = None
        self._token_lock = threading.Lock()  # held while a token is fetched: one fetch for all threads
        self._urls: dict[str, RequestUrls] = {}
        self._logged: dict[str, int] = {}

    # --- errors ---

    def _describe_error(self, response: requests.Response) -> str | SonifyError:
        body = _json_or_none(response)
        if response.status_code == 401 and self.http.is_api_url(response.url):
            return "FAL_KEY is not valid (fal answered HTTP 401)"
        detail = body.get("detail") if isinstance(body, dict) else None
        if response.status_code == 422 and isinstance(detail, list):
            error = validation_error(detail)
            if error is not None:
                return error
        text = _detail_text(detail) or excerpt(response.text) or response.reason or ""
        error_type = (body.get("error_type") if isinstance(body, dict) else None) or response.headers.get("X-Fal-Error-Type")
        hints = {403: " (check the account's balance and access)", 429: " (rate limit, or the queue is full)"}
        return f"fal answered HTTP {response.status_code}: {text}{error_type_hint(error_type)}{hints.get(response.status_code, '')}"

    # --- upload ---

    @property
    def upload_seconds(self) -> float:
        """How long an upload is reused: half its lifetime, so a job started with it has the other half."""
        return settings.current().upload_ttl_seconds / 2

    def upload(self, path: Path, waiter: Waiter, *, watch: Callable[[int], None] | None = None) -> str:
        """fal's CDN (a short-lived upload token, then the bytes); the storage upload when that fails. Either
        asks fal to keep the file (a public URL) only for SONIFY_UPLOAD_TTL_HOURS (lifecycle_headers).
        `watch` sees the bytes go out (http.FileBody); what it raises is not a failure to fall back from."""
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:
            token = self._cdn_token(waiter)
        except ProviderError as exc:
            if exc.status == 401:
                raise  # the key itself is refused: the storage route would refuse it too
            log.info("fal CDN token unavailable (%s); using the storage upload", exc)
            return self._upload_storage(path, content_type, waiter, watch)
        try:
            return self._upload_cdn(token, path, content_type, waiter, watch)
        except (ProviderError, ConfigurationError) as exc:
            with self._token_lock:
                self._token = None
            log.info("fal CDN upload failed (%s); using the storage upload", exc)
        return self._upload_storage(path, content_type, waiter, watch)

    def _cdn_token(self, waiter: Waiter) -> _CdnToken:
        with self._token_lock:
            if self._token is None or time.monotonic() >= self._token.usable_until:
                self._token = self._new_cdn_token(waiter)
            return self._token

    def _new_cdn_token(self, waiter: Waiter) -> _CdnToken:
        # Not retried: the storage upload is the fallback.
        answer = self.http.json(
            "POST", f"{self.rest_url}/storage/auth/token?storage_type=fal-cdn-v3", idempotent=False, waiter=waiter, json={},
        )
        fields = [answer.get(k) if isinstance(answer, dict) else None for k in ("token", "token_type")]
        if not all(isinstance(f, str) and f for f in fields):
            raise ProviderError("fal's CDN token answer lacks token or token_type")
        token, token_type = fields
        register_secret(token)
        lifetime = seconds_until(answer.get("expires_at"))
        return _CdnToken(f"{token_type} {token}", time.monotonic() + lifetime - TOKEN_MARGIN)

    def _upload_cdn(self, token: _CdnToken, path: Path, content_type: str, waiter: Waiter,
                    watch: Callable[[int], None] | None) -> str:
        """One part to the CDN's fixed host, as the official client sends it (`_upload_v3`: CDN_URL/files/upload;
        the token's `base_url` is only for multipart uploads, which Sonify does not make). The CDN gets its own
        token, never the fal key (not even where its URL is on an API host). A CDN on another machine than the
        API (fal's own, with the emulator's API) is not sent the file: the storage upload takes it instead."""
        if settings.is_loopback(urlsplit(self.cdn_url).hostname) != self.http.local:
            raise ConfigurationError(f"SONIFY_FAL_CDN_URL ({self.cdn_url}) is not on the machine fal's API is on")
        answer = self.http.json(
            "POST", f"{self.cdn_url}/files/upload", idempotent=False, waiter=waiter, data=FileBody(path, waiter, watch),
            headers={"Authorization": token.header, "Content-Type": content_type, "X-Fal-File-Name": header_safe(path.name),
                     **lifecycle_headers()},
            timeout=UPLOAD_TIMEOUT, auth=False,
        )
        url = answer.get("access_url") if isinstance(answer, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderError("fal's CDN answered without an access_url")
        return url

    def _upload_storage(self, path: Path, content_type: str, waiter: Waiter,
                        watch: Callable[[int], None] | None) -> str:
        answer = self.http.json(
            "POST", f"{self.rest_url}/storage/upload/initiate?storage_type=gcs", idempotent=True, waiter=waiter,
            json={"file_name": path.name, "content_type": content_type}, headers=lifecycle_headers(),
        )
        upload_url, file_url = (answer.get(k) if isinstance(answer, dict) else None for k in ("upload_url", "file_url"))
        if not isinstance(upload_url, str) or not isinstance(file_url, str) or not upload_url or not file_url:
            raise ProviderError("fal's storage upload answer lacks upload_url or file_url")
        self.http.request(  # only its Content-Type: no key, wherever the URL points
            "PUT", upload_url, idempotent=True, waiter=waiter, data=FileBody(path, waiter, watch),
            headers={"Content-Type": content_type}, timeout=UPLOAD_TIMEOUT, auth=False,
        )
        return file_url

    # --- submit ---

    def submit(self, model_id: str, body: dict[str, Any], waiter: Waiter) -> str:
        """Never retried: a lost answer may still have queued (and will charge) a request."""
        hook = self._webhook(waiter)
        query = f"?{urlencode({'fal_webhook': hook})}" if hook else ""
        answer = self.http.json("POST", f"{self.queue_url}/{model_id}{query}", idempotent=False, creates=True,
                                waiter=waiter, json=body)
        request_id = answer.get("request_id") if isinstance(answer, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise ProviderError("fal accepted the job but its answer has no request_id")
        request_id = answered_id(request_id, "fal")
        urls = self._returned_urls(answer) or self._built_urls(model_id, request_id)
        with self._lock:
            self._urls[request_id] = urls
        return request_id

    def _webhook(self, waiter: Waiter) -> str | None:
        """The `?fal_webhook=` URL for a submit (webhooks.hook_url), once the receiver holds fal's public keys
        (its JWKS, fetched at most once a day: from the documented URL, else the next of Settings.fal_jwks_urls());
        None (no webhook, as without SONIFY_PUBLIC_URL) when deliveries could not be verified."""
        hook = webhooks.hook_url(NAME)
        if hook is None:
            return None
        urls = settings.current().fal_jwks_urls()
        if any(webhooks.RECEIVER.fal_keys_fresh(url) for url in urls):
            return hook
        if webhooks.key_fetch_paused(NAME):
            return None
        missing = webhooks.ed25519_missing()
        if missing:
            log.info("fal webhooks not requested: %s (pip install cryptography)", missing)
            return None
        failures = []
        for url in urls:
            try:
                jwks = self.http.json("GET", url, idempotent=True, waiter=waiter, auth=False,
                                      cap=webhooks.key_answer_cap())
                webhooks.RECEIVER.trust_fal_jwks(url, jwks)
                return hook
            except (ProviderError, ValueError) as exc:
                failures.append(f"{url}: {exc}")
        log.info("fal webhooks not requested for %.0f s: fal's public keys are unavailable (%s)",
                 webhooks.KEY_FETCH_PAUSE, "; ".join(failures))
        webhooks.key_fetch_failed(NAME)
        return None

    def _returned_urls(self, answer: dict[str, Any]) -> RequestUrls | None:
        """The URLs fal handed back, if all of them are under our queue base URL (else we build them)."""
        urls = [answer.get(k) for k in ("status_url", "response_url", "cancel_url")]
        if all(isinstance(u, str) and u.startswith(self.queue_url + "/") for u in urls):
            return RequestUrls(*urls)
        return None

    def _built_urls(self, model_id: str, request_id: str) -> RequestUrls:
        """Status, result and cancel live under {owner}/{app} only: a submit subpath is dropped."""
        parts = model_id.strip("/").split("/")
        app = "/".join(parts[: 3 if parts[0] in NAMESPACES else 2])
        base = f"{self.queue_url}/{app}/requests/{quote(request_id, safe='')}"
        return RequestUrls(status=base + "/status", response=base, cancel=base + "/cancel")

    def _urls_for(self, task_id: str, model_id: str | None) -> RequestUrls:
        answered_id(task_id, "fal")  # (ids reach here checked: from a submit, the journal or the user)
        with self._lock:
            urls = self._urls.get(task_id)
        if urls is not None:
            return urls
        if not model_id:
            raise ProviderError(f"fal request {task_id}: its model id is needed to find it", task_id=task_id)
        return self._built_urls(model_id, task_id)

    # --- status and result ---

    def state(self, task_id: str, waiter: Waiter, *, model_id: str | None = None) -> TaskState:
        return self._poll(self._urls_for(task_id, model_id), task_id, waiter)

    def _poll(self, urls: RequestUrls, task_id: str, waiter: Waiter) -> TaskState:
        status = self.http.json("GET", urls.status + "?logs=1", idempotent=True, waiter=waiter, task_id=task_id)
        return self._to_state(status, urls, task_id, waiter)

    def _to_state(self, status: Any, urls: RequestUrls, task_id: str, waiter: Waiter) -> TaskState:
        if not isinstance(status, dict):
            raise ProviderError("fal's status answer is not a JSON object", task_id=task_id)
        raw = str(status.get("status", ""))
        self._log_new_lines(task_id, status.get("logs"))
        if raw == "IN_QUEUE":
            position = status.get("queue_position")
            return TaskState(QUEUED, raw, queue_position=position if isinstance(position, int) else None)
        if raw == "IN_PROGRESS":
            return TaskState(RUNNING, raw)
        if raw != "COMPLETED":
            return TaskState(FAILED, raw, error=f"unknown status {raw!r} from fal")
        metrics = status.get("metrics") if isinstance(status.get("metrics"), dict) else {}
        inference = metrics.get("inference_time")
        inference = float(inference) if isinstance(inference, (int, float)) else None
        if status.get("error"):
            error = f"{status['error']}{error_type_hint(status.get('error_type'))}"
            return TaskState(FAILED, raw, error=error, inference_seconds=inference)
        return self._result(urls, task_id, waiter, inference)

    def _result(self, urls: RequestUrls, task_id: str, waiter: Waiter, inference: float | None) -> TaskState:
        try:
            answer = self.http.json(
                "GET", urls.response, idempotent=True, waiter=waiter, task_id=task_id, retry_if=transient_result,
            )
        except (ProviderError, ValidationError) as exc:
            if isinstance(exc, ProviderError) and exc.status is None:
                raise  # no answer at all: the result is still there to fetch
            return TaskState(FAILED, "COMPLETED", error=str(exc), inference_seconds=inference)
        outputs, extra = split_result(answer)
        if not outputs:
            return TaskState(FAILED, "COMPLETED", error="fal reported the request completed but its result has no media URL")
        return TaskState(COMPLETED, "COMPLETED", outputs=outputs, extra=extra, inference_seconds=inference)

    def _log_new_lines(self, task_id: str, logs: Any) -> None:
        if not isinstance(logs, list):
            return
        with self._lock:
            seen, self._logged[task_id] = self._logged.get(task_id, 0), len(logs)
        for line in logs[seen:]:
            if isinstance(line, dict):
                log.debug("fal %s: %s", task_id, line.get("message"))

    # --- waiting ---

    def wait(
        self, task_id: str, waiter: Waiter, on_state: Callable[[TaskState, float], None], limits: WaitLimits,
        *, model_id: str | None = None, history: History | None = None,
    ) -> TaskState:
        """Follow the status stream (no polling latency); poll instead when the stream fails (on the plain
        schedule: `history` is not used, the stream needs none).

        The queue wait and the processing wait stay bounded across the switch."""
        urls = self._urls_for(task_id, model_id)
        clock = _Clock()
        with webhooks.WAKEUPS.listening(NAME, task_id) as wake:
            try:
                return self._wait_stream(urls, task_id, waiter, on_state, limits, clock, wake)
            except _StreamLost as exc:
                log.info("fal status stream for %s unavailable (%s); polling instead", task_id, exc)
            offset = clock.elapsed()
            return poll_until_final(
                lambda: self._poll(urls, task_id, waiter), task_id, NAME, waiter,
                lambda state, elapsed: on_state(state, offset + elapsed), clock.remaining(limits), wake=wake,
            )

    def _wait_stream(
        self, urls: RequestUrls, task_id: str, waiter: Waiter, on_state: Callable[[TaskState, float], None],
        limits: WaitLimits, clock: _Clock, wake: threading.Event,
    ) -> TaskState:
        """Events as they come; a verified webhook delivery (`wake`) makes one poll at once, for a stream that
        has gone quiet or stalled mid-read."""
        try:
            stream = self.http.stream(urls.status + "/stream?logs=1", waiter=waiter, task_id=task_id,
                                      headers={"Accept": "text/event-stream"})
        except ProviderError as exc:
            raise _StreamLost(str(exc)) from None
        events = EventReader(stream)
        try:
            last, reported = None, 0.0
            while True:
                waiter.check()
                event = events.next(SLICE, wake)
                if isinstance(event, str):
                    raise _StreamLost(event)
                if event is None and wake.is_set():
                    wake.clear()
                    event = self.http.json("GET", urls.status + "?logs=1", idempotent=True, waiter=waiter,
                                           task_id=task_id)
                if event is not None:
                    last = self._to_state(event, urls, task_id, waiter)
                    clock.saw(last)
                if last is not None and (event is not None or clock.elapsed() - reported >= REPORT_EVERY):
                    reported = clock.elapsed()
                    on_state(last, reported)
                    if last.final:
                        return last
                clock.check(task_id, limits)
        finally:
            events.close()

    def find_tasks(self, model_id: str, body: dict[str, Any], since: float, until: float, waiter: Waiter) -> list[str]:
        """The platform API's request listing by endpoint from `since`: the requests whose `json_input` equals
        `body` (and whose time, where an item gives one, is in the window). Finished requests only (see
        `lists_unfinished`)."""
        query = {"endpoint_id": model_id, "start": iso_utc(since), "limit": "100", "expand": "payloads"}
        found: list[str] = []
        for _ in range(LISTING_PAGES):
            answer = self.http.json("GET", f"{self.api_url}/v1/models/requests/by-endpoint?{urlencode(query)}",
                                    idempotent=True, waiter=waiter)
            items = answer.get("items") if isinstance(answer, dict) else None
            if not isinstance(items, list):
                raise ProviderError("fal's request listing has no list of items")
            found += [answered_id(item["request_id"], "fal") for item in items if _is_ours(item, body, since, until)]
            cursor = answer.get("next_cursor")
            if not answer.get("has_more") or not isinstance(cursor, str) or not cursor:
                return found
            query["cursor"] = cursor
        raise ProviderError(f"fal lists more than {100 * LISTING_PAGES} requests of {model_id} since the submit")

    def task_model(self, task_id: str, waiter: Waiter) -> str | None:
        """fal's request answers do not name the model: a request is found by its model id."""
        return None

    # --- key check, balance ---

    def balance(self, waiter: Waiter, timeout: tuple[float, float]) -> float | None:
        """None: fal tells the balance (GET api.fal.ai/v1/account/billing?expand=credits) only to a key with billing
        access, which an inference key lacks (docs/providers.md)."""
        return None

    def check_key(self, waiter: Waiter, timeout: tuple[float, float]) -> KeyCheck:
        """A CDN upload token: what every fal upload asks for first. The token itself is never shown."""
        url = f"{self.rest_url}/storage/auth/token?storage_type=fal-cdn-v3"
        with self.http.request("POST", url, json={}, idempotent=False, waiter=waiter, timeout=timeout) as response:
            body = _json_or_none(response)
            if isinstance(body, dict) and isinstance(body.get("token"), str):
                register_secret(body["token"])
            return KeyCheck(url=self.rest_url, emulator=bool(response.headers.get("X-Sonify-Emulator")))

    # --- cancel ---

    def cancel(self, task_id: str, waiter: Waiter, *, model_id: str | None = None) -> CancelOutcome:
        """PUT cancel_url. The answer's body `status` says what came of it, whatever the HTTP code (CANCEL_ANSWERS;
        ALREADY_COMPLETED: the result stays), and NOT_FOUND raises. Without one of those words the code says it,
        as the older docs give them: 202 CANCELLATION_REQUESTED, 400 ALREADY_COMPLETED, 404 NOT_FOUND."""
        urls = self._urls_for(task_id, model_id)
        # Sent once: after a lost answer a second cancel is told ALREADY_COMPLETED, which would read as
        # "finished" for a request the first one cancelled.
        with self.http.request("PUT", urls.cancel, idempotent=False, waiter=waiter, task_id=task_id,
                               timeout=CANCEL_TIMEOUT, raise_errors=False) as response:
            body = _json_or_none(response)
            word = body.get("status") if isinstance(body, dict) else None
            if word in CANCEL_ANSWERS:
                return CANCEL_ANSWERS[word]
            if word == "NOT_FOUND" or response.status_code == 404:
                raise ProviderError(f"fal does not know request {task_id} (HTTP {response.status_code}, NOT_FOUND)",
                                    status=response.status_code, task_id=task_id)
            if response.status_code == 400:
                return CancelOutcome.FINISHED
            if response.status_code < 400:
                return CancelOutcome.ACCEPTED
            raise self.http.error(response, task_id)


class _StreamLost(Exception):
    """The status stream failed or ended before COMPLETED: poll instead."""


class _Clock:
    """Time in the queue and time processing, measured across the stream and the polling fallback."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.run_start: float | None = None

    def saw(self, state: TaskState) -> None:
        if state.status == RUNNING and self.run_start is None:
            self.run_start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def running(self) -> float | None:
        return None if self.run_start is None else time.monotonic() - self.run_start

    def check(self, task_id: str, limits: WaitLimits) -> None:
        check_limits(task_id, NAME, self.elapsed(), self.running(), limits)

    def remaining(self, limits: WaitLimits) -> WaitLimits:
        running = self.running()
        if running is None:
            return WaitLimits(max(0.0, limits.queue_seconds - self.elapsed()), limits.run_seconds)
        return WaitLimits(limits.queue_seconds, max(0.0, limits.run_seconds - running))


def lifecycle_headers() -> dict[str, str]:
    """How long fal keeps an upload: the CDN reads X-Fal-Object-Lifecycle, the storage upload
    X-Fal-Object-Lifecycle-Preference (the official client sends both on both)."""
    preference = json.dumps({"expiration_duration_seconds": settings.current().upload_ttl_seconds})
    return {"X-Fal-Object-Lifecycle": preference, "X-Fal-Object-Lifecycle-Preference": preference}


def _is_ours(item: Any, body: dict[str, Any], since: float, until: float) -> bool:
    """A listed request made from exactly `body`, at a time in the window if the item gives one."""
    if not isinstance(item, dict) or not isinstance(item.get("request_id"), str) or not item["request_id"]:
        return False
    sent = item.get("json_input")
    if isinstance(sent, str):
        try:
            sent = json.loads(sent)
        except ValueError:
            return False
    when = next((item[k] for k in ("sent_at", "started_at", "created_at") if isinstance(item.get(k), str)), None)
    at = unix_time(when)
    return sent == body and (at is None or since <= at <= until)


def validation_error(detail: list[Any]) -> ValidationError | None:
    """fal's 422 list as our error, naming our input (`video_url` is our `video`)."""
    entries = [e for e in detail if isinstance(e, dict)]
    if not entries:
        return None
    names = [input_name(e.get("loc")) for e in entries]
    message = str(entries[0].get("msg") or "is not valid")
    others = "; ".join(f"{n}: {e.get('msg')}" for n, e in zip(names[1:], entries[1:]))
    return ValidationError(names[0], message + (f" (also {others})" if others else "") + " — fal answered HTTP 422")


def input_name(loc: Any) -> str:
    if not isinstance(loc, list) or not loc:
        return "input"
    field = str(loc[1] if loc[0] == "body" and len(loc) > 1 else loc[-1])
    return MEDIA_FIELDS.get(field, field)


def error_type_hint(error_type: Any) -> str:
    if not isinstance(error_type, str) or not error_type:
        return ""
    text = ERROR_TYPES.get(error_type) or ("the model's machine failed" if error_type.startswith("runner_") else "")
    return f" ({error_type}: {text})" if text else f" ({error_type})"


def split_result(answer: Any) -> tuple[list[str], dict[str, Any]]:
    """(media URLs: every `url` of a top-level file object or list of them, other top-level scalars)."""
    outputs: list[str] = []
    extra: dict[str, Any] = {}
    if not isinstance(answer, dict):
        return outputs, extra
    for key, value in answer.items():
        files = value if isinstance(value, list) else [value]
        urls = [f["url"] for f in files if isinstance(f, dict) and isinstance(f.get("url"), str)]
        if urls:
            outputs += urls
        elif isinstance(value, (str, int, float, bool)):
            extra[key] = value
    return outputs, extra


def transient_result(response: requests.Response) -> bool:
    """A result GET is retried on 408/429/5xx unless fal's own `detail` says why the request failed."""
    body = _json_or_none(response)
    return response.status_code in RETRYABLE and not (isinstance(body, dict) and "detail" in body)


def seconds_until(expires_at: Any) -> float:
    """Seconds left until an ISO 8601 time (or Unix seconds); 0 if unknown, so nothing is cached."""
    if isinstance(expires_at, (int, float)) and not isinstance(expires_at, bool):
        return max(0.0, expires_at - time.time())
    if not isinstance(expires_at, str):
        return 0.0
    try:
        moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def header_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "upload.bin"


def _detail_text(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in detail)
    return ""


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
