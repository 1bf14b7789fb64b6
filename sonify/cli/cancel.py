"""Ctrl-C for the commands that run jobs: the first cancels them as ComfyUI's Cancel does, a second quits."""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def ctrl_c_cancels() -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C cancels like ComfyUI's Cancel: the wait stops within a second, a fal job is
    cancelled remotely and the journal records it. A second Ctrl-C quits at once.

    A Ctrl-C is counted as it arrives, not when Python next runs on the main thread. The kernel may hand the signal
    to any thread of the process (a watchdog's, a server's); Python then runs its handler only once the main
    thread returns to Python code, which a read blocked in C (a silent peer, up to its read timeout) holds off.
    So Python's own signal handler only writes the signal to a pipe (signal.set_wakeup_fd, done by the C handler
    on whichever thread received it), and a thread of ours reads the pipe: the first press sets the flag the
    request watch looks at, the second interrupts the main thread."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return
    presses = 0
    quitting = False

    def on_sigint(signum: int, frame: Any) -> None:  # on the main thread, whenever it runs Python again
        nonlocal quitting
        if presses >= 2 and not quitting:
            quitting = True
            raise KeyboardInterrupt

    def count(reader: int) -> None:
        nonlocal presses
        while True:
            try:
                received = os.read(reader, 64)
            except OSError:
                return
            if not received:  # the pipe closed: the command is over
                return
            for number in received:
                if number != signal.SIGINT:
                    continue
                presses += 1
                if presses == 1:
                    requested.set()
                    print("\ncancelling… (Ctrl-C again to quit at once)", file=sys.stderr)
                elif presses == 2 and not quitting:
                    _thread.interrupt_main()  # runs on_sigint on the main thread, which raises

    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    previous_fd = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
    counter = threading.Thread(target=count, args=(reader,), name="sonify-ctrl-c", daemon=True)
    counter.start()
    try:
        yield requested.is_set
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        os.close(writer)
        counter.join(timeout=1.0)
        os.close(reader)
