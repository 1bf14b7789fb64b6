"""Request, response and the route table shared by every emulated provider.

Each provider module contributes `(method, regex, handler)` rows; the server knows nothing
about any provider's paths.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, BinaryIO, Protocol

JSON_LIMIT = 1024 * 1024  # request bodies that are JSON: generous for any model's parameters
CHUNK = 256 * 1024


class HttpError(Exception):
    """Raised by a handler to answer with `response` at once."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def declared_length(headers: Message) -> int | None:
    value = headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


class Body:
    """A request body: reads stop at Content-Length (never into the next request on the
    connection), and what is left unread is known. With a `link` (the emulator's uplink), bytes are
    read no faster than it lets them through, a slice at a time."""

    def __init__(self, rfile: BinaryIO, length: int | None, link: Link | None = None) -> None:
        self._rfile = rfile
        self.remaining = length or 0
        self._link = link

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        if self._link is None:
            return self._read(size)
        pieces: list[bytes] = []
        while size > 0:
            piece = self._read(self._link.admit(size))
            if not piece:
                break
            pieces.append(piece)
            size -= len(piece)
        return b"".join(pieces)

    def _read(self, size: int) -> bytes:
        data = self._rfile.read(size) if size else b""
        self.remaining -= len(data)
        return data


class Link(Protocol):
    """A slow uplink between the client and the emulator."""

    def admit(self, wanted: int) -> int:
        """How many of `wanted` bytes may be read now (>= 1), after waiting for their turn on the link."""
        ...


@dataclass
class Request:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: Message  # case-insensitive lookups
    body: Body

    @property
    def content_length(self) -> int | None:
        return declared_length(self.headers)

    def body_length(self, limit: int) -> int:
        """The declared body length; 411 without one (chunked bodies are not accepted), 413 above `limit`."""
        length = self.content_length
        if length is None:
            raise HttpError(json_response(411, {"message": "Content-Length required"}))
        if length > limit:
            raise HttpError(json_response(413, {"message": f"request body larger than {limit} bytes"}))
        return length

    def read_body(self, limit: int = JSON_LIMIT) -> bytes:
        return self.body.read(self.body_length(limit))

    def read_json(self) -> Any:
        """The body parsed as JSON; a 400 answer if it is not."""
        try:
            return json.loads(self.read_body() or b"null")
        except ValueError as e:
            raise HttpError(json_response(400, {"code": 400, "message": f"invalid JSON body: {e}", "data": None}))

    def copy_body_to(self, path: Path, length: int) -> int:
        """Stream exactly `length` body bytes to `path`; returns the count actually received."""
        received = 0
        with open(path, "wb") as out:
            while received < length:
                chunk = self.body.read(min(CHUNK, length - received))
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
        return received


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None  # streamed from disk instead of `body`

    def length(self) -> int | None:
        """The body's size; None when write_body frames the body itself (chunked)."""
        return self.file.stat().st_size if self.file is not None else len(self.body)

    def write_body(self, wfile: BinaryIO) -> None:
        if self.file is None:
            wfile.write(self.body)
            return
        with open(self.file, "rb") as f:
            shutil.copyfileobj(f, wfile, CHUNK)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload).encode()
    return Response(status, body, {"Content-Type": "application/json", **(headers or {})})


Handler = Callable[[Request, "re.Match[str]"], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """First matching row wins, so specific paths go before catch-alls. Method "*" matches any;
    HEAD uses the GET row (the server sends no body). Paths match the whole regex."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, regex: str, handler: Handler) -> None:
        self._routes.append(Route(method.upper(), re.compile(regex), handler))

    def add_all(self, rows: Iterable[tuple[str, str, Handler]]) -> None:
        for method, regex, handler in rows:
            self.add(method, regex, handler)

    def dispatch(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        path_matched = False
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            path_matched = True
            if route.method in (method, "*"):
                try:
                    return route.handler(request, match)
                except HttpError as e:
                    return e.response
        if path_matched:
            return json_response(405, {"message": "method not allowed"})
        return json_response(404, {"message": "not found"})
