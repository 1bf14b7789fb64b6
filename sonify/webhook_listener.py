"""The command line's webhook receiver: a small HTTP server on a thread for `python -m sonify run|batch`,
started only when SONIFY_PUBLIC_URL is set (inside ComfyUI the pack's route on ComfyUI's own server does this
job: nodes/webhook_route.py). It listens on SONIFY_WEBHOOK_LISTEN (host:port, default DEFAULT_LISTEN); the
public address (a proxy, a tunnel) must forward `<SONIFY_PUBLIC_URL>/sonify/webhook/…` to it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import webhooks
from .errors import ConfigurationError

log = logging.getLogger("sonify")

LISTEN_ENV = "SONIFY_WEBHOOK_LISTEN"
DEFAULT_LISTEN = "127.0.0.1:8189"  # beside ComfyUI's 8188
PATH = re.compile(r"/sonify/webhook/(?P<provider>[A-Za-z0-9_-]+)/?")
READ_SECONDS = 10.0  # a delivery's body arrives within this, or the connection is dropped


def listen_address() -> tuple[str, int]:
    """SONIFY_WEBHOOK_LISTEN as (an IPv4 address or host name, port); port 0 takes any free one."""
    text = os.environ.get(LISTEN_ENV, "").strip() or DEFAULT_LISTEN
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"{LISTEN_ENV} must be host:port, e.g. {DEFAULT_LISTEN} (got {text!r})")
    return host, int(port)


class Listener(ThreadingHTTPServer):
    """Answers POST /sonify/webhook/<provider> through webhooks.RECEIVER; anything else is 404."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        try:
            super().__init__(address, _Handler)
        except OSError as exc:
            raise ConfigurationError(f"the webhook listener cannot listen on {address[0]}:{address[1]} "
                                     f"({exc.strerror or exc}); set {LISTEN_ENV} to a free host:port") from None
        host, port = self.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sonify-webhook-listener", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Sonify"
    sys_version = ""
    timeout = READ_SECONDS

    def do_POST(self) -> None:
        match = PATH.fullmatch(self.path.partition("?")[0])
        length = self.headers.get("Content-Length", "")
        if match is None:
            self._answer(404, "not a Sonify webhook route")
        elif not length.isdigit():
            self._answer(411, "a delivery needs a Content-Length")
        elif int(length) > webhooks.MAX_BODY:
            self._answer(413, f"a delivery is at most {webhooks.MAX_BODY} bytes")
        else:
            body = self.rfile.read(int(length))
            headers = {name.lower(): value for name, value in self.headers.items()}
            self._answer(*webhooks.RECEIVER.receive(match["provider"], headers, body))

    def do_GET(self) -> None:
        self._answer(404, "not a Sonify webhook route")

    def _answer(self, status: int, reason: str) -> None:
        body = json.dumps({"detail": reason}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("webhook listener: " + format, *args)


@contextlib.contextmanager
def serving() -> Iterator[Listener | None]:
    """The listener for the time of a command, when SONIFY_PUBLIC_URL is set (else None: nothing listens)."""
    if webhooks.public_url() is None:
        yield None
        return
    listener = Listener(listen_address())
    log.info("webhook listener on %s, for deliveries to %s", listener.url, webhooks.hook_url("<provider>"))
    try:
        yield listener
    finally:
        listener.close()
