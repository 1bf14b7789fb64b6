"""`python -m sonify bench --quick` (the benchmark in sonify_devtools/bench/) produces its tables and
JSON. No timing asserts: the benchmark measures time."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
from pack import ROOT

from sonify_devtools.bench.measure import MB, PeakRss


def test_bench_quick_prints_its_tables_and_writes_json(tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "sonify", "bench", "--quick", "--json", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for title in ("prepare", "Upload proxy", "Detection latency", "batch:", "start-up", "A long clip", "Targets:"):
        assert title in done.stdout
    record = json.loads(report.read_text())
    for case in record["clips"]:
        assert set(case["seconds"]) == {"prepare", "encode", "upload", "submit", "wait", "download", "decode",
                                        "align", "check", "mux"}
        assert case["uploaded_bytes"] > 0 and case["peak_rss_bytes"] > 0 and case["detection_seconds"] is not None
        assert case["picture_copied"] and case["audio_packets_copied"] and case["frames"]["within_one_frame"]
    assert any(not c["proxy"] and c["uploaded_unchanged"] for c in record["clips"])  # a fitting file went as is
    assert any(c.get("reference") for c in record["clips"])
    assert all(r["stream_requests"] == 1 and r["status_polls"] == 0 for r in record["fal"])
    assert all(r["status_polls"] >= 1 for r in record["fal_fallback"])
    assert {r["attempt"] for r in record["wavespeed"]} == {"first", "repeat", "new process"}
    assert record["batch"]["jobs"] > 0 and record["lipsync"][0]["torch_shares_memory"] is True
    assert not record["startup"]["imports_pyav"] and not record["startup"]["imports_emulator"]
    assert all(set(t) == {"target", "measured", "met"} for t in record["targets"])
    long = record["long_clip"]  # 35 s through MMAudio: two windows, each way
    for way in ("parallel", "one after another"):
        assert long[way]["windows"] == 2 and long[way]["picture_copied"] and long[way]["samples_exact"]
    memory = record["long_clip_memory"]  # 1 and 2 minutes of a small clip, each run in a new process
    assert [r["minutes"] for r in memory] == [1, 2] and [r["windows"] for r in memory] == [3, 5]
    assert all(r["peak_rss_bytes"] >= r["rss_before_bytes"] > 0 for r in memory)
    assert "A long clip's memory" in done.stdout
    assert any(t["target"].startswith("long clip memory flat") for t in record["targets"])
    saves = record["saves"]  # frames → node → save, each way, and what runs beside the background encode
    assert {r["way"] for r in saves["runs"]} == {"the save encodes", "made during the wait"}
    assert all(r["saved_bytes"] > 0 for r in saves["runs"]) and saves["neighbours"]["gpu_alone_seconds"] > 0
    assert [r["background_seconds"] is not None for r in saves["runs"]] == [False, True]
    assert {r["way"] for r in record["file_path"]["rows"]} == {"naive", "Sonify"}
    assert record["long_clip"]["decode_pass_seconds"] > 0
    assert "Frames → MMAudio node → Save Video" in done.stdout and "as the model's first job" in done.stdout


def test_peak_rss_sees_memory_taken_and_given_back_inside_its_block_with_nothing_running_beside_it():
    threads = threading.active_count()
    with PeakRss() as rss:
        assert threading.active_count() == threads  # the kernel keeps the peak: no sampler takes the GIL from the work
        block = np.ones(64 * MB // 8)  # written: resident
        del block
    assert rss.growth >= 60 * MB
    with PeakRss() as again:  # the peak starts again from the block's start, not from the process's highest
        pass
    assert again.growth < 8 * MB
