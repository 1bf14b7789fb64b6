"""The fault switchboard: make the next matching requests fail the way real services do."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from .routing import Response


@dataclass
class Fault:
    method: str  # "*" matches any method
    pattern: re.Pattern[str]  # searched in the path (without query)
    times: int
    kind: str  # "inject": answer `response()`; "drop": close the connection without an answer
    status: int = 0
    retry_after: float | None = None
    body: Any = None  # None: a WaveSpeed-style JSON error; str/bytes: sent as is (malformed bodies); else JSON

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in ("*", method) and self.pattern.search(path) is not None

    def response(self) -> Response:
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


def _default_body(status: int) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"code": status, "message": f"{phrase} (injected by the emulator)", "data": None}


class FaultBoard:
    """Thread-safe list of pending faults; the oldest matching one is used first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def inject(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        """The next `times` requests matching `method` and `path_regex` get `status` instead of their answer."""
        self._add(Fault(method.upper(), re.compile(path_regex), times, "inject", status, retry_after, body))

    def drop(self, method: str, path_regex: str, times: int = 1) -> None:
        """The next `times` matching requests see the connection closed without any answer."""
        self._add(Fault(method.upper(), re.compile(path_regex), times, "drop"))

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
