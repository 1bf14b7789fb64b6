"""Memory a thread's work freed, handed back to the system rather than kept by the allocator.

glibc gives each thread its own heap (arena) and, once a large block has been freed, serves blocks of that size
from the heaps instead of mapping them afresh (its mmap threshold rises). So a long clip's jobs, each decoding
its window's sound on a thread of its own, left each thread's heap holding a decoded window after it was freed:
the run's peak memory rose with the jobs in progress (a 4-minute clip 1.24x a 1-minute one in `sonify bench`).
Trimmed after each job, it stays within 10 %. Elsewhere than glibc there is nothing to do.
"""

from __future__ import annotations

import ctypes
import functools
import sys


def give_back() -> None:
    """Return the free memory of every heap to the system (glibc's malloc_trim); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library the process runs on (no search for it on disk)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
