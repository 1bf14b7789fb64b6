"""A source's frames decoded in a thread of their own, a few frames ahead of whoever reads them.

Reading a file for its proxy or its windows is decode, then scale and encode, frame by frame. In one thread the
decoder (and its frame threads) waits while a frame is scaled and encoded, and the encoder waits while the next
frame is decoded; on two cores that left a third of the machine idle. Decoded ahead, the two overlap: the 120 s
1080p clip of `sonify bench` is cut into its windows in about 13 s instead of 15.5 s (one decode pass alone: 9 s).
PyAV and the codecs release the GIL while they work.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import av

DEPTH = 4  # decoded frames held at most between the decoder and the reader (4 × 3 MB at 1080p)


@contextmanager
def decoded_ahead(container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[Iterator[av.VideoFrame]]:
    """The frames of `stream`, in order, decoded in a thread; what the decoding raises is raised to the reader.
    Leaving the block stops the decoding and waits for its thread, so the container can be closed after it."""
    frames: queue.Queue = queue.Queue(DEPTH)
    stop = threading.Event()

    def decode() -> None:
        try:
            for frame in container.decode(stream):
                frames.put(frame)
                if stop.is_set():
                    return
            frames.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            frames.put(_Failed(exc))

    def read() -> Iterator[av.VideoFrame]:
        while (item := frames.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item

    thread = threading.Thread(target=decode, name="sonify-decode", daemon=True)
    thread.start()
    try:
        yield read()
    finally:
        stop.set()
        while thread.is_alive():  # room for a put the decoder may be blocked in: it then sees `stop`
            try:
                frames.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error
