"""50 jobs at concurrency 8 while the emulator answers 429s (with and without Retry-After) and drops
or cuts connections: every job completes, each is submitted exactly once, the journal is consistent.

The jobs run as the batch command will run them: `pipeline.run` on a pool of 8 threads."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import pytest
from clips import write_clip

from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL
from sonify.net import http
from sonify_devtools.emulator import Emulator

JOBS, CONCURRENCY = 50, 8
# At most MAX_ATTEMPTS - 1 = 5 faults per route: however the 8 threads interleave, no single request
# can meet more faults in a row than its retries allow, so the test is deterministic.
WAVESPEED_FAULTS = [
    ("inject", "POST", rf"^/api/v3/{MMAUDIO_V2.model_id}$", {"status": 429, "times": 3, "retry_after": 0.1}),
    ("inject", "POST", rf"^/api/v3/{MMAUDIO_V2.model_id}$", {"status": 429, "times": 2}),
    ("inject", "GET", r"^/api/v3/predictions/[^/]+/result$", {"status": 429, "times": 3}),
    ("drop", "GET", r"^/api/v3/predictions/[^/]+/result$", {"times": 2}),
    ("inject", "PUT", r"^/storage/put/", {"status": 503, "times": 3}),
]
FAL_FAULTS = [
    ("inject", "POST", rf"^/{THINKSOUND_FAL.model_id}$", {"status": 429, "times": 5, "retry_after": 0.1,
                                                          "body": {"detail": "queue is full"}}),
    ("drop", "GET", r"/status/stream$", {"times": 4}),  # each falls back to polling
    ("inject", "GET", r"/requests/[^/]+/status$", {"status": 429, "times": 3}),
    ("drop", "GET", r"/requests/[^/]+/status$", {"times": 2}),
]
OUTPUT_FAULTS = [
    ("drop", "GET", r"^/outputs/", {"times": 2}),
    ("truncate", "GET", r"^/outputs/", {"times": 2, "keep": 300}),
    ("inject", "GET", r"^/outputs/", {"status": 429, "times": 1}),
]


@pytest.fixture
def both_env(emulator: Emulator, wavespeed_env, fal_env) -> Emulator:
    emulator.concurrency = {"fal": 4, "wavespeed": 3}  # like the real accounts: the rest waits in the queue
    return emulator


def test_50_jobs_at_concurrency_8_through_faults(both_env: Emulator, tmp_path: Path) -> None:
    emulator = both_env
    assert http.MAX_ATTEMPTS == 6
    for kind, method, regex, options in WAVESPEED_FAULTS + FAL_FAULTS + OUTPUT_FAULTS:
        getattr(emulator, kind)(method, regex, **options)
    clips = [media.VideoSource(path=str(write_clip(tmp_path / f"clip{i}.mp4", 12, Fraction(24), 64, 48, flash_at=(i,))))
             for i in range(5)]

    def job(i: int) -> pipeline.Result:
        spec = MMAUDIO_V2 if i % 2 == 0 else THINKSOUND_FAL
        return pipeline.run(spec, {"prompt": f"job {i}"}, clips[i % len(clips)], out_dir=tmp_path / "out")

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(job, range(JOBS)))

    # Every job completed with its own task, made from its own request.
    task_ids = [r.info["task_id"] for r in results]
    assert len(set(task_ids)) == JOBS
    for i, result in enumerate(results):
        assert result.info["status"] == "completed" and result.video_path.is_file()
        assert emulator.tasks.get(result.info["task_id"]).params["prompt"] == f"job {i}"
    # Each submitted exactly once: 50 tasks created, and no accepted submit beyond them.
    assert emulator.submits() == JOBS
    submits = [r for r in emulator.requests if r.method == "POST" and r.path in
               (f"/api/v3/{MMAUDIO_V2.model_id}", f"/{THINKSOUND_FAL.model_id}")]
    assert sum(r.status == 200 for r in submits) == JOBS and {r.status for r in submits} == {200, 429}
    # The faults really happened.
    faults = {r.fault for r in emulator.requests}
    assert {"inject", "drop", "truncate"} <= faults

    with sqlite3.connect(Path(tmp_path / "state" / "jobs.sqlite3")) as db:
        rows = db.execute("SELECT task_id, status, delivered, result_path, owner FROM jobs").fetchall()
    assert len(rows) == JOBS
    assert sorted(row[0] for row in rows) == sorted(task_ids)
    assert all(status == "completed" and delivered == 1 and owner is None for _, status, delivered, _, owner in rows)
    stored = [Path(row[3]) for row in rows]
    assert len(set(stored)) == JOBS and all(path.is_file() for path in stored)
    for result in results:  # each stored file is its own task's output, byte for byte
        served = emulator.storage.output_dir(result.info["task_id"]) / Path(result.info["outputs"][0]).name
        assert Path(result.info["result_file"]).read_bytes() == served.read_bytes()


def test_50_clips_through_the_batch_command_at_concurrency_8(emulator, wavespeed_env, tmp_path, capsys) -> None:
    """The same load through `python -m sonify batch` itself (in-process, so the emulator's faults
    are ours to set): 50 distinct clips, every one delivered, each submitted exactly once."""
    from sonify import cli

    emulator.concurrency = {"wavespeed": 3}
    for kind, method, regex, options in WAVESPEED_FAULTS + OUTPUT_FAULTS:
        getattr(emulator, kind)(method, regex, **options)
    sources = tmp_path / "clips"
    sources.mkdir()
    for i in range(JOBS):
        write_clip(sources / f"clip{i:02d}.mp4", 12, Fraction(24), 64, 48, flash_at=(i % 12,))
    out = tmp_path / "out"

    code = cli.main(["batch", "mmaudio-v2", str(sources), "-o", str(out), "--concurrency", str(CONCURRENCY),
                     "--prompt", "rain"])
    assert code == 0, capsys.readouterr().err
    assert len(list(out.glob("clip*.mp4"))) == JOBS
    assert emulator.submits() == JOBS
    with sqlite3.connect(Path(tmp_path / "state" / "jobs.sqlite3")) as db:
        rows = db.execute("SELECT status, delivered, owner FROM jobs").fetchall()
    assert len(rows) == JOBS and all(row == ("completed", 1, None) for row in rows)
    assert {"inject", "drop", "truncate"} <= {r.fault for r in emulator.requests}
