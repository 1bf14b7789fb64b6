"""WaveSpeed REST v3: upload, submit, poll, cancel, key check. Protocol notes: shared/PROTOCOLS.md."""

from __future__ import annotations

import logging
import mimetypes
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import requests

from ..errors import ProviderError
from ..net.http import FileBody, Http, excerpt
from ..waiter import Waiter
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
    iso_utc,
    poll_until_final,
    unix_time,
)
from .schedule import History, PollPlan, history_key

log = logging.getLogger("sonify")

NAME = "wavespeed"
UPLOAD_SECONDS = 6 * 86400.0  # WaveSpeed keeps uploads ~7 days: reused for 6
STATUS = {
    "created": QUEUED,
    "pending": QUEUED,
    "queued": QUEUED,
    "processing": RUNNING,
    "completed": COMPLETED,
    "failed": FAILED,
    "cancelled": FAILED,
    "timeout": FAILED,
    "deleted": FAILED,
}


def describe_error(response: requests.Response) -> str:
    """WaveSpeed error bodies are not uniform: `message`, `error`, `error_code` all occur."""
    if response.status_code == 401:
        return "WAVESPEED_API_KEY is not valid (WaveSpeed answered HTTP 401)"
    detail = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        detail = str(body.get("message") or body.get("error") or data.get("error") or body.get("error_code") or "")
    if not detail:
        detail = excerpt(response.text) or response.reason or ""
    hints = {403: " (check the account's balance and access)", 429: " (rate limit)"}
    return f"WaveSpeed answered HTTP {response.status_code}: {detail}{hints.get(response.status_code, '')}"


class WaveSpeed:
    name = NAME
    upload_seconds = UPLOAD_SECONDS  # how long an upload is reused
    # Its task listing shows "all predictions", newest created first, with a `processing` status filter
    # (wavespeed.ai/docs/docs-common-api/predictions): a task from its creation on, so a lost submit's is there at once.
    lists_unfinished = True

    def __init__(self, api_key: str, base_url: str) -> None:
        self.http = Http(NAME, base_url, {"Authorization": f"Bearer {api_key}"}, describe_error)
        self._lock = threading.Lock()
        self._submitted: dict[str, tuple[str, float]] = {}  # task id -> (model id, monotonic submit time)
        self._webhook_secret: str | None = None  # the account's, fetched once (webhooks.py)

    def upload(self, path: Path, waiter: Waiter, *, watch: Callable[[int], None] | None = None) -> str:
        """Current flow: ask for an upload ticket, PUT the bytes to its URL with exactly its
        headers. Falls back to the legacy multipart endpoint where the ticket route is missing (sent in
        one piece: not watched)."""
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        try:  # a ticket costs nothing and an unused one expires: safe to ask again after a fault
            ticket = self._data(self.http.json(
                "POST", "/api/v3/media/uploads", idempotent=True, waiter=waiter,
                json={"filename": path.name, "size": path.stat().st_size, "content_type": content_type},
            ))
        except ProviderError as exc:
            if exc.status not in (404, 405):
                raise
            return self._upload_legacy(path, content_type, waiter)
        instruction = ticket.get("upload") or {}
        if str(instruction.get("method", "")).upper() != "PUT" or not instruction.get("url") or not ticket.get("download_url"):
            raise ProviderError("WaveSpeed gave an upload ticket without a PUT URL or download URL")
        self.http.request(  # exactly the ticket's headers: no key, even if the URL is on the API's host
            "PUT", str(instruction["url"]), idempotent=True, waiter=waiter, data=FileBody(path, waiter, watch),
            headers=dict(instruction.get("headers") or {}), timeout=(10.0, 300.0), auth=False,
        )
        return str(ticket["download_url"])

    def _upload_legacy(self, path: Path, content_type: str, waiter: Waiter) -> str:
        # requests builds a multipart body in memory anyway; bytes (not a file object) can be sent again.
        data = self._data(self.http.json(
            "POST", "/api/v3/media/upload/binary", idempotent=True, waiter=waiter,
            files={"file": (path.name, path.read_bytes(), content_type)}, timeout=(10.0, 300.0),
        ))
        if not data.get("download_url"):
            raise ProviderError("WaveSpeed's upload answer has no download_url")
        return str(data["download_url"])

    def submit(self, model_id: str, body: dict[str, Any], waiter: Waiter) -> str:
        """Never retried: a lost answer may still have created a task that will be charged."""
        hook = self._webhook(waiter)
        query = f"?{urlencode({'webhook': hook})}" if hook else ""
        sent = time.monotonic()
        data = self._data(self.http.json("POST", f"/api/v3/{model_id}{query}", idempotent=False, creates=True,
                                         waiter=waiter, json=body))
        if not data.get("id"):
            raise ProviderError("WaveSpeed accepted the job but its answer has no task id")
        task_id = answered_id(data["id"], "WaveSpeed")
        with self._lock:
            self._submitted[task_id] = (model_id, sent)
        return task_id

    def _webhook(self, waiter: Waiter) -> str | None:
        """The `?webhook=` URL for a submit (webhooks.hook_url), once the receiver holds the account's secret
        to verify deliveries with; None (polling only, as without webhooks) when it cannot be had."""
        hook = webhooks.hook_url(NAME)
        if hook is None:
            return None
        if self._webhook_secret is None:
            if webhooks.key_fetch_paused(NAME):
                return None
            try:
                answer = self.http.json("GET", "/api/v3/webhook/secret", idempotent=True, waiter=waiter,
                                        cap=webhooks.key_answer_cap())
                secret = webhooks.wavespeed_secret(answer)
                webhooks.RECEIVER.trust_wavespeed_secret(secret)
            except (ProviderError, ValueError) as exc:
                log.info("WaveSpeed webhooks not requested for %.0f s: the account's webhook secret is unavailable "
                         "(%s)", webhooks.KEY_FETCH_PAUSE, exc)
                webhooks.key_fetch_failed(NAME)
                return None
            self._webhook_secret = secret
        return hook

    def _result(self, task_id: str, waiter: Waiter) -> dict[str, Any]:
        path = f"{_prediction(task_id)}/result"
        return self._data(self.http.json("GET", path, idempotent=True, waiter=waiter, task_id=task_id), task_id)

    def find_tasks(self, model_id: str, body: dict[str, Any], since: float, until: float, waiter: Waiter) -> list[str]:
        """The task listing (POST /api/v3/predictions) filtered by model and created-at window. Its items carry
        no inputs, so every task of the model in the window is a candidate (`body` is not used)."""
        found: list[str] = []
        for page in range(1, LISTING_PAGES + 1):
            data = self._data(self.http.json("POST", "/api/v3/predictions", idempotent=True, waiter=waiter, json={
                "page": page, "page_size": 100, "model": model_id,
                "created_after": iso_utc(since), "created_before": iso_utc(until),
            }))
            items = [i for i in data.get("items") or [] if isinstance(i, dict)]
            for item in items:  # filtered again: a listing that ignores a filter must not make a candidate
                created = unix_time(item.get("created_at"))
                if item.get("id") and item.get("model") == model_id and created is not None and since <= created <= until:
                    found.append(answered_id(item["id"], "WaveSpeed"))  # a listed id goes into URLs too
            if len(items) < 100:
                return found
        raise ProviderError(f"WaveSpeed lists more than {100 * LISTING_PAGES} tasks of {model_id} in that window")

    def task_model(self, task_id: str, waiter: Waiter) -> str | None:
        """A WaveSpeed task names its model in `data.model` of its result answer."""
        model = self._result(task_id, waiter).get("model")
        return model if isinstance(model, str) and model else None

    def state(self, task_id: str, waiter: Waiter, *, model_id: str | None = None) -> TaskState:
        """`model_id` is accepted like fal's client takes it; WaveSpeed task ids need no model."""
        data = self._result(task_id, waiter)
        raw = str(data.get("status", ""))
        status = STATUS.get(raw, FAILED)
        error = str(data.get("error") or "")
        if raw not in STATUS:
            error = f"unknown status {raw!r} from WaveSpeed"
        elif status == FAILED and not error:
            error = f"task {raw}"
        outputs = data.get("outputs") or []
        if status == COMPLETED and not outputs:
            status, error = FAILED, "WaveSpeed reported the task completed but gave no output"
        timings = data.get("timings") or {}
        inference = timings.get("inference") if isinstance(timings, dict) else None
        return TaskState(
            status=status, raw_status=raw, error=error,
            outputs=[str(u) for u in outputs if isinstance(u, str)],
            inference_seconds=inference / 1000 if isinstance(inference, (int, float)) else None,
        )

    def wait(
        self, task_id: str, waiter: Waiter, on_state: Callable[[TaskState, float], None], limits: WaitLimits,
        *, model_id: str | None = None, history: History | None = None,
    ) -> TaskState:
        """Poll on a schedule learned from this model's recent jobs in `history` (schedule.py), and at once
        when a webhook delivery for the task is verified (webhooks.py). A job submitted by this client uses
        and teaches the schedule its run time; a resumed one (started who knows when) does neither."""
        with self._lock:
            model, sent = self._submitted.pop(task_id, (model_id, None))
        learned = history is not None and model is not None and sent is not None
        key = history_key(self.http.base_url, model or "")
        plan = PollPlan(lambda: history.expected(key)) if learned else PollPlan()
        with webhooks.WAKEUPS.listening(NAME, task_id) as wake:
            state = poll_until_final(lambda: self.state(task_id, waiter), task_id, NAME, waiter, on_state, limits,
                                     plan, sent, wake)
        bracket = plan.bracket()
        if state.status == COMPLETED and learned and bracket is not None:
            history.record(key, bracket)
        return state

    def cancel(self, task_id: str, waiter: Waiter, *, model_id: str | None = None) -> CancelOutcome:
        """DELETE /api/v3/predictions/{id} "cancels or deletes" a task: a finished one would lose its result,
        so the task's state is looked at first and a finished task is left alone (fetchable)."""
        if self.state(task_id, waiter).final:
            return CancelOutcome.FINISHED
        data = self._data(self.http.json(
            "DELETE", _prediction(task_id), idempotent=True, waiter=waiter, task_id=task_id,
            timeout=CANCEL_TIMEOUT,
        ), task_id)
        return CancelOutcome.FINISHED if STATUS.get(str(data.get("status", ""))) == COMPLETED else CancelOutcome.ACCEPTED

    def balance(self, waiter: Waiter, timeout: tuple[float, float]) -> float | None:
        """GET /api/v3/balance → data.balance, USD (wavespeed.ai/docs-common-api/balance)."""
        return self.check_key(waiter, timeout).balance_usd

    def check_key(self, waiter: Waiter, timeout: tuple[float, float]) -> KeyCheck:
        """GET /api/v3/balance: free, and it tells the balance."""
        with self.http.request("GET", "/api/v3/balance", idempotent=False, waiter=waiter, timeout=timeout) as response:
            data = _json_data(response)
            balance = data.get("balance") if isinstance(data, dict) else None
            return KeyCheck(
                url=self.http.base_url, balance_usd=float(balance) if isinstance(balance, (int, float)) else None,
                emulator=bool(response.headers.get("X-Sonify-Emulator")),
            )

    @staticmethod
    def _data(body: Any, task_id: str | None = None) -> dict[str, Any]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise ProviderError("WaveSpeed answered without a `data` object", task_id=task_id)
        return data


def _prediction(task_id: str) -> str:
    """A task's path: its id checked (answered_id) and quoted as one path segment."""
    return f"/api/v3/predictions/{quote(answered_id(task_id, 'WaveSpeed'), safe='')}"


def _json_data(response: requests.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("data") if isinstance(body, dict) else None
