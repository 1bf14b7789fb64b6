"""HTTP for the provider clients: one session per provider, timeouts, bounded retries of
idempotent requests, error mapping, and size-capped streamed downloads.

The API key is attached only to requests to the provider's own API that ask for it, never to upload or
download URLs (pre-signed or CDN hosts), wherever those point. A URL the provider hands out is followed
only over https to another machine, unless the API itself is on this machine (the emulator).

Every request, upload and download is watched (`_Watch`): it ends within `Settings.transfer_seconds` plus its
size at MIN_RATE, and within a SLICE of a Cancel, however slowly the other side drips its bytes. A body that
lasts as long as the other side keeps it open (a status stream) is a `Stream`: on a connection of its own, and
ended by shutting that connection's socket down, which waits for nothing.
"""

from __future__ import annotations

import email.utils
import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from ..atomic import PRIVATE, atomically
from ..errors import ConfigurationError, ProviderError, Refused, SonifyError, Unreachable
from ..redact import redact
from ..settings import check_base_url, check_url, is_loopback
from ..version import VERSION
from ..waiter import Waiter
from .watch import _shut, _Watch, _watched, _WatchedAdapter

log = logging.getLogger("sonify")


RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


# Answers that say the request was turned away before it was processed (rate limit, full queue): no task was
# created, so even a submit is safe to send again after one — but a submit's is raised as `Refused`, for the
# account's pacer to wait out (providers/pacing.py), never retried here.
REFUSED = frozenset({429})


TIMEOUT = (10.0, 60.0)  # connect, read (each read: a server that drips bytes is bounded by the watch)


MAX_ATTEMPTS = 6


MAX_REDIRECTS = 5


CHUNK = 1 << 20


READ_CHUNK = 64 * 1024  # download reads: small, so the bytes received (and the deadline they earn) count often


UPLOAD_CHUNK = 32 << 10  # an upload body goes out in pieces this big: even a slow link takes each in well under a second


@dataclass(frozen=True)
class ByteCap:
    """The most bytes an answer's body may have (`limit`), and the setting that says so (for the message)."""

    limit: int
    setting: str


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): jittered exponential, or the
    server's Retry-After when it gave one (capped so a bad header cannot stall a job)."""
    if retry_after is not None:
        return min(retry_after, 60.0)
    delay = min(0.5 * 2 ** (attempt - 1), 8.0)
    return delay * random.uniform(0.5, 1.0)


def content_length(value: str | None) -> int | None:
    """A Content-Length header as a byte count; None when there is none or it is not a plain number (a
    server may send anything: the body is then read to its end, still size-capped)."""
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def excerpt(text: str, limit: int = 300) -> str:
    """A provider's text for a one-line message: redacted first (a key cut in two would no longer be
    recognised whole), then its whitespace joined, then cut to `limit` characters."""
    return " ".join(redact(text).split())[:limit]


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class Http:
    """One provider's HTTP. `auth_headers` go only to URLs under `base_url` or `other_api_urls`
    (the provider's own API hosts), and only with requests that ask for them (`auth`, the default):
    an upload URL the provider handed out gets exactly the headers it came with, even on the API's host.

    `describe_error(response)` turns an HTTP error into a message (raised as ProviderError) or into
    the error to raise itself (e.g. a ValidationError naming the input the provider refused).

    The API URLs are plain base URLs (settings.check_base_url), all on this machine or all elsewhere
    (Settings.real_bases says which settings mix them): ConfigurationError otherwise, before any request."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        auth_headers: dict[str, str],
        describe_error: Callable[[requests.Response], str | SonifyError],
        other_api_urls: tuple[str, ...] = (),
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._api_urls = (self.base_url, *(u.rstrip("/") for u in other_api_urls))
        for url in self._api_urls:
            check_base_url(url, f"{provider}'s API URL")
        if len({is_loopback(urlsplit(url).hostname) for url in self._api_urls}) > 1:
            raise ConfigurationError(f"{provider}'s API URLs are partly on this machine and partly elsewhere "
                                     f"({', '.join(self._api_urls)}): all must be one or the other")
        self._auth = auth_headers
        self._describe_error = describe_error
        self.session = _new_session()

    def _headers_for(self, url: str, extra: dict[str, str] | None, auth: bool) -> dict[str, str]:
        headers = dict(extra or {})
        if auth and self.is_api_url(url):
            headers.update(self._auth)
        return headers

    def is_api_url(self, url: str) -> bool:
        return any(url == base or url.startswith(base + "/") for base in self._api_urls)

    @property
    def local(self) -> bool:
        """The provider's API is on this machine (the emulator, a local proxy): the URLs it hands out may
        point here too, over plain http."""
        return all(is_loopback(urlsplit(base).hostname) for base in self._api_urls)

    def check_handed_url(self, url: str, what: str = "handed out the URL", task_id: str | None = None,
                         came_from: str | None = None) -> None:
        """A URL the provider handed out (a result, a redirect on the way to it, an upload): see check_handed_url."""
        check_handed_url(url, local=self.local, provider=self.provider, what=what, task_id=task_id, came_from=came_from)

    def request(self, method: str, url: str, **options: Any) -> requests.Response:
        """Send a request (`options`: those of _exchange but `stream`) and return its answer, its body read."""
        return self._exchange(method, url, self.session, **options)[0]

    def stream(self, url: str, *, waiter: Waiter, headers: dict[str, str] | None = None,
               task_id: str | None = None) -> Stream:
        """GET a body that arrives for as long as the other side keeps it open (a server-sent event stream), on a
        connection of its own. Sent once (the caller has another way: polling); an HTTP error is raised as by
        request(). Sending it and waiting for its headers are watched like any request (Cancel ends them within a
        SLICE); its body has no deadline: the caller reads it with Stream.read() and ends it with Stream.shut()."""
        session = _new_session()
        try:
            response, sockets = self._exchange("GET", url, session, idempotent=False, waiter=waiter, headers=headers,
                                               task_id=task_id, stream=True)
        except BaseException:
            session.close()
            raise
        return Stream(response, sockets, session)

    def _exchange(
        self, method: str, url: str, session: requests.Session, *, idempotent: bool, waiter: Waiter,
        json: Any = None, data: Any = None, files: Any = None, headers: dict[str, str] | None = None,
        timeout: tuple[float, float] = TIMEOUT, task_id: str | None = None, stream: bool = False,
        retry_if: Callable[[requests.Response], bool] | None = None, auth: bool = True, creates: bool = False,
        raise_errors: bool = True, cap: ByteCap | None = None,
    ) -> tuple[requests.Response, tuple[socket.socket, ...]]:
        """Send a request on `session`; retry it on 408/429/5xx (or where `retry_if(response)` says so) and
        connection errors only if `idempotent` (safe to send twice). `auth=False`: no key, even to the API's
        host (a URL the provider handed out for an upload carries exactly its own headers). A URL outside the
        API is checked like any URL the provider hands out (check_handed_url). `stream`: the body is left
        unread for the caller (an error's body is read, under the watch). `raise_errors=False`: an HTTP error
        that is not retried is returned like any answer, for a caller that reads the body's own word. Returns the answer and the
        sockets its last attempt used.

        A submit is never idempotent: a lost answer may still have created (and charged) a task. A request that
        `creates` is never sent again here: its REFUSED answer (429, which certifies that nothing was created) is
        raised as `Refused`, with the provider's Retry-After, for the caller to wait out and send again.
        Each attempt is watched (see _Watch): past its deadline it is an error, never retried; Cancel ends
        it at once, unless it `creates` something the provider charges for (a submit: it is left to finish
        within its deadline, so that its task id is kept and the task can be cancelled or fetched).
        `cap`: the body is read within the attempt's watch, and one larger than the cap (by its Content-Length,
        or once that many bytes came) is refused without reading the rest.
        """
        url = url if url.startswith(("http://", "https://")) else self.base_url + url
        if self.is_api_url(url):
            check_url(url, f"{self.provider} URL")
        else:
            self.check_handed_url(url, task_id=task_id)
        size = _body_size(data, files)
        cancellable = waiter if not creates else None
        attempt = 0
        while True:
            attempt += 1
            waiter.check()
            try:
                response, sockets = self._send(
                    session, method, url, cancellable, size, task_id, json=json, data=data, files=files,
                    timeout=timeout, headers=self._headers_for(url, headers, auth), allow_redirects=False,
                    stream=stream or cap is not None, cap=cap,
                )
            except requests.RequestException as exc:
                if (not idempotent or attempt >= MAX_ATTEMPTS) and never_connected(exc):
                    raise Unreachable(f"{self.provider}: no connection to {_origin(url)} ({type(exc).__name__})",
                                      task_id=task_id) from None
                if not idempotent or attempt >= MAX_ATTEMPTS:
                    raise ProviderError(
                        f"{self.provider}: no answer from {_origin(url)} ({type(exc).__name__})", task_id=task_id
                    ) from None
                log.info("%s %s: %s, retrying", method, _origin(url), type(exc).__name__)
                waiter.sleep(backoff(attempt))
                continue
            if response.status_code < 400:
                return response, sockets
            if creates and response.status_code in REFUSED:
                raise self._refused(response)
            retry = retry_if(response) if retry_if is not None else response.status_code in RETRYABLE
            if (idempotent or response.status_code in REFUSED) and retry and attempt < MAX_ATTEMPTS:
                log.info("%s %s: HTTP %s, retrying", method, _origin(url), response.status_code)
                response.close()
                waiter.sleep(backoff(attempt, retry_after_seconds(response)))
                continue
            if not raise_errors:
                return response, sockets
            raise self.error(response, task_id)

    def _send(self, session: requests.Session, method: str, url: str, waiter: Waiter | None, size: int,
              task_id: str | None, cap: ByteCap | None = None, **kwargs: Any
              ) -> tuple[requests.Response, tuple[socket.socket, ...]]:
        """One watched attempt: its deadline or (with a `waiter`) Cancel end it at once, raised as ProviderError
        or Cancelled; a connection error is raised as requests' own. With a `cap`, the body is read here. Returns
        the sockets it used too."""
        with _watched(waiter, size, f"the answer from {_host(url)}", self.provider, task_id) as watch:
            try:
                response = session.request(method, url, **kwargs)
                if cap is not None:
                    _read_capped(response, cap, f"{self.provider}: the answer from {_host(url)}", task_id)
                if kwargs.get("stream") and response.status_code >= 400:
                    response.content  # noqa: B018 - an error's body, read while Cancel and the deadline still hold
            except Exception:
                failure = watch.failure()
                if failure is not None:
                    raise failure from None
                raise
            sockets = watch.sockets()
        failure = watch.failure()
        if failure is not None and waiter is not None:  # the body may have been cut: an attempt that failed
            response.close()
            raise failure
        return response, sockets

    def _refused(self, response: requests.Response) -> Refused:
        described = self._describe_error(response)
        response.close()
        return Refused(str(described), retry_after=retry_after_seconds(response))

    def error(self, response: requests.Response, task_id: str | None) -> SonifyError:
        """The error to raise for an HTTP error answer (which is closed here)."""
        described = self._describe_error(response)
        response.close()
        if isinstance(described, SonifyError):
            described.task_id = described.task_id or task_id
            return described
        return ProviderError(described, status=response.status_code, task_id=task_id)

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self.request(method, url, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ProviderError(
                f"{self.provider} answered HTTP {response.status_code} with a body that is not JSON",
                status=response.status_code, task_id=kwargs.get("task_id"),
            ) from None

    def download(self, url: str, dest: Path, *, max_bytes: int, waiter: Waiter, task_id: str | None = None) -> Path:
        """Stream `url` to `dest` (never more than max_bytes), following at most MAX_REDIRECTS
        redirects, each checked like the URL itself (check_handed_url). Retries transient failures from
        the start; an attempt slower than its deadline (see _Watch) is an error, and Cancel ends it within
        a SLICE. No credentials are sent."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._download_once(url, dest, max_bytes, waiter, task_id)
            except _Transient as exc:
                if attempt >= MAX_ATTEMPTS:
                    raise ProviderError(f"{self.provider}: downloading the result failed: {exc}", task_id=task_id) from None
                log.info("download: %s, retrying", exc)
                waiter.sleep(backoff(attempt, exc.retry_after))

    def _download_once(self, url: str, dest: Path, max_bytes: int, waiter: Waiter, task_id: str | None) -> Path:
        self.check_handed_url(url, "gave the result URL", task_id)
        with _watched(waiter, 0, "the result file", self.provider, task_id) as watch:
            try:
                return self._fetch_file(url, dest, max_bytes, waiter, task_id, watch)
            except (_Transient, OSError, ValueError):  # requests' errors are OSErrors
                failure = watch.failure()  # a cut the watch made: too slow, or cancelled
                if failure is not None:
                    raise failure from None
                raise

    def _fetch_file(self, url: str, dest: Path, max_bytes: int, waiter: Waiter, task_id: str | None,
                    watch: _Watch) -> Path:
        for _ in range(MAX_REDIRECTS + 1):
            waiter.check()
            try:
                response = self.session.get(url, stream=True, timeout=TIMEOUT, allow_redirects=False)
            except requests.RequestException as exc:
                raise _Transient(type(exc).__name__) from None
            with response:
                if response.is_redirect:
                    target = urljoin(url, response.headers.get("Location", ""))
                    self.check_handed_url(target, "redirected to", task_id, came_from=url)
                    url = target
                    continue
                if response.status_code in RETRYABLE:
                    raise _Transient(f"HTTP {response.status_code}", retry_after_seconds(response))
                if response.status_code != 200:
                    raise ProviderError(
                        f"{self.provider}: the result file answered HTTP {response.status_code}", task_id=task_id
                    )
                declared = content_length(response.headers.get("Content-Length"))
                if declared is not None and declared > max_bytes:
                    raise ProviderError(_too_big(max_bytes), task_id=task_id)
                watch.size = declared or 0
                return _write_capped(response, dest, max_bytes, declared, waiter, task_id, watch)
        raise ProviderError(f"{self.provider}: the result URL redirected more than {MAX_REDIRECTS} times", task_id=task_id)


class Stream:
    """An answer whose body arrives for as long as the other side keeps it open (Http.stream), on a connection
    that is its own. One thread reads it (read, then close); any thread may end it with shut(), which shuts
    its socket down and waits for nothing: not for the reading thread, nor for a lock that thread holds. The
    read under way then returns (or fails) at once, whatever the body's framing (a length, chunks, or none,
    ending with the connection) and however the other side sends it (chatty, quiet, cut mid-event, stalled)."""

    def __init__(self, response: requests.Response, sockets: tuple[socket.socket, ...],
                 session: requests.Session) -> None:
        self.response = response
        self._sockets = sockets  # kept from when the connection was made: the connection may drop its own
        self._session = session  # holds only this stream's connection: a socket shut is never another's

    def read(self) -> bytes:
        """What has arrived of the body (at most READ_CHUNK bytes; waits for at least one); b"" at its end.
        Never waits for more than is there: a close-delimited body would otherwise be read to its end."""
        read1 = getattr(self.response.raw, "read1", None)
        if read1 is None:  # urllib3 < 2 reads only whole amounts: the caller polls instead
            raise OSError("this urllib3 cannot read a stream as it arrives (urllib3 2 can)")
        return read1(READ_CHUNK)

    def shut(self) -> None:
        """End the body now, from any thread."""
        for sock in self._sockets:
            _shut(sock)

    def close(self) -> None:
        """Release the connection; on the reading thread (it waits for a read under way)."""
        self.response.close()
        self._session.close()


def _new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = f"sonify/{VERSION}"
    session.trust_env = False  # no proxies or .netrc credentials picked up behind our back
    for scheme in ("http://", "https://"):
        session.mount(scheme, _WatchedAdapter())
    return session


def _body_size(data: Any, files: Any) -> int:
    """The bytes a request sends (for its deadline): a file body, bytes, or multipart bytes."""
    if isinstance(data, (bytes, bytearray, FileBody)):
        return len(data)
    if isinstance(files, dict):
        return sum(len(f[1]) for f in files.values() if isinstance(f, tuple) and isinstance(f[1], (bytes, bytearray)))
    return 0


class FileBody:
    """A file as a request body: streamed in UPLOAD_CHUNK pieces with a known length (requests sends
    Content-Length), and read from the start again if the request is retried.

    Before each piece `waiter` is checked (Cancel stops the upload) and `watch(bytes handed over so far)`
    is called, once more after the last piece: whatever either raises aborts the request and comes out
    of it as it is (the upload race in uplink.py switches to the proxy that way)."""

    def __init__(self, path: Path, waiter: Waiter | None = None, watch: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._waiter = waiter
        self._watch = watch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        with open(self.path, "rb") as f:
            while chunk := f.read(UPLOAD_CHUNK):
                self._look(sent)
                yield chunk
                sent += len(chunk)
        self._look(sent)

    def _look(self, sent: int) -> None:
        if self._waiter is not None:
            self._waiter.check()
        if self._watch is not None:
            self._watch(sent)


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _write_capped(
    response: requests.Response, dest: Path, max_bytes: int, declared: int | None, waiter: Waiter,
    task_id: str | None, watch: _Watch,
) -> Path:
    """The body as `dest`, whole or not at all (a private file until then, see atomic.atomically)."""
    try:
        with atomically(dest, mode=PRIVATE) as out:
            for chunk in response.iter_content(READ_CHUNK):
                waiter.check()
                watch.received += len(chunk)
                if watch.received > max_bytes:
                    raise ProviderError(_too_big(max_bytes), task_id=task_id)
                out.write(chunk)
            failure = watch.failure()  # a body of unknown length that the watch cut looks complete
            if failure is not None:
                raise failure
            if declared is not None and watch.received != declared:
                raise _Transient(f"download truncated at {watch.received} of {declared} bytes")
    except requests.RequestException as exc:
        raise _Transient(f"connection lost during download ({type(exc).__name__})") from None
    return dest


def _read_capped(response: requests.Response, cap: ByteCap, what: str, task_id: str | None) -> None:
    """Read `response`'s body into it (response.content, .json() then work as usual), or a ProviderError if it
    is larger than `cap`: refused by its Content-Length before a byte is read, or after cap.limit + 1 bytes."""
    declared = content_length(response.headers.get("Content-Length"))
    body = bytearray()
    if declared is None or declared <= cap.limit:
        for chunk in response.iter_content(READ_CHUNK):
            body += chunk
            if len(body) > cap.limit:
                break
    if max(declared or 0, len(body)) > cap.limit:
        response.close()
        raise ProviderError(f"{what} is larger than {_size(cap.limit)} ({cap.setting} sets this cap)",
                            status=response.status_code, task_id=task_id)
    response._content = bytes(body)  # what requests keeps a body it has read in (stream=False does the same)


def _size(count: int) -> str:
    return f"{count // 1024} KiB" if count % 1024 == 0 else f"{count} bytes"


def check_handed_url(url: str, *, local: bool, provider: str, what: str = "handed out the URL",
                     task_id: str | None = None, came_from: str | None = None) -> None:
    """A URL a provider handed out (a result, a redirect on the way to it, an upload) must be https to
    another machine. This machine (and plain http to it) only for a `local` API — one that is on this
    machine itself, like the emulator — and never after a redirect from https: a remote provider must not
    be able to send Sonify to a service of this machine."""
    parts = urlsplit(url)
    if is_loopback(parts.hostname):
        downgrade = parts.scheme == "http" and came_from is not None and urlsplit(came_from).scheme != "http"
        allowed = local and parts.scheme in ("http", "https") and not downgrade
    else:
        allowed = parts.scheme == "https" and bool(parts.hostname)
    if not allowed:
        raise ProviderError(
            f"{provider} {what} {parts.scheme}://{parts.hostname or ''}: Sonify follows provider URLs only over "
            "https to another machine (plain http, and this machine, only for a provider API on this machine)",
            task_id=task_id,
        )


def _too_big(max_bytes: int) -> str:
    return f"the result file is larger than the {max_bytes // (1 << 20)} MiB cap (SONIFY_MAX_DOWNLOAD_MB)"


def never_connected(exc: requests.RequestException) -> bool:
    """Whether the request failed before its connection was made (refused, no route, a connect timeout): then not
    a byte of it was sent. A connection lost after that (a reset, a read timeout) may have delivered it."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if isinstance(exc, requests.ConnectionError) and exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _origin(url: str) -> str:
    return url.split("?", 1)[0]


def _host(url: str) -> str:
    """scheme://host[:port] only: the path of a handed-out URL may be a credential (an upload token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
