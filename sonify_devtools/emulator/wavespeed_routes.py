"""WaveSpeed REST v3, as the official SDK and shared/PROTOCOLS.md describe it.

Every /api/v3/* path needs `Authorization: Bearer <key>`. Answers use WaveSpeed's envelope
`{"code", "message", "data"}`; a failed task is HTTP 200 with data.status "failed".
"""

from __future__ import annotations

import hmac
import re
import secrets
import shutil
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sonify.catalog import BY_MODEL_ID, MMAUDIO_V2, ModelSpec, Param
from sonify.errors import ValidationError

from .accounts import request_account
from .multipart import MultipartError, boundary_of, read_form
from .routing import Handler, Request, Response, json_response
from .storage import content_type_for, safe_name
from .tasks import Task

if TYPE_CHECKING:
    from .server import Emulator

PROVIDER = "wavespeed"
TICKET_LIFETIME = timedelta(hours=1)

# Where the provider is stricter than our catalog. MMAudio's duration 0 ("match the video") is
# resolved by the client; the provider itself takes 1 s at the least and defaults to 8.
PROVIDER_RULES: dict[str, tuple[Param, ...]] = {
    MMAUDIO_V2.model_id: (replace(MMAUDIO_V2.param("duration"), default=8, min=1),),
}
IGNORED_FIELDS = ("webhook", "webhook_url")


def envelope(data: Any, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def error(status: int, message: str) -> Response:
    return json_response(status, envelope(None, status, message))


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone), or None; ValueError for anything else."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def check_params(spec: ModelSpec, values: dict[str, Any]) -> dict[str, Any]:
    """Canonical parameter values under the provider's own rules; unknown names are refused."""
    rules = {p.name: p for p in spec.params} | {p.name: p for p in PROVIDER_RULES.get(spec.model_id, ())}
    unknown = sorted(set(values) - set(rules))
    if unknown:
        raise ValidationError(unknown[0], f"is not a parameter of {spec.model_id}")
    return {name: rule.check(values.get(name, rule.default)) for name, rule in rules.items()}


def split_submit_body(spec: ModelSpec, body: Any) -> tuple[dict[str, Any], dict[str, str], bool]:
    """(parameters, media URLs by field, sync mode) from a submit body, or ValidationError."""
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    values = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    sync = values.pop("enable_sync_mode", False)
    if not isinstance(sync, bool):
        raise ValidationError("enable_sync_mode", f"must be true or false, got {sync!r}")
    media: dict[str, str] = {}
    for name in filter(None, (spec.video_field, spec.audio_field)):
        url = values.pop(name, None)
        if not isinstance(url, str) or not url.strip():
            raise ValidationError(name, "is required: the URL of the media file")
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValidationError(name, f"must be an http(s) URL, got {url[:100]!r}")
        media[name] = url
    return check_params(spec, values), media, sync


class WaveSpeedRoutes:
    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator

    def routes(self) -> list[tuple[str, str, Handler]]:
        rows: list[tuple[str, str, Handler]] = [
            ("POST", r"/api/v3/media/uploads", self.upload_ticket),
            ("POST", r"/api/v3/media/upload/binary", self.upload_binary),
            ("GET", r"/api/v3/predictions/(?P<id>[^/]+)/result", self.result),
            ("DELETE", r"/api/v3/predictions/(?P<id>[^/]+)", self.delete),
            ("POST", r"/api/v3/predictions", self.listing),
            ("GET", r"/api/v3/balance", self.balance),
            ("GET", r"/api/v3/webhook/secret", self.webhook_secret),
            ("POST", r"/api/v3/(?P<model>[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9._-]+)*)", self.submit),
            ("*", r"/api/v3(?:/.*)?", self.not_found),
        ]
        return [(method, regex, self._authed(handler)) for method, regex, handler in rows]

    def _authed(self, handler: Handler) -> Handler:
        def guarded(request: Request, match: re.Match[str]) -> Response:
            scheme, _, key = (request.headers.get("Authorization") or "").partition(" ")
            key = key.strip()
            valid = scheme.lower() == "bearer" and any(
                hmac.compare_digest(key.encode(), k.encode()) for k in self.em.api_keys
            )
            if not valid:
                return error(401, "Invalid API key")
            return handler(request, match)

        return guarded

    # --- uploads ---

    def upload_ticket(self, request: Request, match: re.Match[str]) -> Response:
        body = request.read_json()
        if not isinstance(body, dict):
            return error(400, "body: must be a JSON object")
        filename, size, limit = body.get("filename"), body.get("size"), self.em.storage.max_bytes
        if not isinstance(filename, str) or not filename.strip():
            return error(400, "filename: is required")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= limit:
            return error(400, f"size: must be a whole number of bytes from 1 to {limit}")
        content_type = body.get("content_type") or content_type_for(filename)
        if not isinstance(content_type, str) or not re.fullmatch(r"[\w.+-]+/[\w.+-]+", content_type):
            return error(400, "content_type: must be a MIME type such as video/mp4")
        ticket = self.em.storage.new_ticket(filename, size, content_type)
        data = {
            "download_url": self.em.storage.file_url(ticket.file_id, ticket.name),
            "filename": ticket.name,
            "size": size,
            "content_type": content_type,
            "expires_at": iso_utc(datetime.now(timezone.utc) + TICKET_LIFETIME),
            "upload": {
                "method": "PUT",
                "url": self.em.handed_out("upload_url", self.em.storage.put_url(ticket)),
                "headers": ticket.headers,
            },
        }
        return json_response(200, envelope(data))

    def upload_binary(self, request: Request, match: re.Match[str]) -> Response:
        length = request.body_length(self.em.storage.max_bytes)
        if request.headers.get_content_type() != "multipart/form-data":
            return error(400, "file: send multipart/form-data with a 'file' field")
        work = self.em.storage.temp_dir()
        try:
            try:
                boundary = boundary_of(request.headers.get_param("boundary"))
                _, files = read_form(request.body, length, boundary, work)
            except MultipartError as e:
                return error(400, f"file: {e}")
            part = files.get("file")
            if part is None or part.size == 0:
                return error(400, "file: is required and must not be empty")
            file_id, name = secrets.token_hex(16), safe_name(part.filename)
            part.path.replace(self.em.storage.file_path(file_id, name))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        data = {
            "download_url": self.em.storage.file_url(file_id, name),
            "type": part.content_type or content_type_for(name),
            "filename": name,
            "size": part.size,
        }
        return json_response(200, envelope(data))

    # --- tasks ---

    def submit(self, request: Request, match: re.Match[str]) -> Response:
        model_id = match["model"]
        spec = BY_MODEL_ID.get((PROVIDER, model_id))
        if spec is None:
            return error(404, f"model not found: {model_id}")
        try:
            params, media, sync = split_submit_body(spec, request.read_json())
        except ValidationError as e:
            return error(400, str(e))
        account = request_account(request.headers.get("Authorization"))
        wait = self.em.accounts.start(account)
        if wait is not None:  # past the account level's video tasks a minute: refused, no task (accounts.py)
            limited = error(429, "Too many requests: your account level's limit of tasks started a minute is reached")
            limited.headers.update(self.em.accounts.retry_after(account, wait))
            return limited
        task = self._new_task(spec, params, media, webhook=request.query.get("webhook", [""])[0], account=account)
        self.em.tasks.add(task)
        self.em.record_submit(model_id)
        if sync:
            task = self.em.tasks.wait_final(task.id, self.em.sync_timeout)
        data = self.task_data(task)
        if sync and not task.final:
            data |= {
                "status": "processing",
                "code": 5004,
                "error": f"Sync mode timed out after {self.em.sync_timeout:g} s; query the result URL later",
            }
        return json_response(200, envelope(data))

    def _new_task(self, spec: ModelSpec, params: dict[str, Any], media: dict[str, str], webhook: str,
                  account: str) -> Task:
        return Task(
            id=secrets.token_hex(16),
            provider=PROVIDER,
            spec=spec,
            params=params,
            media=media,
            seconds=self.em.seconds_for(spec.model_id),
            queue_seconds=self.em.queue_seconds,
            fmt=self.em.formats.get(spec.model_id, "mp4"),
            **self.em.task_options(spec.model_id),
            name=self.em.handed_out("task_id", ""),
            created_at=iso_utc(datetime.now(timezone.utc)),
            submitted=time.monotonic(),
            webhook=webhook,
            account=account,
        )

    def result(self, request: Request, match: re.Match[str]) -> Response:
        task = self.em.tasks.get(match["id"])
        if task is None or task.provider != PROVIDER:
            return error(404, "prediction not found")
        return json_response(200, envelope(self.task_data(task)))

    def listing(self, request: Request, match: re.Match[str]) -> Response:
        """The task listing: `page` and `page_size` (1..100) required; filters `model`, `status`,
        `created_after`, `created_before` (ISO 8601); newest first, the last 7 days; items carry no inputs."""
        body = request.read_json()
        if not isinstance(body, dict):
            return error(400, "body: must be a JSON object")
        page, size = body.get("page"), body.get("page_size")
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (page, size)) or page < 1 or not 1 <= size <= 100:
            return error(400, "page and page_size are required: page from 1, page_size from 1 to 100")
        try:
            after, before = (parse_time(body.get(k)) for k in ("created_after", "created_before"))
        except ValueError as e:
            return error(400, str(e))
        week = datetime.now(timezone.utc) - timedelta(days=7)
        tasks = [
            t for t in reversed(self.em.tasks.all(PROVIDER))
            if body.get("model") in (None, t.spec.model_id) and body.get("status") in (None, t.status)
            and max(week, after or week) <= parse_time(t.created_at) and (before is None or parse_time(t.created_at) <= before)
        ]
        items = [{key: value for key, value in self.task_data(t).items() if key != "has_nsfw_contents"}
                 for t in tasks[(page - 1) * size: page * size]]
        return json_response(200, envelope({"page": page, "page_size": size, "total": len(tasks), "items": items}))

    def delete(self, request: Request, match: re.Match[str]) -> Response:
        """"Cancel or delete": a task still running is cancelled (counted by `cancels()`), a finished one is
        deleted with its result; either way it ends "deleted"."""
        task = self.em.tasks.get(match["id"])
        if task is None or task.provider != PROVIDER:
            return error(404, "prediction not found")
        if self.em.tasks.cancel(task.id, status="deleted"):
            self.em.record_cancel(task.spec.model_id)
        else:
            self.em.tasks.delete(task.id)
        return json_response(200, envelope(self.task_data(self.em.tasks.get(task.id))))

    def task_data(self, task: Task) -> dict[str, Any]:
        outputs = [self.em.handed_out("output_url", self.em.storage.output_url(task.id, path)) for path in task.outputs]
        data: dict[str, Any] = {
            "id": task.shown_id,
            "model": task.spec.model_id,
            "status": task.reported_status if task.final and task.reported_status else task.status,
            "outputs": outputs,
            "urls": {"get": f"{self.em.url}/api/v3/predictions/{task.shown_id}/result"},
            "created_at": task.created_at,
            "has_nsfw_contents": [False] * len(outputs),
            "error": task.error,
            "timings": {"inference": task.inference_ms},
        }
        if task.code:
            data["code"] = task.code
        return data

    # --- account ---

    def balance(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, envelope({"balance": self.em.balance}))

    def webhook_secret(self, request: Request, match: re.Match[str]) -> Response:
        """The account's webhook signing secret as `data.secret`, where two public clients read it ([seen]: the
        docs show only the value; Sonify also reads a top-level `secret` and `data` as the string)."""
        return json_response(200, envelope({"secret": self.em.webhooks.wavespeed_secret}))

    # --- webhooks ---

    def webhook_payload(self, task: Task) -> dict[str, Any]:
        """What a delivery carries: the prediction (id, model, input, outputs, urls, status, created_at, error)."""
        return {key: value for key, value in self.task_data(task).items() if key != "has_nsfw_contents"} | {
            "input": task.params | task.media}

    def not_found(self, request: Request, match: re.Match[str]) -> Response:
        return error(404, "not found")
