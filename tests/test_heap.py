"""Memory a thread's work freed is handed back to the system (sonify/heap.py): glibc keeps it otherwise."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from sonify import heap


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's per-thread heaps")
def test_what_a_thread_freed_leaves_the_process_once_given_back():
    kept: list[np.ndarray] = []

    def work() -> None:
        mapped = np.ones(4_000_000)  # 32 MB of its own mapping, freed: glibc now serves such blocks from its heaps
        del mapped
        blocks = []
        for _ in range(40):  # 160 MB in this thread's heap, written, each block followed by a little that stays
            blocks.append(np.full(500_000, 2.0))
            kept.append(np.ones(200))
        del blocks  # freed between what stays: no heap can shrink from its end

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    before = resident_mb()
    heap.give_back()
    assert before - resident_mb() > 100  # freed, yet resident until handed back
