"""The fault switchboard: make the next matching requests, or the next tasks of a model, fail the way
real services do. Settable from tests at any time; thread-safe.

Request faults (matched by method and a regex searched in the path, oldest first, each for `times`
requests): an injected status (with Retry-After and any body, malformed ones included), a dropped
connection, a delayed answer, a truncated answer (full headers, part of the body, then the connection
closes), a redirect. Task faults (per model id, for the next `times` tasks): stuck in the queue for
good, or ending with a status word the provider never documented.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from .routing import Response

KINDS = ("inject", "drop", "delay", "truncate", "redirect")


@dataclass
class Fault:
    method: str  # "*" matches any method
    pattern: re.Pattern[str]  # searched in the path (without query)
    times: int
    kind: str  # one of KINDS
    status: int = 0  # inject: the status; redirect: 301/302/303/307/308
    retry_after: float | None = None
    body: Any = None  # None: a WaveSpeed-style JSON error; str/bytes: sent as is (malformed bodies); else JSON
    seconds: float = 0.0  # delay: how long the answer is held back
    keep: int = 0  # truncate: body bytes sent before the connection is closed
    location: str = ""  # redirect: the Location; "{path}" stands for the request's path and query

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in ("*", method) and self.pattern.search(path) is not None

    def response(self, target: str = "") -> Response:
        """The answer of an "inject" or "redirect" fault (`target`: the request's path and query)."""
        if self.kind == "redirect":
            return Response(self.status, b"", {"Location": self.location.replace("{path}", target)})
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = f"{self.retry_after:g}"
        if isinstance(self.body, (str, bytes)):
            body = self.body.encode() if isinstance(self.body, str) else self.body
            headers["Content-Type"] = "text/plain; charset=utf-8"
        else:
            payload = self.body if self.body is not None else _default_body(self.status)
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        return Response(self.status, body, headers)


@dataclass(frozen=True)
class TaskFault:
    """How the next task of a model misbehaves."""

    stuck: bool = False  # never leaves the queue (until cancelled or the emulator stops)
    status: str | None = None  # once final, reports this raw status word instead of its own


def _default_body(status: int) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"code": status, "message": f"{phrase} (injected by the emulator)", "data": None}


class FaultBoard:
    """Thread-safe lists of pending faults; the oldest matching one is used first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._task_faults: dict[str, deque[TaskFault]] = {}

    # --- request faults ---

    def inject(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        """The next `times` requests matching `method` and `path_regex` (re.search) get `status` instead
        of their answer. `body`: None for a WaveSpeed-style JSON error, str/bytes sent as is, anything
        else as JSON."""
        self._add(Fault(method.upper(), re.compile(path_regex), times, "inject", status, retry_after, body))

    def drop(self, method: str, path_regex: str, times: int = 1) -> None:
        """The next `times` matching requests see the connection closed without any answer."""
        self._add(Fault(method.upper(), re.compile(path_regex), times, "drop"))

    def delay(self, method: str, path_regex: str, seconds: float, times: int = 1) -> None:
        """The next `times` matching requests are answered normally, `seconds` late (a slow upload or a
        slow gateway; the request body is read first)."""
        self._add(Fault(method.upper(), re.compile(path_regex), times, "delay", seconds=seconds))

    def truncate(self, method: str, path_regex: str, keep: int = 1024, times: int = 1) -> None:
        """The next `times` matching requests get their real status and headers (Content-Length
        included) but only the first `keep` body bytes; then the connection is closed."""
        self._add(Fault(method.upper(), re.compile(path_regex), times, "truncate", keep=keep))

    def redirect(self, method: str, path_regex: str, location: str, times: int = 1, status: int = 302) -> None:
        """The next `times` matching requests are redirected to `location` ("{path}" in it is replaced
        by the request's path and query), like a CDN in front of the provider's files."""
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"not a redirect status: {status}")
        self._add(Fault(method.upper(), re.compile(path_regex), times, "redirect", status, location=location))

    def malformed(self, method: str, path_regex: str, times: int = 1, status: int = 200) -> None:
        """The next `times` matching requests get `status` with a body that is not JSON (a cut-off
        object, as a crashing gateway sends)."""
        self.inject(method, path_regex, status, times, body='{"code": 200, "data": {"status": "compl')

    def take(self, method: str, path: str) -> Fault | None:
        """The fault that applies to this request, counting it as used; None for a normal answer."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _add(self, fault: Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    # --- task faults ---

    def task(self, model_id: str, fault: TaskFault, times: int = 1) -> None:
        """The next `times` tasks submitted for `model_id` misbehave as `fault` says."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._task_faults.setdefault(model_id, deque()).extend([fault] * times)

    def take_task(self, model_id: str) -> TaskFault:
        """The fault for a task being created now (a TaskFault() that does nothing when none is set)."""
        with self._lock:
            pending = self._task_faults.get(model_id)
            return pending.popleft() if pending else TaskFault()
