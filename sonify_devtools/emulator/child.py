"""The emulator as a child process that ends with its parent (ComfyUI's emulator mode, nodes/emulator_mode.py).

It serves until its stdin closes (the parent stopping it) or the parent process is gone, however it went:
SIGKILLed, or crashed, with its stdin pipe still held open by a process the parent forked. The parent itself is
watched, two ways:
- on Linux, a pidfd of the parent (os.pidfd_open, Linux 5.3+) wakes the watch the moment the parent process
  exits. (Not prctl's parent-death signal: that follows the *thread* that started the child, and ComfyUI starts
  it from a worker thread of its server.)
- everywhere, os.getppid() is polled every POLL_SECONDS: a child whose parent is gone has a new parent.
"""

from __future__ import annotations

import os
import select
import threading
from typing import Any

from .server import Emulator

POLL_SECONDS = 0.25


def serve_for_parent(parent: int, **emulator_args: Any) -> None:
    """Start an emulator (Emulator(**emulator_args) on a free port), say "API <url>" on stdout, and stop it once
    the process `parent` (the one that started this one) is gone or stdin closes."""
    emulator = Emulator(**emulator_args).start(0)
    try:
        print("API", emulator.url, flush=True)
        wait_for_parent(parent)
    finally:
        emulator.stop()


def wait_for_parent(parent: int) -> None:
    """Return once stdin is at its end, or `parent` is no longer this process's parent."""
    gone = threading.Event()
    _on_thread(_read_to_end, gone)
    pidfd = _pidfd(parent)
    if pidfd is not None:
        _on_thread(_wait_readable, pidfd, gone)
    while os.getppid() == parent and not gone.wait(POLL_SECONDS):
        pass


def _pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when process `pid` ends; None where there is none (not Linux, an
    old kernel, a sandbox that forbids it, or a parent already gone: the polling sees to those)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _on_thread(target: Any, *args: Any) -> None:
    threading.Thread(target=target, args=args, daemon=True).start()


def _read_to_end(done: threading.Event) -> None:
    """Read stdin away to its end (raw reads: a daemon thread never holds the buffered reader's lock at exit)."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    done.set()


def _wait_readable(fd: int, done: threading.Event) -> None:
    select.select([fd], [], [])
    done.set()
