"""Files the emulator keeps: uploads (pre-signed PUT tickets, multipart) and task outputs.

Served without auth on their own origin (a second port), like a provider's storage and CDN hosts,
so a client that sends its API key to any URL but the API's own is caught.
"""

from __future__ import annotations

import mimetypes
import os
import re
import secrets
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from sonify.settings import is_loopback

from .routing import CHUNK, Handler, Request, Response, json_response

ID_RE = r"(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"  # hex, or a UUID (fal request ids)
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
}
FETCH_TIMEOUT = 30.0


class FetchError(Exception):
    """A media URL the emulator cannot read (the provider's task error 1402)."""


@dataclass(frozen=True)
class Ticket:
    """A pre-signed upload: the PUT must send exactly `headers` and `size` bytes (any size when None)."""

    token: str
    file_id: str
    name: str
    size: int | None
    headers: dict[str, str]


def content_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def safe_name(filename: str) -> str:
    """A file name safe on disk and in a URL (matches NAME_RE), keeping the extension."""
    stem, suffix = os.path.splitext(Path(filename.replace("\\", "/")).name)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:100] or "upload"
    return stem + re.sub(r"[^A-Za-z0-9.]+", "", suffix)[:16]


class Storage:
    def __init__(self, root: Path, max_bytes: int, base_url: str) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.base_url = base_url  # the files origin: http://127.0.0.1:PORT
        self._lock = threading.Lock()
        self._tickets: dict[str, Ticket] = {}
        for sub in ("files", "outputs", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # --- uploads ---

    def new_ticket(self, filename: str, size: int | None, content_type: str) -> Ticket:
        ticket = Ticket(
            token=secrets.token_urlsafe(24),
            file_id=secrets.token_hex(16),
            name=safe_name(filename),
            size=size,
            headers={"Content-Type": content_type},
        )
        with self._lock:
            self._tickets[ticket.token] = ticket
        return ticket

    def ticket(self, token: str) -> Ticket | None:
        with self._lock:
            return self._tickets.get(token)

    def file_path(self, file_id: str, name: str) -> Path:
        """Where upload `file_id` is stored (its folder is created)."""
        folder = self.root / "files" / file_id
        folder.mkdir(exist_ok=True)
        return folder / name

    def receive(self, request: Request, length: int, file_id: str, name: str) -> bool:
        """Stream `length` body bytes into upload `file_id` as `name` (served only once complete);
        False when the body was shorter."""
        path = self.file_path(file_id, name)
        partial = path.with_name(".partial-" + path.name)  # never matches NAME_RE, so never served
        if request.copy_body_to(partial, length) != length:
            partial.unlink(missing_ok=True)
            return False
        partial.replace(path)
        return True

    def temp_dir(self) -> Path:
        folder = self.root / "tmp" / secrets.token_hex(16)
        folder.mkdir()
        return folder

    def file_url(self, file_id: str, name: str) -> str:
        return f"{self.base_url}/files/{file_id}/{quote(name)}"

    def put_url(self, ticket: Ticket) -> str:
        return f"{self.base_url}/storage/put/{ticket.token}"

    # --- outputs ---

    def output_dir(self, task_id: str) -> Path:
        folder = self.root / "outputs" / task_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def output_url(self, task_id: str, path: str | Path) -> str:
        return f"{self.base_url}/outputs/{task_id}/{quote(Path(path).name)}"

    # --- reading ---

    def _stored(self, kind: str, folder_id: str, name: str) -> Path | None:
        if not re.fullmatch(ID_RE, folder_id) or not re.fullmatch(NAME_RE, name):
            return None
        path = self.root / kind / folder_id / name
        return path if path.is_file() else None

    def resolve(self, url: str) -> Path:
        """A local file holding the media at `url`: one this emulator serves, or a loopback URL it fetches.

        Other hosts are refused: the emulator never reaches the network."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not is_loopback(parts.hostname):
            raise FetchError(f"cannot fetch {url}: the emulator only reads its own or loopback URLs")
        own = urlsplit(self.base_url)
        match = re.fullmatch(r"/(files|outputs)/([^/]+)/([^/]+)", parts.path)
        if parts.port == own.port and is_loopback(own.hostname) and match:
            path = self._stored(match[1], match[2], unquote(match[3]))
            if path is None:
                raise FetchError(f"cannot fetch {url}: 404 Not Found")
            return path
        return self._fetch(url)

    def _fetch(self, url: str) -> Path:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        target = self.temp_dir() / safe_name(Path(urlsplit(url).path).name or "media")
        try:
            with opener.open(url, timeout=FETCH_TIMEOUT) as response, open(target, "wb") as out:
                received = 0
                while chunk := response.read(CHUNK):
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise FetchError(f"cannot fetch {url}: larger than {self.max_bytes} bytes")
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            raise FetchError(f"cannot fetch {url}: {e}") from e
        return target

    # --- routes (no auth: like pre-signed and CDN URLs) ---

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("PUT", r"/storage/put/(?P<token>[A-Za-z0-9_-]{16,64})", self._put),
            ("GET", rf"/(?P<kind>files|outputs)/(?P<folder>{ID_RE})/(?P<name>[^/]+)", self._get),
        ]

    def _put(self, request: Request, match: re.Match[str]) -> Response:
        ticket = self.ticket(match["token"])
        if ticket is None:
            return _storage_error(403, "AccessDenied", "unknown or expired upload URL")
        if request.headers.get("Authorization") is not None:
            return _storage_error(400, "InvalidArgument", "only one auth mechanism allowed: do not send Authorization")
        for name, value in ticket.headers.items():
            if request.headers.get(name) != value:
                return _storage_error(403, "SignatureDoesNotMatch", f"header {name} must be exactly the one handed out")
        length = request.body_length(self.max_bytes)
        if ticket.size is not None and length != ticket.size:
            return _storage_error(
                400, "BadDigest", f"Content-Length {length} differs from the declared size {ticket.size}"
            )
        if not self.receive(request, length, ticket.file_id, ticket.name):
            return _storage_error(400, "IncompleteBody", "fewer bytes than Content-Length")
        return Response(200, b"", {"ETag": f'"{ticket.file_id}"'})

    def _get(self, request: Request, match: re.Match[str]) -> Response:
        path = self._stored(match["kind"], match["folder"], unquote(match["name"]))
        if path is None:
            return json_response(404, {"message": "not found"})
        return Response(200, headers={"Content-Type": content_type_for(path.name)}, file=path)


def _storage_error(status: int, code: str, message: str) -> Response:
    """S3-like storage errors are XML; clients only need the status and a readable message."""
    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return Response(status, body, {"Content-Type": "application/xml"})
