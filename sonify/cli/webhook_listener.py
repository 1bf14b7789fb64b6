"""The command line's webhook receiver: a small HTTP server on a thread for `python -m sonify run|batch`,
started only when SONIFY_PUBLIC_URL is set (inside ComfyUI the pack's route on ComfyUI's own server does this
job: nodes/webhook_route.py). It listens on SONIFY_WEBHOOK_LISTEN (host:port, default settings.DEFAULT_LISTEN); the
public address (a proxy, a tunnel) must forward `<SONIFY_PUBLIC_URL>/sonify/webhook/…` to it.

Whoever can reach it is bounded: one request per connection, which must arrive whole within
Settings.webhook_seconds however its bytes are paced, and at most Settings.webhook_threads connections served
at once (one thread each); one more is answered 503 at once."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .. import settings
from ..errors import ConfigurationError
from ..providers import webhooks

log = logging.getLogger("sonify")


PATH = re.compile(r"/sonify/webhook/(?P<provider>[A-Za-z0-9_-]+)/?")


LENGTH_DIGITS = 18  # a Content-Length longer than this is far past MAX_BODY (and past what int() should parse)


class Listener(ThreadingHTTPServer):
    """Answers POST /sonify/webhook/<provider> through webhooks.RECEIVER; anything else is 404."""

    daemon_threads = True
    request_queue_size = 128  # connections the kernel holds before they are taken (and served or refused)

    def __init__(self, address: tuple[str, int]) -> None:
        now = settings.current()  # read once, for the listener's life
        self.deadline_seconds = now.webhook_seconds
        self.max_threads = now.webhook_threads
        self._slots = threading.BoundedSemaphore(self.max_threads)
        try:
            super().__init__(address, _Handler)
        except OSError as exc:
            raise ConfigurationError(f"the webhook listener cannot listen on {address[0]}:{address[1]} "
                                     f"({exc.strerror or exc}); set {settings.WEBHOOK_LISTEN_ENV} to a free host:port") from None
        host, port = self.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sonify-webhook-listener", daemon=True)
        self._thread.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection while fewer than max_threads are busy; else a 503 at once, on this thread."""
        if not self._slots.acquire(blocking=False):
            _refuse(request, f"the webhook listener serves {self.max_threads} connections at once "
                             f"({settings.WEBHOOK_THREADS_ENV}); try again shortly")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: its slot is free again
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (most often: its client went away before the answer) is no one's error to
        print: a debug line, not socketserver's traceback on stderr."""
        log.debug("webhook listener: the connection from %s failed (%s)", client_address[0],
                  type(sys.exc_info()[1]).__name__)  # called by socketserver inside its except clause

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Sonify"
    sys_version = ""
    server: Listener

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # read through the deadline instead (the socket itself stays open)
        deadline = time.monotonic() + self.server.deadline_seconds
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

    def do_POST(self) -> None:
        match = PATH.fullmatch(self.path.partition("?")[0])
        length = self.headers.get("Content-Length", "").strip()
        if match is None:
            self._answer(404, "not a Sonify webhook route")
        elif not (length.isascii() and length.isdigit()):
            self._answer(411, "a delivery needs a Content-Length")
        elif len(length) > LENGTH_DIGITS or int(length) > webhooks.MAX_BODY:
            self._answer(413, f"a delivery is at most {webhooks.MAX_BODY} bytes")
        else:
            try:
                body = self.rfile.read(int(length))
            except TimeoutError:
                self._answer(408, f"the delivery did not arrive whole within {self.server.deadline_seconds:g} s "
                                  f"({settings.WEBHOOK_SECONDS_ENV})")
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            self._answer(*webhooks.RECEIVER.receive(match["provider"], headers, body))

    def do_GET(self) -> None:
        self._answer(404, "not a Sonify webhook route")

    def _answer(self, status: int, reason: str) -> None:
        """One answer, then the connection closes: a delivery is one request, and its deadline is the connection's."""
        body = json.dumps({"detail": reason}).encode()
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("webhook listener: " + format, *args)


class _DeadlineReader(io.RawIOBase):
    """A connection's bytes, each read given only the time left until `deadline`: bytes dripped slowly cannot
    stretch a request past it (a timeout per read would restart with every byte). TimeoutError once it passed."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's deadline passed")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


def _refuse(sock: socket.socket, reason: str) -> None:
    """A 503 on a connection that gets no thread, written without waiting (a new connection's send buffer is
    empty; if it cannot take these few bytes, the connection is only closed)."""
    body = json.dumps({"detail": reason}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Retry-After: 5\r\nConnection: close\r\n\r\n").encode()
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        sock.send(head + body)


@contextlib.contextmanager
def serving() -> Iterator[Listener | None]:
    """The listener for the time of a command, when SONIFY_PUBLIC_URL is set (else None: nothing listens)."""
    now = settings.current()
    if now.public_url is None:
        yield None
        return
    listener = Listener(now.webhook_listen)
    log.info("webhook listener on %s, for deliveries to %s", listener.url, webhooks.hook_url("<provider>"))
    try:
        yield listener
    finally:
        listener.close()
