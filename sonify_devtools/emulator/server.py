"""The emulator's HTTP server: one loopback port, every emulated provider on its own routes."""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from sonify.catalog import BY_MODEL_ID

from . import synth
from .accounts import Accounts
from .fal_routes import FalRoutes, StreamShape
from .faults import ANSWERING, RESHAPING, FaultBoard, TaskFault
from .routing import Body, Request, Response, Router, declared_length, json_response
from .storage import Storage
from .tasks import Task, TaskBoard, TaskFailure
from .wavespeed_routes import WaveSpeedRoutes
from .webhooks import Deliveries, DeliveryRecord

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("sonify.emulator")

DEFAULT_KEYS = ("ws-test-3f9a7c1e5b2d8046",)  # random-looking, like a real key (redact() masks any 8 characters)
DEFAULT_FAL_KEYS = ("test-fal-id:test-fal-secret",)  # fal keys are key_id:key_secret
HOST = "127.0.0.1"  # never another interface: the emulator has no real security
MAX_UPLOAD_BYTES = 500 * 1024 * 1024
DRAIN_LIMIT = 1024 * 1024  # unread request bodies up to this are read away to keep the connection usable
IDLE_TIMEOUT = 60.0  # seconds a kept-alive connection may sit idle
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
RECEIVE_BUFFER = 32 * 1024  # per connection (the kernel doubles it): see _HttpServer.server_bind
UPLINK_SLICE_SECONDS = 0.02  # a slow uplink lets bytes through in slices of about this long...
UPLINK_MIN_SLICE = 4096  # ...and of at least this many bytes
JOIN_SECONDS = 5.0  # stop() waits this long for webhook deliveries under way


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # without the query
    status: int | None  # None: the connection was dropped without an answer
    authorized: bool  # an Authorization header was sent, valid or not (its value is never kept)
    headers: dict[str, str]  # as sent, minus Authorization and other credentials
    fault: str | None  # the switchboard's fault kind (faults.KINDS: "inject", "drop", "delay", "truncate", ...)
    at: float  # time.monotonic() when the answer was ready to send


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, emulator: Emulator, router: Router) -> None:
        super().__init__((HOST, port), _Handler)
        self.emulator = emulator
        self.router = router
        self.url = f"http://{HOST}:{self.server_address[1]}"
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sonify-emulator-{self.url}", daemon=True
        )
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def server_bind(self) -> None:
        """A fixed receive buffer on every connection: what it holds is the emulated link's bytes in flight,
        and a loopback socket's own grows to megabytes, far more than a real slow link holds (they would
        all still cross the emulated uplink after a client stopped sending)."""
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End kept-alive connections so their handler threads finish now, not at IDLE_TIMEOUT."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An answer's headers and body go out in two writes: with Nagle's algorithm on, the body waited for the client's
    # delayed ACK of the headers, about 40 ms for every answer on a kept-alive connection. That wait was this test
    # double's own making, and the benchmark counted it as Sonify's (its detection, submit, upload and download).
    disable_nagle_algorithm = True
    server_version = "SonifyEmulator/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _HttpServer

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _handle(self) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers=self.headers,
            body=Body(self.rfile, declared_length(self.headers), emulator.uplink),
        )
        fault = emulator.faults.take(self.command, parts.path)
        kind = fault.kind if fault is not None else None
        if kind in ("drop", "lose"):
            if kind == "lose":
                self._dispatch(request)  # served: a submit creates its task; the answer never leaves
            self._discard_body(request)
            self.close_connection = True
            emulator.record(self._record(request, None, kind))
            return
        if kind in ANSWERING:
            response = fault.response(self.path, self.headers)
        else:
            response = self._dispatch(request)
        if kind in RESHAPING:
            response = fault.reshape(response, emulator.hold)
        self._discard_body(request)
        if kind == "delay" and emulator.hold(fault.seconds):
            return  # the emulator stops meanwhile
        # Recorded before sending, so a client that has its answer always finds it in the log.
        emulator.record(self._record(request, response.status, kind))
        self._send(response, fault.keep if kind == "truncate" else None)

    def _dispatch(self, request: Request) -> Response:
        try:
            return self.server.router.dispatch(request)
        except Exception:
            log.exception("emulator error on %s %s", request.method, request.path)
            return json_response(500, {"code": 500, "message": "emulator internal error", "data": None})

    def _discard_body(self, request: Request) -> None:
        """Read away what is left of the request body, so the connection can serve the next request;
        close it instead when that is too much, or when the body is chunked (never read here)."""
        if request.headers.get("Transfer-Encoding") is not None or request.body.remaining > DRAIN_LIMIT:
            self.close_connection = True
        elif request.body.remaining:
            request.body.read()

    def _send(self, response: Response, keep: int | None = None) -> None:
        """Send the answer; with `keep`, only that many body bytes (after the full headers), then close."""
        if keep is not None:
            self.close_connection = True
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            length = response.length()
            if length is not None:  # None: the response frames its own body (chunked event streams)...
                self.send_header("Content-Length", str(length))
            elif "chunked" not in response.headers.get("Transfer-Encoding", ""):
                self.close_connection = True  # ... or it ends with the connection (the hostile mode's bodies)
            self.send_header("X-Sonify-Emulator", "1")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                response.write_body(self.wfile if keep is None else _Truncating(self.wfile, keep))
        except _Truncated:
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _record(self, request: Request, status: int | None, fault: str | None) -> RequestRecord:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in SECRET_HEADERS}
        authorized = self.headers.get("Authorization") is not None
        return RequestRecord(request.method, request.path, status, authorized, headers, fault, time.monotonic())


class _Truncated(Exception):
    """The truncating writer has sent all it may."""


class _Truncating:
    """A writer that passes on the first `keep` bytes, then raises _Truncated."""

    def __init__(self, wfile: Any, keep: int) -> None:
        self._wfile, self._left = wfile, keep

    def write(self, data: bytes) -> int:
        self._wfile.write(data[: self._left])
        self._left -= min(len(data), self._left)
        if self._left == 0:
            raise _Truncated
        return len(data)

    def flush(self) -> None:
        self._wfile.flush()


class Uplink:
    """The client's uplink as the emulator plays it: request bodies on both origins are read no faster than
    `emulator.uplink_mbps` megabits a second (None: as fast as loopback), all connections sharing the one
    link, as uploads from one machine do. Read at each slice, so a change applies at once."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        self._lock = threading.Lock()
        self._free_at = 0.0  # time.monotonic() when everything admitted so far has crossed the link

    def admit(self, wanted: int) -> int:
        mbps = self._emulator.uplink_mbps
        if mbps is None or mbps <= 0 or self._emulator.stopping:
            return wanted
        rate = mbps * 1e6 / 8  # bytes a second
        size = min(wanted, max(UPLINK_MIN_SLICE, int(rate * UPLINK_SLICE_SECONDS)))
        with self._lock:
            now = time.monotonic()
            self._free_at = max(self._free_at, now) + size / rate
            through = self._free_at
        self._emulator.hold(through - now)
        return size


class Emulator:
    """A local stand-in for the hosted providers (tests, demos, dry runs). Labelled as such in every answer.

    Settable after construction: `formats[model_id]` (output format, default "mp4"),
    `per_model_seconds[model_id]`, `model_seconds`, `queue_seconds` (time a task stays "created"),
    `sync_timeout` (sync-mode wait before answering "processing"), `balance`,
    `concurrency[provider]` (tasks processing at once; others wait in the queue; fal: 2, like a new
    fal account; absent: no limit), `sse_keepalive` (seconds between keep-alive comments on fal's
    status stream), `fal_stream` (how that stream is sent: fal's way, or chatty, quiet, close-delimited, cut
    mid-event — a fal_routes.StreamShape), `cdn_token_seconds` (lifetime of fal CDN upload tokens),
    `uplink_mbps` (request bodies, uploads above all, are read no faster than this many Mbit/s, shared like one
    link; None: as fast as they come); before start(): `max_upload_bytes`. `limit_account(key, ...)`: an account
    level's limits for that key (accounts.py). A submit with a webhook URL gets a signed
    delivery when its task ends (`webhooks`, `deliveries`; hostile ones: `next_delivery`).
    """

    def __init__(
        self,
        *,
        api_keys: tuple[str, ...] = DEFAULT_KEYS,
        fal_keys: tuple[str, ...] = DEFAULT_FAL_KEYS,
        model_seconds: float = 0.5,
        formats: dict[str, str] | None = None,
        state_dir: str | Path | None = None,
        per_model_seconds: dict[str, float] | None = None,
        uplink_mbps: float | None = None,
    ) -> None:
        if uplink_mbps is not None and not uplink_mbps > 0:
            raise ValueError(f"uplink_mbps must be above 0 (or None for no limit), got {uplink_mbps!r}")
        self.api_keys = tuple(api_keys)
        self.fal_keys = tuple(fal_keys)
        self.model_seconds = model_seconds
        self.per_model_seconds = dict(per_model_seconds or {})
        self.formats = dict(formats or {})
        self.queue_seconds = 0.05
        self.sync_timeout = 60.0
        self.balance = 100.0
        self.concurrency: dict[str, int] = {"fal": 2}
        self.sse_keepalive = 15.0
        self.fal_stream = StreamShape()
        self.cdn_token_seconds = 3600.0
        self.max_upload_bytes = MAX_UPLOAD_BYTES
        self.uplink_mbps = uplink_mbps
        self.uplink = Uplink(self)
        self.accounts = Accounts()
        self.faults = FaultBoard()
        # Request faults are the board's own: inject, drop, lose, delay, truncate, redirect, malformed.
        board = self.faults
        self.inject, self.drop, self.delay = board.inject, board.drop, board.delay
        self.truncate, self.redirect, self.malformed = board.truncate, board.redirect, board.malformed
        # The hostile mode: bodies dripped, endless or bogusly sized, keys echoed, chosen ids and URLs handed out.
        self.drip, self.endless, self.bogus_length, self.echo = board.drip, board.endless, board.bogus_length, board.echo
        self.hand_out = board.hand_out
        self.lose = board.lose
        self.webhooks = Deliveries()  # signed webhook deliveries (webhooks.py)
        self.next_delivery = self.webhooks.next_delivery
        self.url = ""  # the API origin, after start()
        self.files_url = ""  # the files origin (uploads, outputs), after start()
        self.router = Router()  # the API routes; each emulated provider adds its rows in start()
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._private_dir: Path | None = None
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._submitted: list[str] = []
        self._cancelled: list[str] = []
        self._failures: dict[str, deque[TaskFailure]] = {}
        self._stopping = threading.Event()
        self._servers: list[_HttpServer] = []

    # --- life cycle ---

    def start(self, port: int = 0) -> Emulator:
        """Listen on 127.0.0.1:`port` (0 = any free port) for the APIs, and on a second free port for
        files (uploads and outputs, like a provider's storage host); daemon threads; returns self."""
        if self._servers or self._stopping.is_set():
            raise RuntimeError("an emulator starts once")
        if self._state_dir is None:
            self._private_dir = Path(tempfile.mkdtemp(prefix="sonify-emulator-"))
        root = (self._state_dir or self._private_dir).resolve()
        api, files = _HttpServer(port, self, self.router), _HttpServer(0, self, Router())
        self._servers = [api, files]
        self.url, self.files_url = api.url, files.url
        self.storage = Storage(root, self.max_upload_bytes, files.url)
        self.tasks = TaskBoard(self.storage, self._stopping, slots=lambda provider: self.concurrency.get(provider),
                               on_final=self._deliver, account_slots=self.accounts.at_once)
        fal, wavespeed = FalRoutes(self), WaveSpeedRoutes(self)
        self._payloads = {"fal": fal.webhook_payload, "wavespeed": wavespeed.webhook_payload}
        files.router.add_all(self.storage.routes() + fal.cdn_routes())
        self.router.add_all(wavespeed.routes())  # first: its catch-all owns /api/v3
        self.router.add_all(self.storage.routes() + fal.cdn_routes())  # for uploads handed out on the API's origin
        self.router.add_all(fal.routes())
        for server in self._servers:
            server.thread.start()
        log.info("emulator listening on %s, files on %s (kept in %s)", self.url, self.files_url, root)
        return self

    def stop(self) -> None:
        """Stop serving, end open connections and task workers, remove the private temp dir."""
        servers, self._servers = self._servers, []
        if not servers:
            return
        self._stopping.set()
        for server in servers:
            server.shutdown()
        self.tasks.close()
        self.webhooks.join(JOIN_SECONDS)
        for server in servers:
            server.close_connections()
            server.server_close()
            server.thread.join()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
        log.info("emulator on %s stopped", self.url)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() is called (from another thread) or `timeout` passes; True if stopped.

        Waits in short steps so that Ctrl-C reaches the main thread at once."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopping.is_set():
            step = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if step <= 0:
                break
            self._stopping.wait(step)
        return self._stopping.is_set()

    @property
    def stopping(self) -> bool:
        """True once stop() began: long answers (event streams) end."""
        return self._stopping.is_set()

    def __enter__(self) -> Self:
        return self if self._servers else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _deliver(self, task: Task) -> None:
        """A task just ended: its signed webhook delivery, if its submit asked for one."""
        if task.webhook and not self.stopping:
            self.webhooks.deliver(task.provider, task.webhook, task.shown_id, self._payloads[task.provider](task))

    # --- behaviour switches ---

    def limit_account(self, key: str, *, starts: int | None = 2, seconds: float = 60.0, at_once: int | None = 2,
                      retry_after: bool = True) -> None:
        """The account of `key` gets an account level's limits (accounts.py; the defaults: WaveSpeed's Bronze): at
        most `starts` tasks started in any `seconds` (WaveSpeed's submits past it: 429, with Retry-After unless
        `retry_after` is False; fal documents no start rate) and `at_once` processing (the others wait in the
        queue). `seconds` shortens the documented minute so tests run fast."""
        self.accounts.limit(key, starts, seconds, at_once, retry_after)

    def seconds_for(self, model_id: str) -> float:
        return self.per_model_seconds.get(model_id, self.model_seconds)

    def stick_next(self, model_id: str, times: int = 1) -> None:
        """The next `times` tasks of `model_id` never leave the queue (until cancelled or stop())."""
        self._check_model(model_id)
        self.faults.task(model_id, TaskFault(stuck=True), times)

    def report_next(self, model_id: str, status: str, times: int = 1) -> None:
        """The next `times` tasks of `model_id` report the raw status word `status` once final
        (e.g. "rejected" on WaveSpeed, "REJECTED" on fal: words the clients do not know)."""
        self._check_model(model_id)
        self.faults.task(model_id, TaskFault(status=status), times)

    def bad_sound_next(self, model_id: str, sound: str, times: int = 1) -> None:
        """The next `times` tasks of `model_id` make their sound wrong the way a model can (synth.BAD_SOUNDS):
        near-silent, clipped, or cut short."""
        self._check_model(model_id)
        if sound not in synth.BAD_SOUNDS:
            raise ValueError(f"unknown bad sound {sound!r} (one of {', '.join(synth.BAD_SOUNDS)})")
        self.faults.task(model_id, TaskFault(sound=sound), times)

    def task_options(self, model_id: str) -> dict[str, Any]:
        """Task fields from the switchboard for a task of `model_id` being created now."""
        fault = self.faults.take_task(model_id)
        return {"fail": self.take_failure(model_id), "stuck": fault.stuck, "reported_status": fault.status,
                "sound": fault.sound}

    def handed_out(self, kind: str, real: str) -> str:
        """What an answer hands out as `kind` (faults.HANDED_OUT): `real`, or what hand_out() set."""
        return self.faults.handed_out(kind, real, api=self.url, files=self.files_url)

    def hold(self, seconds: float) -> bool:
        """Wait `seconds` (a delayed answer); True if the emulator began stopping meanwhile."""
        return self._stopping.wait(seconds)

    @staticmethod
    def _check_model(model_id: str) -> None:
        if not any(model_id == m for _, m in BY_MODEL_ID):
            raise ValueError(f"unknown model id {model_id!r}")

    def fail_next(self, model_id: str, error: str = "Emulated task failure", code: int = 1403) -> None:
        """The next task submitted for `model_id` ends with status failed, `error` and task error `code`."""
        self._check_model(model_id)
        with self._lock:
            self._failures.setdefault(model_id, deque()).append(TaskFailure(error, code))

    def take_failure(self, model_id: str) -> TaskFailure | None:
        with self._lock:
            queue = self._failures.get(model_id)
            return queue.popleft() if queue else None

    # --- what happened ---

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._records.append(entry)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered (or dropped) so far, oldest first (a copy)."""
        with self._lock:
            return list(self._records)

    def record_submit(self, model_id: str) -> None:
        with self._lock:
            self._submitted.append(model_id)

    def submits(self, model_id: str | None = None) -> int:
        """Accepted submits (a task was created), for one model or all."""
        with self._lock:
            return sum(1 for m in self._submitted if model_id is None or m == model_id)

    def record_cancel(self, model_id: str) -> None:
        with self._lock:
            self._cancelled.append(model_id)

    def cancels(self, model_id: str | None = None) -> int:
        """Accepted cancel requests (the task was not final yet), for one model or all."""
        with self._lock:
            return sum(1 for m in self._cancelled if model_id is None or m == model_id)

    @property
    def deliveries(self) -> list[DeliveryRecord]:
        """Every webhook delivery sent so far and what its receiver answered, oldest first (a copy)."""
        return self.webhooks.records

    def task_completed_at(self, task_id: str) -> float | None:
        """time.monotonic() when the task reached its final status; None while it runs or if unknown."""
        task = self.tasks.get(task_id)
        return task.completed_at if task is not None else None


def serve_forever(port: int, on_ready: Callable[[Emulator], None] | None = None, **kwargs: Any) -> Emulator:
    """Run an emulator until Ctrl-C (or until stop() is called from elsewhere); returns it stopped.

    `on_ready(emulator)` runs once it listens, so the caller can tell the user its URL."""
    emulator = Emulator(**kwargs).start(port)
    try:
        if on_ready is not None:
            on_ready(emulator)
        emulator.wait()
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        emulator.stop()
    return emulator
