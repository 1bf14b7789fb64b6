"""Server-sent events (fal's status stream) read so that the caller never waits on the stream: the events come
through a queue from a thread of their own, and closing shuts the stream's socket down without waiting for that
thread. Cancel is then as quick whatever the stream does: chatty, quiet, close-delimited or chunked, cut off in
the middle of an event, or never answered at all (that part is the request's watch: http.Http.stream)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .http import Stream

WAKE_CHECK = 0.02  # seconds between looks at a wake-up while the stream is quiet


MAX_LINE = 1 << 20  # bytes: a longer line is not an event of a status stream (its buffer is bounded by this)


class EventReader:
    """The events of a Stream, read on a background thread. Items: the JSON object of each event's `data`, then
    one str saying why the stream ended."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._items: queue.Queue[dict[str, Any] | str] = queue.Queue()
        threading.Thread(target=self._read, name="sonify-event-stream", daemon=True).start()

    def _read(self) -> None:
        try:
            for data in sse_data(iter(self._stream.read, b"")):
                event = json.loads(data)
                if not isinstance(event, dict):
                    self._items.put("an event was not a JSON object")
                    return
                self._items.put(event)
            self._items.put("the stream ended before COMPLETED")
        except ValueError as exc:  # json's, utf-8's, or a line too long
            self._items.put(f"the stream is not events of JSON ({exc})"[:200])
        except Exception as exc:  # noqa: BLE001 - whatever ends the read ends the stream; the caller polls
            self._items.put(f"the stream broke ({type(exc).__name__})")
        finally:
            self._stream.close()  # here, where nothing waits for it: the only thread that reads the stream

    def next(self, timeout: float, wake: threading.Event | None = None) -> dict[str, Any] | str | None:
        """The next item, or None if none came within `timeout` seconds (or `wake` was set meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._items.get(timeout=min(WAKE_CHECK, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline or (wake is not None and wake.is_set()):
                    return None

    def close(self) -> None:
        """End the stream now: its socket is shut down, which ends the read under way; the reading thread then
        releases the connection itself. Waits for nothing."""
        self._stream.shut()


def sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    """The `data` of each server-sent event; comment lines (keep-alives) and other fields are skipped."""
    buffer, data = b"", []
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > MAX_LINE:
            raise ValueError(f"a line of the stream is longer than {MAX_LINE} bytes")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line and data:
                yield "\n".join(data)
                data = []
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)
