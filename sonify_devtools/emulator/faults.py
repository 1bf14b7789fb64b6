"""The fault switchboard: make the next matching requests, or the next tasks of a model, fail the way
real services do. Settable from tests at any time; thread-safe.

Request faults (matched by method and a regex searched in the path, oldest first, each for `times`
requests): an injected status (with Retry-After and any body, malformed ones included), a dropped
connection, a request served whose answer is lost (`lose`), a delayed answer, a truncated answer (full headers, part of the body, then the connection
closes), a redirect. Task faults (per model id, for the next `times` tasks): stuck in the queue for
good, or ending with a status word the provider never documented.

The hostile mode — what a look-alike of a provider that means harm does, still labelled as the emulator:
request faults that drip an answer's body a few bytes a second, follow it with bytes that never end,
announce it with a Content-Length that is not a number, or echo the request's headers (its
Authorization too) in an error body; and handed-out answers (`hand_out`) that put a URL of the test's
choosing where the routes would give a result or upload URL (a foreign host, this machine, the API's own
origin), or a task id of its choosing (a traversal id, two ids that agree in their first 40 characters).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from .routing import Response

KINDS = ("inject", "drop", "lose", "delay", "truncate", "redirect", "drip", "endless", "bogus_length", "echo")
ANSWERING = ("inject", "redirect", "echo")  # kinds that answer instead of the route
RESHAPING = ("drip", "endless", "bogus_length")  # kinds that send the route's own answer their way
HANDED_OUT = ("task_id", "output_url", "upload_url")  # what `hand_out` can replace in the routes' answers
PACE = 0.05  # seconds between the pieces of a dripped body
ENDLESS_PIECE = 64 * 1024


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
    rate: float | None = None  # drip, endless: body bytes a second (endless: None, as fast as they go)
    length_header: str = ""  # bogus_length: the Content-Length header sent
    at: int = 0  # echo: characters of filler before the echoed Authorization header
    taken: threading.Event = field(default_factory=threading.Event)  # set when a request first meets it

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in ("*", method) and self.pattern.search(path) is not None

    def response(self, target: str = "", headers: Mapping[str, str] | None = None) -> Response:
        """The answer of an ANSWERING fault (`target`: the request's path and query; `headers`: its headers)."""
        if self.kind == "redirect":
            return Response(self.status, b"", {"Location": self.location.replace("{path}", target)})
        if self.kind == "echo":  # like a debugging proxy that answers with the request it got
            lines = [f"{name}: {value}" for name, value in (headers or {}).items() if name.lower() == "authorization"]
            lines += [f"{name}: {value}" for name, value in (headers or {}).items() if name.lower() != "authorization"]
            filler = ("emulator echo of the request (a hostile proxy) " * (self.at // 40 + 1))[: self.at]
            return Response(self.status, (filler + "\n".join(lines)).encode(), {"Content-Type": "text/plain"})
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


    def reshape(self, response: Response, hold: Callable[[float], bool]) -> Response:
        """The route's own `response`, sent the way a RESHAPING fault says (others: as it is). `hold(seconds)`
        waits, and says True once the emulator stops (the answer then ends like a dropped connection)."""
        if self.kind in ("drip", "endless"):
            return _Hostile(response.status, b"", dict(response.headers), inner=response, rate=self.rate,
                            endless=self.kind == "endless", hold=hold)
        if self.kind == "bogus_length":
            headers = {**response.headers, "Content-Length": self.length_header}
            return _Hostile(response.status, b"", headers, inner=response, hold=hold, sized=False)
        return response


@dataclass
class _Hostile(Response):
    """A route's answer sent in a hostile way: `rate` bytes a second, followed by bytes that never end, or
    (`sized=False`) with the Content-Length its headers say, the body then ending with the connection."""

    inner: Response | None = None
    rate: float | None = None
    endless: bool = False
    sized: bool = True
    hold: Callable[[float], bool] = lambda seconds: False

    def length(self) -> int | None:
        return self.inner.length() if self.sized and not self.endless and self.inner is not None else None

    def write_body(self, wfile: BinaryIO) -> None:
        out = _Paced(wfile, self.rate, self.hold) if self.rate else wfile
        if self.inner is not None:
            self.inner.write_body(out)
        while self.endless:
            out.write(b"\0" * ENDLESS_PIECE)
            if self.hold(0):
                raise ConnectionResetError("the emulator stops")


class _Paced:
    """A writer that lets `rate` bytes a second through, in pieces PACE apart."""

    def __init__(self, wfile: BinaryIO, rate: float, hold: Callable[[float], bool]) -> None:
        self._wfile, self._step, self._hold = wfile, max(1, int(rate * PACE)), hold
        self._pause = self._step / rate

    def write(self, data: bytes) -> int:
        for start in range(0, len(data), self._step):
            self._wfile.write(data[start:start + self._step])
            self._wfile.flush()
            if self._hold(self._pause):
                raise ConnectionResetError("the emulator stops")
        return len(data)

    def flush(self) -> None:
        self._wfile.flush()


@dataclass(frozen=True)
class TaskFault:
    """How the next task of a model misbehaves."""

    stuck: bool = False  # never leaves the queue (until cancelled or the emulator stops)
    status: str | None = None  # once final, reports this raw status word instead of its own
    sound: str | None = None  # its sound is made wrong: one of synth.BAD_SOUNDS


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
        self._handed_out: dict[str, deque[str]] = {}

    # --- request faults ---

    def inject(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        body: Any = None,
    ) -> Fault:
        """The next `times` requests matching `method` and `path_regex` (re.search) get `status` instead
        of their answer. `body`: None for a WaveSpeed-style JSON error, str/bytes sent as is, anything
        else as JSON. (Each of these returns the Fault: `fault.taken` is set when a request meets it.)"""
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "inject", status, retry_after, body))

    def drop(self, method: str, path_regex: str, times: int = 1) -> Fault:
        """The next `times` matching requests see the connection closed without any answer."""
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "drop"))

    def lose(self, method: str, path_regex: str, times: int = 1) -> Fault:
        """The next `times` matching requests are served (a submit creates its task) but the connection is
        closed before the answer: the client cannot tell whether anything was created. The task runs on as any
        other (a slow model, `per_model_seconds`, keeps it running): fal's listing shows it only once it ends."""
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "lose"))

    def delay(self, method: str, path_regex: str, seconds: float, times: int = 1) -> Fault:
        """The next `times` matching requests are answered normally, `seconds` late (a slow upload or a
        slow gateway; the request body is read first)."""
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "delay", seconds=seconds))

    def truncate(self, method: str, path_regex: str, keep: int = 1024, times: int = 1) -> Fault:
        """The next `times` matching requests get their real status and headers (Content-Length
        included) but only the first `keep` body bytes; then the connection is closed."""
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "truncate", keep=keep))

    def redirect(self, method: str, path_regex: str, location: str, times: int = 1, status: int = 302) -> Fault:
        """The next `times` matching requests are redirected to `location` ("{path}" in it is replaced
        by the request's path and query), like a CDN in front of the provider's files."""
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"not a redirect status: {status}")
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "redirect", status, location=location))

    def malformed(self, method: str, path_regex: str, times: int = 1, status: int = 200) -> Fault:
        """The next `times` matching requests get `status` with a body that is not JSON (a cut-off
        object, as a crashing gateway sends)."""
        return self.inject(method, path_regex, status, times, body='{"code": 200, "data": {"status": "compl')

    # --- the hostile mode ---

    def drip(self, method: str, path_regex: str, rate: float = 1.0, times: int = 1) -> Fault:
        """The next `times` matching requests get their real answer, its body `rate` bytes a second (its
        Content-Length true): a download that would take hours."""
        if not rate > 0:
            raise ValueError("rate must be above 0 bytes a second")
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "drip", rate=rate))

    def endless(self, method: str, path_regex: str, rate: float | None = None, times: int = 1) -> Fault:
        """The next `times` matching requests get their real status and headers but no Content-Length, and
        after the real body, bytes that never end (`rate` bytes a second; None: as fast as they go)."""
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "endless", rate=rate))

    def bogus_length(self, method: str, path_regex: str, value: str = "lots", times: int = 1) -> Fault:
        """The next `times` matching requests get their real answer with `Content-Length: <value>` (not a
        byte count, or a wrong one); the body then ends when the connection closes."""
        if "\n" in value or "\r" in value:
            raise ValueError("a header value has no line breaks")
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "bogus_length", length_header=value))

    def echo(self, method: str, path_regex: str, status: int = 500, at: int = 0, times: int = 1) -> Fault:
        """The next `times` matching requests get `status` with a plain-text body that echoes the request's
        headers, its Authorization header (the key) first, after `at` characters of filler."""
        return self._add(Fault(method.upper(), re.compile(path_regex), times, "echo", status, at=at))

    def hand_out(self, kind: str, value: str, times: int = 1) -> None:
        """The next `times` answers that hand out a `kind` (HANDED_OUT) give `value` instead:
        "task_id" — the next submits' tasks go by that id (the emulator's files stay under its own);
        "output_url" — completed results name that URL as their output;
        "upload_url" — upload URLs (WaveSpeed's ticket, fal's storage upload) and the `base_url` of fal's CDN token
        (fal's multipart base; one-part uploads go to the CDN's fixed host, SONIFY_FAL_CDN_URL).
        In URLs, "{api}" and "{files}" stand for the emulator's origins and "{path}" for the real URL's path
        and query (so "{api}{path}" moves an upload to the API's own origin)."""
        if kind not in HANDED_OUT:
            raise ValueError(f"hand_out takes one of {', '.join(HANDED_OUT)}, not {kind!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._handed_out.setdefault(kind, deque()).extend([value] * times)

    def handed_out(self, kind: str, real: str, **origins: str) -> str:
        """What an answer hands out as `kind`: `real`, unless hand_out set something else (used up here)."""
        with self._lock:
            pending = self._handed_out.get(kind)
            value = pending.popleft() if pending else None
        if value is None:
            return real
        parts = urlsplit(real)
        place = {"path": parts.path + (f"?{parts.query}" if parts.query else ""), **origins}
        return re.sub(r"\{(path|api|files)\}", lambda m: place.get(m[1], m[0]), value)

    def take(self, method: str, path: str) -> Fault | None:
        """The fault that applies to this request, counting it as used; None for a normal answer."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    fault.taken.set()
                    return fault
        return None

    def _add(self, fault: Fault) -> Fault:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)
        return fault

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
