"""A file made in the background (sonify/background.py): made once, at the lowest priority; stopped between two
frames and removed when cancelled; removed when discarded after it was made."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from sonify.background import BackgroundFile


def frame_writer(frames: int, gate: threading.Event | None = None, seen: list | None = None,
                 first: threading.Event | None = None):
    """A maker writing `frames` lines, checking before each; after the first, it sets `first` and waits at `gate`
    (if given)."""

    def make(path: Path, check) -> None:
        with open(path, "w") as out:
            for i in range(frames):
                check()
                out.write(f"frame {i}\n")
                if seen is not None:
                    seen.append(_policy_here_and_in_a_thread_started_here())
                if gate is not None and i == 0:
                    first.set()
                    gate.wait()

    return make


def _policy_here_and_in_a_thread_started_here() -> tuple[int, int]:
    started: list[int] = []
    child = threading.Thread(target=lambda: started.append(os.sched_getscheduler(threading.get_native_id())))
    child.start()
    child.join()
    return os.sched_getscheduler(threading.get_native_id()), started[0]


def test_made_once_then_given_to_whoever_asks(tmp_path):
    seen: list[int] = []
    made = BackgroundFile(frame_writer(3, seen=seen), tmp_path / "picture.mp4")
    assert made.result() is None  # not started: nothing to wait for
    made.start()
    made.start()
    assert made.result() == tmp_path / "picture.mp4" and made.result().read_text().count("frame") == 3
    if sys.platform.startswith("linux"):  # the maker's thread and the codec threads it starts run at SCHED_IDLE
        assert set(seen) == {(os.SCHED_IDLE, os.SCHED_IDLE)}


def test_cancelled_while_it_is_made_it_stops_and_leaves_no_file(tmp_path):
    gate, first = threading.Event(), threading.Event()
    made = BackgroundFile(frame_writer(50, gate, first=first), tmp_path / "picture.mp4")
    made.start()
    first.wait()  # one frame written; the maker waits at the gate
    made.cancel()
    gate.set()
    assert made.result() is None and not (tmp_path / "picture.mp4").exists()


def test_cancelled_after_it_was_made_its_file_goes(tmp_path):
    made = BackgroundFile(frame_writer(2), tmp_path / "picture.mp4")
    made.start()
    assert made.result() is not None
    made.cancel()
    assert made.result() is None and not (tmp_path / "picture.mp4").exists()


def test_what_stops_it_is_kept(tmp_path):
    def refuse() -> None:
        raise KeyboardInterrupt

    made = BackgroundFile(frame_writer(2), tmp_path / "picture.mp4", guard=refuse)
    made.start()
    assert made.result() is None and isinstance(made.error, KeyboardInterrupt)
    assert not (tmp_path / "picture.mp4").exists()


def test_a_cancel_before_the_start_makes_nothing(tmp_path):
    made = BackgroundFile(frame_writer(1), tmp_path / "picture.mp4")
    made.cancel()
    made.start()
    assert made.result() is None and not (tmp_path / "picture.mp4").exists()
