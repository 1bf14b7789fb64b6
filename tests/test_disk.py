"""A full disk, made real with RLIMIT_FSIZE in the command's own process (a write past the limit fails with
EFBIG, as one past the free space fails with ENOSPC): no traceback, the task id and the fetch command, no
partial file, and never a submit the journal could not record."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

from clips import write_clip
from pack import ROOT

from sonify import journal
from sonify.catalog import MMAUDIO_V2, THINKSOUND_WAVESPEED


def sonify_with_file_limit(limit_bytes: int, *args: str | Path) -> subprocess.CompletedProcess:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "sonify", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_no_room_for_the_journal_means_nothing_is_submitted(emulator, wavespeed_env, clip_path, tmp_path):
    done = sonify_with_file_limit(1024, "run", MMAUDIO_V2.key, "--video", clip_path, "-o", tmp_path / "out",
                                  "--prompt", "rain")
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert "cannot record this job, so it was not submitted" in done.stderr
    assert emulator.submits(MMAUDIO_V2.model_id) == 0


def test_no_room_for_the_result_keeps_the_task_fetchable(emulator, wavespeed_env, tmp_path):
    emulator.formats[THINKSOUND_WAVESPEED.model_id] = "wav"  # 12 s of 44.1 kHz stereo: 2.1 MB
    source = write_clip(tmp_path / "clip.mp4", 288, Fraction(24), 64, 48)
    args = ("run", THINKSOUND_WAVESPEED.key, "--video", source, "-o", tmp_path / "out")
    full = sonify_with_file_limit(1 << 20, *args)
    assert full.returncode == 3 and "Traceback" not in full.stderr, full.stderr
    (row,) = journal.Journal(Path(wavespeed_env["SONIFY_STATE_DIR"]) / journal.JOURNAL_FILE).recent()
    assert f"no room for the result of task {row.task_id}" in full.stderr
    assert f"python -m sonify fetch wavespeed {row.task_id}" in full.stderr
    assert row.status == journal.Status.COMPLETED and row.result_path is None
    assert not list((Path(wavespeed_env["SONIFY_STATE_DIR"]) / journal.RESULTS_DIR).glob("*"))  # no partial file

    again = subprocess.run([sys.executable, "-m", "sonify", *map(str, args)], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert again.returncode == 0, again.stderr
    assert emulator.submits(THINKSOUND_WAVESPEED.model_id) == 1  # resumed, not paid again
