"""fal's queue and storage APIs, as the official `fal_client` (1.x) and shared/PROTOCOLS.md describe them.

The queue routes (`/{owner}/{app}`, `/{owner}/{app}/requests/{id}/...`) and the REST storage routes
(`/storage/...`) share the emulator's API origin: their paths differ. They need
`Authorization: Key <key_id>:<key_secret>`. The CDN upload (`POST /files/upload`) lives on the files
origin, like fal's separate CDN host, and takes only a token handed out by `/storage/auth/token`.
Errors are `{"detail": ...}`: a string (with `error_type` and the `X-Fal-Error-Type` header for
infrastructure errors), or for validation (422) a list of `{loc: ["body", field], msg, type}`.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from sonify.catalog import BY_MODEL_ID, ModelSpec
from sonify.errors import ValidationError

from .accounts import request_account
from .routing import Handler, HttpError, Request, Response, json_response
from .storage import content_type_for, is_loopback, safe_name
from .tasks import Task

if TYPE_CHECKING:
    from .server import Emulator

PROVIDER = "fal"
SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
REQUEST = rf"/(?P<app>{SEGMENT}/{SEGMENT})/requests/(?P<id>[^/]+)"
SUBMIT = rf"/(?P<model>{SEGMENT}/{SEGMENT}(?:/{SEGMENT})*)"
KEY_FORMAT = re.compile(r"[^:\s]+:[^:\s]+")
CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")
EMULATOR_PROMPT = (
    "[written by the Sonify emulator, not by fal] synthetic sound whose loudness follows the motion in the picture"
)
STREAM_TICK = 0.5  # longest wait between looks at a streamed task (changes wake the stream at once)
STREAM_EVENTS = ("changes", "chatty", "comments", "silent", "half")  # see StreamShape
STREAM_FRAMINGS = ("chunked", "close")
CHATTY = 0.02  # seconds between the events of a chatty stream
FAILED_TYPE = "runner_server_error"  # [guess] the error_type fal gives a request whose app failed
CANCELLED_TYPE = "request_cancelled"  # [guess]
# The request listing's status word of each finished task (its documented filter: success | error | user_error).
LISTED_STATUS = {"completed": "success", "failed": "error", "cancelled": "error"}


def detail(status: int, message: str, error_type: str | None = None) -> Response:
    """fal's error body; infrastructure errors also name their type in a header."""
    payload: dict[str, Any] = {"detail": message}
    headers: dict[str, str] = {}
    if error_type:
        payload["error_type"] = error_type
        headers["X-Fal-Error-Type"] = error_type
    return json_response(status, payload, headers)


def invalid(field: str, message: str, kind: str = "value_error") -> HttpError:
    """A 422 naming one input, as fal's (pydantic) validation answers."""
    return HttpError(json_response(422, {"detail": [{"loc": ["body", field], "msg": message, "type": kind}]}))


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def wall_clock(task: Task, monotonic: float) -> str:
    """A task's monotonic moment as wall-clock time, the same on every call (no spurious stream events)."""
    return iso_utc(datetime.fromisoformat(task.created_at) + timedelta(seconds=monotonic - task.submitted))


def check_body(spec: ModelSpec, body: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """(parameters, media URLs by field) from a submit body; raises a 422 naming the field."""
    if not isinstance(body, dict):
        raise HttpError(json_response(422, {"detail": [{"loc": ["body"], "msg": "must be a JSON object", "type": "dict_type"}]}))
    values = dict(body)
    media: dict[str, str] = {}
    for name in filter(None, (spec.video_field, spec.audio_field)):  # lipsync: video_url and audio_url
        url = values.pop(name, None)
        if url is None:
            raise invalid(name, "Field required", "missing")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid(name, "must be an http(s) URL of the media file", "url_parsing")
        if not is_loopback(parts.hostname):
            raise invalid(name, "the emulator reads only its own files and loopback URLs")
        media[name] = url
    for name, value in spec.fixed:  # a field of the request that picks the model version (sync's `model`)
        if values.pop(name, value) != value:
            raise invalid(name, f"this endpoint runs {value!r} (the emulator's other versions are other endpoints)")
    unknown = sorted(set(values) - {p.field for p in spec.params})
    if unknown:
        raise invalid(unknown[0], "Extra inputs are not permitted", "extra_forbidden")
    params: dict[str, Any] = {}
    for param in spec.params:  # under the catalog's names (a field sent under another: Hunyuan's text_prompt)
        if param.required and param.field not in values:  # a required field of fal's schema (FAL-JS: no `?`)
            raise invalid(param.field, "Field required", "missing")
        try:
            params[param.name] = param.check(values.get(param.field, param.default))
        except ValidationError as e:
            raise invalid(param.field, str(e).removeprefix(f"{param.name}: ")) from None
    return params, media


@dataclass(frozen=True)
class StreamShape:
    """How the emulator sends fal's status stream (`Emulator.fal_stream`). The default is fal's own, as its docs
    describe it (shared/PROTOCOLS.md [doc]): each `data:` line holds the status object, sent when it changes; a
    keep-alive comment after `Emulator.sse_keepalive` quiet seconds (fal: 15); the stream closes after
    COMPLETED. The others are shapes a client must survive, its Cancel above all:

    events — "changes" (fal's); "chatty": the status every CHATTY seconds, changed or not (IN_PROGRESS every
    20 ms); "comments": keep-alive comments only (every `sse_keepalive` seconds), never an event; "silent":
    nothing after the headers; "half": the first half of the first event, then nothing. The last three keep
    the stream open until the emulator stops.
    framing — "chunked" (Transfer-Encoding: chunked); "close": neither a length nor chunks, `Connection:
    close`, the body ending with the connection.

    A peer that takes the request and never answers its headers is the `delay` fault."""

    events: str = "changes"
    framing: str = "chunked"

    def __post_init__(self) -> None:
        if self.events not in STREAM_EVENTS or self.framing not in STREAM_FRAMINGS:
            raise ValueError(f"a stream shape has events in {STREAM_EVENTS} and framing in {STREAM_FRAMINGS}, "
                             f"not {self.events!r} and {self.framing!r}")


@dataclass
class StreamedResponse(Response):
    """A body sent as it is produced: `produce(send)` calls `send(bytes)`. In chunks (Transfer-Encoding:
    chunked), or (`chunked=False`) as it is, without a length: it ends when the connection closes."""

    produce: Callable[[Callable[[bytes], None]], None] | None = None
    chunked: bool = True

    def length(self) -> int | None:
        return None

    def write_body(self, wfile: BinaryIO) -> None:
        def send(data: bytes) -> None:
            wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
            wfile.flush()

        if self.produce is not None:
            self.produce(send)
        if self.chunked:
            wfile.write(b"0\r\n\r\n")
            wfile.flush()


class FalRoutes:
    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator
        self._lock = threading.Lock()
        self._cdn_tokens: dict[str, float] = {}  # token -> time.monotonic() it expires

    def routes(self) -> list[tuple[str, str, Handler]]:
        """API-origin rows (after WaveSpeed's, whose catch-all owns /api/v3)."""
        rows: list[tuple[str, str, Handler]] = [
            ("GET", r"/v1/models/requests/by-endpoint", self.listing),  # before REQUEST, which its path fits
            ("POST", r"/storage/auth/token", self.cdn_token),
            ("POST", r"/storage/upload/initiate", self.initiate_upload),
            ("GET", REQUEST + r"/status/stream", self.status_stream),
            ("GET", REQUEST + r"/status", self.status),
            ("PUT", REQUEST + r"/cancel", self.cancel),
            ("GET", REQUEST, self.result),
            ("POST", SUBMIT, self.submit),
        ]
        # Other methods on these paths are unknown routes (404, like any other path), not 405.
        public = [("GET", r"/\.well-known/jwks\.json", self.jwks)]  # fal's key set needs no key
        return public + [(method, regex, self._authed(handler)) for method, regex, handler in rows] + [
            ("*", SUBMIT, not_found)]

    def cdn_routes(self) -> list[tuple[str, str, Handler]]:
        """Files-origin rows: the CDN upload."""
        return [("POST", r"/files/upload", self.cdn_upload)]

    def _authed(self, handler: Handler) -> Handler:
        def guarded(request: Request, match: re.Match[str]) -> Response:
            scheme, _, key = (request.headers.get("Authorization") or "").partition(" ")
            key = key.strip()
            if scheme.lower() != "key" or not KEY_FORMAT.fullmatch(key):
                return detail(401, "Invalid key format: send the header Authorization: Key <key_id>:<key_secret>")
            if not any(hmac.compare_digest(key.encode(), k.encode()) for k in self.em.fal_keys):
                return detail(401, "Invalid key: no such key")
            return handler(request, match)

        return guarded

    # --- storage ---

    def cdn_token(self, request: Request, match: re.Match[str]) -> Response:
        if request.query.get("storage_type") != ["fal-cdn-v3"]:
            return detail(400, "storage_type must be fal-cdn-v3")
        request.read_json()
        token = secrets.token_urlsafe(24)
        lifetime = self.em.cdn_token_seconds
        with self._lock:
            self._cdn_tokens[token] = time.monotonic() + lifetime
        return json_response(200, {
            "token": token,
            "token_type": "Bearer",
            "base_url": self.em.handed_out("upload_url", self.em.files_url),
            "expires_at": iso_utc(datetime.now(timezone.utc) + timedelta(seconds=lifetime)),
        })

    def _cdn_token_valid(self, token: str) -> bool:
        with self._lock:
            expires = self._cdn_tokens.get(token)
        return expires is not None and time.monotonic() < expires

    def cdn_upload(self, request: Request, match: re.Match[str]) -> Response:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "key":
            return detail(401, "The CDN takes an upload token from /storage/auth/token, never the fal key")
        if scheme.lower() != "bearer" or not self._cdn_token_valid(token.strip()):
            return detail(401, "Missing, unknown or expired CDN upload token")
        problem = lifecycle_problem(request, "X-Fal-Object-Lifecycle")
        if problem:
            return detail(400, problem)
        length = request.body_length(self.em.storage.max_bytes)
        name = safe_name(request.headers.get("X-Fal-File-Name") or "upload.bin")
        content_type = request.headers.get("Content-Type") or content_type_for(name)
        file_id = secrets.token_hex(16)
        if not self.em.storage.receive(request, length, file_id, name):
            return detail(400, "fewer bytes than Content-Length")
        return json_response(200, {
            "access_url": self.em.storage.file_url(file_id, name),
            "content_type": content_type,
            "file_name": name,
            "file_size": length,
        })

    def initiate_upload(self, request: Request, match: re.Match[str]) -> Response:
        if request.query.get("storage_type") != ["gcs"]:
            return detail(400, "storage_type must be gcs")
        problem = lifecycle_problem(request, "X-Fal-Object-Lifecycle-Preference")
        if problem:
            return detail(400, problem)
        body = request.read_json()
        if not isinstance(body, dict):
            return detail(400, "the body must be a JSON object")
        file_name, content_type = body.get("file_name") or "upload.bin", body.get("content_type")
        if not isinstance(file_name, str) or not isinstance(content_type, str) or not CONTENT_TYPE.fullmatch(content_type):
            return detail(400, "file_name must be text and content_type a MIME type such as video/mp4")
        ticket = self.em.storage.new_ticket(file_name, None, content_type)
        return json_response(200, {
            "upload_url": self.em.handed_out("upload_url", self.em.storage.put_url(ticket)),
            "file_url": self.em.storage.file_url(ticket.file_id, ticket.name),
        })

    # --- queue ---

    def submit(self, request: Request, match: re.Match[str]) -> Response:
        model_id = match["model"]
        spec = BY_MODEL_ID.get((PROVIDER, model_id))
        if spec is None:
            return detail(404, f"Application '{model_id}' not found")
        body = request.read_json()
        params, media = check_body(spec, body)
        task = Task(
            id=str(uuid.uuid4()),
            provider=PROVIDER,
            spec=spec,
            params=params,
            media=media,
            seconds=self.em.seconds_for(model_id),
            queue_seconds=self.em.queue_seconds,
            fmt=self.em.formats.get(model_id, "mp4"),
            **self.em.task_options(model_id),
            name=self.em.handed_out("task_id", ""),
            created_at=iso_utc(datetime.now(timezone.utc)),
            submitted=time.monotonic(),
            input=body,
            webhook=request.query.get("fal_webhook", [""])[0],
            account=request_account(request.headers.get("Authorization")),  # its at-once limit (accounts.py)
        )
        self.em.tasks.add(task)
        self.em.record_submit(model_id)
        return json_response(200, {
            "request_id": task.shown_id,
            **self.urls(task),
            "queue_position": self.em.tasks.queue_position(task.id),
        })

    def listing(self, request: Request, match: re.Match[str]) -> Response:
        """The platform API's request listing by endpoint, as fal documents it (docs.fal.ai/platform-apis/v1/models/
        requests/by-endpoint): FINISHED requests only — its status filter knows `success | error | user_error` and it
        sorts by end time — so a request still queued or running is not listed. `endpoint_id` required, `start`
        (ISO 8601, default 24 h ago), `status`, `limit` 1..100, `cursor`; the inputs (`json_input`) only with
        `expand=payloads`. [guess] which time `start` filters on (here the time sent), newest end first, a cancelled
        request listed as `error`, the cursor's form."""
        query = {k: v[0] for k, v in request.query.items()}
        endpoint = query.get("endpoint_id")
        if not endpoint:
            return detail(422, "endpoint_id is required")
        try:
            start = datetime.fromisoformat(query["start"].replace("Z", "+00:00")) if "start" in query else (
                datetime.now(timezone.utc) - timedelta(hours=24))
            limit, offset = int(query.get("limit", "50")), int(query.get("cursor", "0"))
        except ValueError:
            return detail(422, "start must be an ISO 8601 time, limit and cursor whole numbers")
        if not 1 <= limit <= 100:
            return detail(422, "limit must be from 1 to 100")
        wanted = query.get("status")
        if wanted is not None and wanted not in LISTED_STATUS.values():
            return detail(422, f"status must be one of {', '.join(sorted(set(LISTED_STATUS.values())))}")
        start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
        ended = [t for t in self.em.tasks.all(PROVIDER)
                 if t.spec.model_id == endpoint and t.status in LISTED_STATUS and t.completed_at is not None
                 and datetime.fromisoformat(t.created_at) >= start and wanted in (None, LISTED_STATUS[t.status])]
        ended.sort(key=lambda t: t.completed_at, reverse=True)
        payloads = "payloads" in query.get("expand", "").split(",")
        items = [self._listed(t, payloads) for t in ended[offset: offset + limit]]
        more = offset + limit < len(ended)
        return json_response(200, {"items": items, "has_more": more, "next_cursor": str(offset + limit) if more else None})

    def _listed(self, task: Task, payloads: bool) -> dict[str, Any]:
        """One finished request as the listing shows it (the fields of fal's documented example)."""
        item = {"request_id": task.shown_id, "endpoint_id": task.spec.model_id, "sent_at": task.created_at,
                "started_at": wall_clock(task, task.started) if task.started is not None else None,
                "ended_at": wall_clock(task, task.completed_at),
                "status_code": 200 if task.status == "completed" else 500,
                "duration": round(task.completed_at - task.submitted, 3)}
        if payloads:  # (json_output, the result, is not emulated: Sonify never reads it)
            item["json_input"] = task.input
        return item

    def urls(self, task: Task) -> dict[str, str]:
        """Status, result and cancel live under {owner}/{app} only: a submit subpath is dropped."""
        base = f"{self.em.url}/{app_of(task.spec.model_id)}/requests/{task.shown_id}"
        return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}

    def _task(self, match: re.Match[str]) -> Task | None:
        task = self.em.tasks.get(match["id"])
        if task is None or task.provider != PROVIDER or app_of(task.spec.model_id) != match["app"]:
            return None
        return task

    def status(self, request: Request, match: re.Match[str]) -> Response:
        task = self._task(match)
        if task is None:
            return detail(404, "Request not found")
        return json_response(200, self.status_payload(task, wants_logs(request)))

    def status_stream(self, request: Request, match: re.Match[str]) -> Response:
        task = self._task(match)
        if task is None:
            return detail(404, "Request not found")
        shape = self.em.fal_stream
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if shape.framing == "chunked":
            headers["Transfer-Encoding"] = "chunked"
        return StreamedResponse(200, headers=headers, produce=self._events(task.id, wants_logs(request), shape.events),
                                chunked=shape.framing == "chunked")

    def _events(self, task_id: str, logs: bool, events: str) -> Callable[[Callable[[bytes], None]], None]:
        """Server-sent events as StreamShape's `events` says: fal's own ("changes") are the status object whenever
        it changes, a keep-alive comment after `sse_keepalive` quiet seconds, and the end after COMPLETED."""

        def event(task: Task) -> bytes:
            return f"data: {json.dumps(self.status_payload(task, logs))}\n\n".encode()

        def produce(send: Callable[[bytes], None]) -> None:
            if events in ("silent", "half"):
                if events == "half":
                    whole = event(self.em.tasks.get(task_id))
                    send(whole[: len(whole) // 2])
                self.em.wait()
                return
            if events == "comments":
                while not self.em.hold(self.em.sse_keepalive):
                    send(b": keep-alive\n\n")
                return
            last: bytes | None = None
            quiet_since = time.monotonic()
            while not self.em.stopping:
                task = self.em.tasks.get(task_id)
                current = event(task)
                now = time.monotonic()
                if current != last or events == "chatty":
                    send(current)
                    last, quiet_since = current, now
                elif now - quiet_since >= self.em.sse_keepalive:
                    send(b": keep-alive\n\n")
                    quiet_since = now
                if task.final:
                    return
                if events == "chatty":
                    self.em.hold(CHATTY)
                else:
                    self.em.tasks.wait_change(max(0.01, min(STREAM_TICK, quiet_since + self.em.sse_keepalive - now)))

        return produce

    def status_payload(self, task: Task, logs: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"request_id": task.shown_id, **self.urls(task), "logs": self.logs(task) if logs else None}
        if task.status == "created":
            return {"status": "IN_QUEUE", "queue_position": self.em.tasks.queue_position(task.id), **payload}
        if task.status == "processing":
            return {"status": "IN_PROGRESS", **payload}
        if task.reported_status:
            return {"status": task.reported_status, **payload}
        payload |= {"status": "COMPLETED", "metrics": {"inference_time": task.inference_ms / 1000 if task.started else None}}
        if task.status == "failed":
            payload |= {"error": task.error, "error_type": FAILED_TYPE}
        elif task.status == "cancelled":
            payload |= {"error": "Request was cancelled", "error_type": CANCELLED_TYPE}
        return payload

    @staticmethod
    def logs(task: Task) -> list[dict[str, Any]]:
        entries = []
        if task.started is not None:
            entries.append((task.started, "Sonify emulator: rendering synthetic sound (not a real model)"))
        if task.status == "completed" and task.completed_at is not None:
            entries.append((task.completed_at, "Sonify emulator: output written"))
        return [
            {"message": message, "level": "INFO", "source": "user", "timestamp": wall_clock(task, at)}
            for at, message in entries
        ]

    def result(self, request: Request, match: re.Match[str]) -> Response:
        task = self._task(match)
        if task is None:
            return detail(404, "Request not found")
        if not task.final:
            return detail(400, "Request is still in progress")
        if task.status == "cancelled":
            return detail(400, "Request was cancelled", CANCELLED_TYPE)
        if task.status == "failed":
            return detail(500, task.error, FAILED_TYPE)
        return json_response(200, self.output(task))

    def output(self, task: Task) -> dict[str, Any]:
        path = task.outputs[0]
        content_type = content_type_for(path.name)
        media = {
            "url": self.em.handed_out("output_url", self.em.storage.output_url(task.id, path)),
            "content_type": content_type,
            "file_name": path.name,
            "file_size": path.stat().st_size,
        }
        key = "video" if content_type.startswith("video/") else "audio"
        if "prompt" not in task.spec.extra_outputs:  # FAL-JS output types: only ThinkSound's answer has a prompt
            return {key: media}
        return {key: media, "prompt": task.params.get("prompt") or EMULATOR_PROMPT}

    def webhook_payload(self, task: Task) -> dict[str, Any]:
        """What a delivery carries: `{request_id, gateway_request_id, status: "OK" | "ERROR", payload, error}`."""
        delivery: dict[str, Any] = {"request_id": task.shown_id, "gateway_request_id": task.shown_id}
        if task.status == "completed":
            return delivery | {"status": "OK", "payload": self.output(task)}
        message = "Request was cancelled" if task.status == "cancelled" else task.error
        return delivery | {"status": "ERROR", "error": message, "payload": {"detail": message}}

    def jwks(self, request: Request, match: re.Match[str]) -> Response:
        """The public keys webhook deliveries are signed with (fal's is on its REST host)."""
        keys = self.em.webhooks.jwks()
        if keys is None:
            return detail(503, "the emulator signs fal webhooks only with the `cryptography` package installed")
        return json_response(200, keys)

    def cancel(self, request: Request, match: re.Match[str]) -> Response:
        """The answer's body `status` (fal.ai/docs/inference-api/queue/cancel): OK — a queued request removed;
        CANCELLATION_REQUESTED — a running one told to stop; ALREADY_COMPLETED; NOT_FOUND. The HTTP codes are the
        older docs' (202, 400, 404); OK's 200 is a [guess]."""
        task = self._task(match)
        if task is None:
            return json_response(404, {"status": "NOT_FOUND"})
        queued = task.status == "created"
        if not self.em.tasks.cancel(task.id):
            return json_response(400, {"status": "ALREADY_COMPLETED"})
        self.em.record_cancel(task.spec.model_id)
        if queued:
            return json_response(200, {"status": "OK"})
        return json_response(202, {"status": "CANCELLATION_REQUESTED"})


def lifecycle_problem(request: Request, header: str) -> str:
    """What is wrong with an upload's lifecycle header, if it is sent: it must be JSON
    `{"expiration_duration_seconds": N}`, N a positive whole number. (The emulator keeps files as long as it runs.)"""
    value = request.headers.get(header)
    if value is None:
        return ""
    try:
        seconds = json.loads(value).get("expiration_duration_seconds")
    except (ValueError, AttributeError):
        seconds = None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        return f'{header} must be JSON {{"expiration_duration_seconds": <seconds above 0>}}'
    return ""


def not_found(request: Request, match: re.Match[str]) -> Response:
    return detail(404, "Not Found")


def app_of(model_id: str) -> str:
    """{owner}/{app} of a model id (a subpath after them is dropped)."""
    return "/".join(model_id.split("/")[:2])


def wants_logs(request: Request) -> bool:
    return request.query.get("logs", [""])[0].lower() in ("1", "true")
