"""A small streaming multipart/form-data reader (the `cgi` module is gone in Python 3.13).

File parts go straight to disk, so a large upload never sits in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import BinaryIO

from .routing import CHUNK, Body

HEADER_LIMIT = 16 * 1024
FIELD_LIMIT = 64 * 1024  # plain (non-file) fields
MAX_PARTS = 16


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True)
class FilePart:
    name: str
    filename: str
    content_type: str
    path: Path
    size: int


class _Stream:
    """Reads exactly `length` bytes from `body`, with a small look-ahead buffer."""

    def __init__(self, body: Body, length: int) -> None:
        self._body = body
        self._remaining = length
        self._buf = b""

    def _fill(self) -> None:
        if self._remaining == 0:
            raise MultipartError("body ended before the closing boundary")
        chunk = self._body.read(min(CHUNK, self._remaining))
        if not chunk:
            raise MultipartError("connection closed before the body was complete")
        self._remaining -= len(chunk)
        self._buf += chunk

    def read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def read_until(self, delim: bytes, sink: BinaryIO | None = None, limit: int = FIELD_LIMIT) -> bytes:
        """Consume through `delim`. What precedes it is written to `sink`, or returned (at most `limit` bytes)."""
        kept = bytearray()

        def emit(data: bytes) -> None:
            if sink is not None:
                sink.write(data)
                return
            kept.extend(data)
            if len(kept) > limit:
                raise MultipartError(f"a form field or header block is longer than {limit} bytes")

        while (idx := self._buf.find(delim)) < 0:
            keep = len(delim) - 1
            if len(self._buf) > keep:
                emit(self._buf[:-keep])
                self._buf = self._buf[-keep:]
            self._fill()
        emit(self._buf[:idx])
        self._buf = self._buf[idx + len(delim) :]
        return bytes(kept)

    def drain(self) -> None:
        while self._remaining:
            self._buf = b""
            self._fill()


def boundary_of(content_type_params: str | None) -> bytes:
    if not content_type_params or not re.fullmatch(r"[0-9A-Za-z'()+_,\-./:=? ]{1,70}", content_type_params):
        raise MultipartError("missing or invalid multipart boundary")
    return content_type_params.encode()


def read_form(body: Body, length: int, boundary: bytes, dest_dir: Path) -> tuple[dict[str, str], dict[str, FilePart]]:
    """Read a whole multipart body of `length` bytes: (text fields, file parts saved under dest_dir)."""
    stream = _Stream(body, length)
    fields: dict[str, str] = {}
    files: dict[str, FilePart] = {}
    stream.read_until(b"--" + boundary)
    index = 0
    while (after_boundary := stream.read_exact(2)) != b"--":
        if after_boundary != b"\r\n":
            raise MultipartError("malformed boundary line")
        if index == MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} parts")
        headers = BytesHeaderParser().parsebytes(stream.read_until(b"\r\n\r\n", limit=HEADER_LIMIT) + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise MultipartError("a part has no name")
        delim = b"\r\n--" + boundary
        filename = headers.get_filename()
        if filename is None:
            fields[name] = stream.read_until(delim).decode("utf-8", "replace")
        else:
            path = dest_dir / f"part-{index}"
            with open(path, "wb") as out:
                stream.read_until(delim, sink=out)
            files[name] = FilePart(name, filename, headers.get("Content-Type", ""), path, path.stat().st_size)
        index += 1
    stream.drain()
    return fields, files
