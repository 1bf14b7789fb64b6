"""HTTP for the provider clients: one session per provider, timeouts, bounded retries of
idempotent requests, error mapping, and size-capped streamed downloads.

The API key is attached only to requests under the provider's own base URL, never to upload or
download URLs (pre-signed or CDN hosts).
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from .config import check_url, is_loopback
from .errors import ProviderError, SonifyError
from .waiter import Waiter

log = logging.getLogger("sonify")

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
# Answers that say the request was turned away before it was processed (rate limit, full queue): even
# a submit is safe to send again after one, since no task was created.
REFUSED = frozenset({429})
TIMEOUT = (10.0, 60.0)  # connect, read
MAX_ATTEMPTS = 6
MAX_REDIRECTS = 5
CHUNK = 1 << 20


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): jittered exponential, or the
    server's Retry-After when it gave one (capped so a bad header cannot stall a job)."""
    if retry_after is not None:
        return min(retry_after, 60.0)
    delay = min(0.5 * 2 ** (attempt - 1), 8.0)
    return delay * random.uniform(0.5, 1.0)


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
    (the provider's own API hosts), never anywhere else.

    `describe_error(response)` turns an HTTP error into a message (raised as ProviderError) or into
    the error to raise itself (e.g. a ValidationError naming the input the provider refused)."""

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
        self._auth = auth_headers
        self._describe_error = describe_error
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "sonify/0.1"
        self.session.trust_env = False  # no proxies or .netrc credentials picked up behind our back

    def _headers_for(self, url: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.is_api_url(url):
            headers.update(self._auth)
        return headers

    def is_api_url(self, url: str) -> bool:
        return any(url == base or url.startswith(base + "/") for base in self._api_urls)

    def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        waiter: Waiter,
        json: Any = None,
        data: Any = None,
        files: Any = None,
        headers: dict[str, str] | None = None,
        timeout: tuple[float, float] = TIMEOUT,
        task_id: str | None = None,
        stream: bool = False,
        retry_if: Callable[[requests.Response], bool] | None = None,
    ) -> requests.Response:
        """Send a request; retry it on 408/429/5xx (or where `retry_if(response)` says so) and
        connection errors only if `idempotent` (safe to send twice). `stream`: the body is left
        unread for the caller.

        A submit is never idempotent: a lost answer may still have created (and charged) a task. It
        is sent again only after a REFUSED answer (429), which certifies that nothing was created.
        """
        url = url if url.startswith(("http://", "https://")) else self.base_url + url
        check_url(url, f"{self.provider} URL")
        attempt = 0
        while True:
            attempt += 1
            waiter.check()
            try:
                response = self.session.request(
                    method, url, json=json, data=data, files=files, timeout=timeout,
                    headers=self._headers_for(url, headers), allow_redirects=False, stream=stream,
                )
            except requests.RequestException as exc:
                if not idempotent or attempt >= MAX_ATTEMPTS:
                    raise ProviderError(
                        f"{self.provider}: no answer from {_origin(url)} ({type(exc).__name__})", task_id=task_id
                    ) from None
                log.info("%s %s: %s, retrying", method, _origin(url), type(exc).__name__)
                waiter.sleep(backoff(attempt))
                continue
            if response.status_code < 400:
                return response
            retry = retry_if(response) if retry_if is not None else response.status_code in RETRYABLE
            if (idempotent or response.status_code in REFUSED) and retry and attempt < MAX_ATTEMPTS:
                log.info("%s %s: HTTP %s, retrying", method, _origin(url), response.status_code)
                response.close()
                waiter.sleep(backoff(attempt, retry_after_seconds(response)))
                continue
            raise self._error(response, task_id)

    def _error(self, response: requests.Response, task_id: str | None) -> SonifyError:
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
        redirects, each of which must itself be https (or http to loopback). Retries transient
        failures from the start. No credentials are sent."""
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
        _check_result_url(url, None, self.provider, task_id)
        for _ in range(MAX_REDIRECTS + 1):
            waiter.check()
            try:
                response = self.session.get(url, stream=True, timeout=TIMEOUT, allow_redirects=False)
            except requests.RequestException as exc:
                raise _Transient(type(exc).__name__) from None
            with response:
                if response.is_redirect:
                    target = urljoin(url, response.headers.get("Location", ""))
                    _check_result_url(target, url, self.provider, task_id)
                    url = target
                    continue
                if response.status_code in RETRYABLE:
                    raise _Transient(f"HTTP {response.status_code}", retry_after_seconds(response))
                if response.status_code != 200:
                    raise ProviderError(
                        f"{self.provider}: the result file answered HTTP {response.status_code}", task_id=task_id
                    )
                declared = int(response.headers.get("Content-Length") or 0)
                if declared > max_bytes:
                    raise ProviderError(_too_big(max_bytes), task_id=task_id)
                return _write_capped(response, dest, max_bytes, declared, waiter, task_id)
        raise ProviderError(f"{self.provider}: the result URL redirected more than {MAX_REDIRECTS} times", task_id=task_id)


class FileBody:
    """A file as a request body: streamed in chunks with a known length (requests sends
    Content-Length), and read from the start again if the request is retried."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _write_capped(
    response: requests.Response, dest: Path, max_bytes: int, declared: int, waiter: Waiter, task_id: str | None
) -> Path:
    partial = dest.with_name(dest.name + ".part")
    written = 0
    try:
        with open(partial, "wb") as out:
            for chunk in response.iter_content(CHUNK):
                waiter.check()
                written += len(chunk)
                if written > max_bytes:
                    raise ProviderError(_too_big(max_bytes), task_id=task_id)
                out.write(chunk)
        if declared and written != declared:
            raise _Transient(f"download truncated at {written} of {declared} bytes")
    except requests.RequestException as exc:
        partial.unlink(missing_ok=True)
        raise _Transient(f"connection lost during download ({type(exc).__name__})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, dest)
    return dest


def _check_result_url(url: str, came_from: str | None, provider: str, task_id: str | None) -> None:
    """A result (or a redirect on the way to it) must be https; plain http only to loopback, and a
    redirect never leaves https for http (not even for this machine: a remote host must not be able
    to send us to a local service)."""
    parts = urlsplit(url)
    allowed = parts.scheme == "https" and bool(parts.hostname)
    if parts.scheme == "http" and is_loopback(parts.hostname):
        allowed = came_from is None or urlsplit(came_from).scheme == "http"
    if not allowed:
        where = "redirected to" if came_from else "gave the result URL"
        raise ProviderError(
            f"{provider} {where} {parts.scheme}://{parts.hostname or ''}: results are fetched only over https "
            "(or http on this machine)", task_id=task_id,
        )


def _too_big(max_bytes: int) -> str:
    return f"the result file is larger than the {max_bytes // (1 << 20)} MiB cap (SONIFY_MAX_DOWNLOAD_MB)"


def _origin(url: str) -> str:
    return url.split("?", 1)[0]
