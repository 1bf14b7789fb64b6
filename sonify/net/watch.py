"""The watch on every request: a deadline of Settings.transfer_seconds plus its size at MIN_RATE, and Cancel
within a SLICE, both enforced by shutting the request's own socket down (so no read waits on a silent peer)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from urllib3.connection import HTTPConnection

from .. import settings
from ..errors import Cancelled, ProviderError, SonifyError
from ..waiter import SLICE, Waiter

log = logging.getLogger("sonify")


MIN_RATE = 32 * 1024  # ... plus its size at this many bytes a second (256 kbit/s); slower, it is cut


UNSENT_LIMIT = 128 << 10  # bytes a connection may keep queued unsent in the kernel (see _WatchedAdapter)




class _Watch:
    """The bounds of one request (an upload's or a download's included): Cancel, looked at every SLICE (only
    with a `waiter`), and a deadline of Settings.transfer_seconds plus its size at MIN_RATE — the bytes sent, the
    Content-Length received, or while that is unknown the bytes received so far. The watchdog thread
    enforces both by shutting the request's sockets down, which ends a read or a write however the other
    side drips its bytes (a per-read timeout restarts with every byte); the request's own thread then
    raises failure()."""

    def __init__(self, waiter: Waiter | None, size: int, what: str, provider: str, task_id: str | None) -> None:
        self.start = time.monotonic()
        self.allowance = settings.current().transfer_seconds  # read here: a request carries no run's snapshot
        self.size = size  # bytes declared (sent, or the Content-Length received); 0: unknown
        self.received = 0  # bytes of a download's body so far
        self._waiter, self._what, self._provider, self._task_id = waiter, what, provider, task_id
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._tripped: str | None = None  # "cancelled" | "slow"
        self._tripped_after = 0.0
        self._done = False

    def deadline(self) -> float:
        return self.start + self.allowance + max(self.size, self.received) / MIN_RATE

    def attach(self, sock: socket.socket) -> None:
        """A socket the request uses (a new connection, or a kept-alive one)."""
        with self._lock:
            if self._tripped is not None:
                _shut(sock)
            elif sock not in self._sockets:
                self._sockets.append(sock)

    def inspect(self) -> None:
        """On the watchdog thread: trip when the user cancelled or the deadline passed."""
        try:
            cancelled = self._waiter is not None and self._waiter.cancelled()
        except Exception:  # a failing cancel check must not stop the watchdog
            log.debug("cancel check failed", exc_info=True)
            cancelled = False
        now = time.monotonic()
        if not cancelled and now <= self.deadline():
            return
        with self._lock:  # never after finish(): the sockets may serve the next request by then
            if self._done or self._tripped is not None:
                return
            self._tripped, self._tripped_after = ("cancelled" if cancelled else "slow"), now - self.start
            for sock in self._sockets:
                _shut(sock)

    def sockets(self) -> tuple[socket.socket, ...]:
        """The sockets the request has used so far."""
        with self._lock:
            return tuple(self._sockets)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._sockets.clear()

    def failure(self) -> SonifyError | None:
        """What to raise for a request the watch cut (None while it has not)."""
        if self._tripped is None:
            return None
        if self._tripped == "cancelled":
            return Cancelled("Cancelled")
        moved = f"{self.received} of {self.size} bytes" if self.size and self.received else \
            f"{max(self.size, self.received)} bytes"
        return ProviderError(
            f"{self._provider}: {self._what} was too slow ({moved} in {self._tripped_after:.1f} s; a transfer gets "
            f"{self.allowance:g} s plus its size at {MIN_RATE // 1024} KiB/s, SONIFY_TRANSFER_TIMEOUT sets the "
            f"{self.allowance:g} s)", task_id=self._task_id,
        )


class _Watchdog:
    """One daemon thread looks at every watched request of the process, each SLICE; it waits while none runs."""

    def __init__(self) -> None:
        self._watches: set[_Watch] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, watch: _Watch) -> None:
        with self._changed:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():  # (not alive: in a forked child)
                self._thread = threading.Thread(target=self._run, name="sonify-http-watchdog", daemon=True)
                self._thread.start()
            self._changed.notify()

    def remove(self, watch: _Watch) -> None:
        watch.finish()
        with self._changed:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._watches:
                    self._changed.wait()
                watches = list(self._watches)
            for watch in watches:
                watch.inspect()
            time.sleep(SLICE)


_watchdog = _Watchdog()


_current = threading.local()  # .watch: the watched request this thread is sending, if any


@contextlib.contextmanager
def _watched(waiter: Waiter | None, size: int, what: str, provider: str, task_id: str | None) -> Iterator[_Watch]:
    watch = _Watch(waiter, size, what, provider, task_id)
    _current.watch = watch
    _watchdog.add(watch)
    try:
        yield watch
    finally:
        _current.watch = None
        _watchdog.remove(watch)


def _attach(sock: Any) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None and isinstance(sock, socket.socket):
        watch.attach(sock)


def _shut(sock: socket.socket) -> None:
    """End every read and write on `sock` now, from any thread (the plain socket's shutdown, also under TLS)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _WatchedConnection:
    """Mixed into urllib3's connections: each socket a request uses is handed to the watch of the thread
    that sends it."""

    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _attach(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self.sock)  # a kept-alive connection (None: connect() attaches the new one)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_WatchedConnection, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connections whose sockets the watch can reach, and that keep little unsent data
    queued in the kernel (TCP_NOTSENT_LOWAT, where the system has it; what is in flight is not limited, so
    neither is the rate). An upload's bytes handed over are then nearly its bytes sent: its progress shows the
    link's rate, a Cancel leaves little behind, and an upload aborted for a smaller file (uplink.py) stops
    sending at once instead of seconds later."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        options = list(HTTPConnection.default_socket_options)
        if hasattr(socket, "TCP_NOTSENT_LOWAT"):
            options.append((socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, UNSENT_LIMIT))
        super().init_poolmanager(*args, socket_options=options, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
