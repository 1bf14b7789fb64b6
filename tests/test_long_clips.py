"""Long clips: a clip longer than one job takes is done in windows at the emulator — boundaries at shot
cuts, sound joined exact to the sample, the picture copied; each window its own job (resumed after a
crash, cancelled on Cancel, priced in the sum); takes of windows."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import onset_time, video_packets
from pack import ROOT, load_pack, module, outputs

from sonify import journal as jobs
from sonify import media, pipeline
from sonify.catalog import KLING_V2A, MMAUDIO_V2, Window
from sonify.errors import Cancelled, SonifyError, ValidationError
from sonify.media import windows

NTSC = Fraction(30000, 1001)
MMAUDIO = MMAUDIO_V2.model_id
LEVELS = (0.0, 0.4, 0.15, 0.55)  # each shot's brightness: neighbouring shots share no luma


def shot_frames(n: int, width: int, height: int, cuts: list[int], flashes: set[int]) -> np.ndarray:
    """[N, H, W, 3] float32: shots (a new brightness from each frame in `cuts`) of a slowly drifting picture,
    with white one-frame flashes."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    out = np.empty((n, height, width, 3), np.float32)
    for i in range(n):
        if i in flashes:
            out[i] = 1.0
            continue
        level = LEVELS[sum(i >= c for c in cuts) % len(LEVELS)] + 0.05 + 0.15 * (0.5 + 0.5 * np.sin(2 * np.pi * (x + i / n)))
        out[i] = level[None, :, None]
    return out


def write_shots(path: Path, n: int, fps: Fraction, cuts: list[int], flashes: set[int] = frozenset(),
                size: tuple[int, int] = (64, 48)) -> Path:
    frames = shot_frames(n, *size, cuts, flashes)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.time_base = stream.codec_context.time_base = 1 / fps
        for i, picture in enumerate(frames):
            frame = av.VideoFrame.from_ndarray((picture * 255 + 0.5).astype(np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture
def long_clip(tmp_path: Path) -> tuple[Path, list[int], int, int]:
    """75 s at 29.97 fps with shot cuts at 24.0, 51.5 and 63.0 s and a flash at 50.0 s."""
    n = round(75 * NTSC)
    cuts = [round(t * NTSC) for t in (24.0, 51.5, 63.0)]
    flash = round(50 * NTSC)
    return write_shots(tmp_path / "long.mp4", n, NTSC, cuts, {flash}), cuts, flash, n


def test_cuts_are_found_and_a_flash_is_no_cut():
    cuts = [30, 95, 140]
    frames = shot_frames(200, 64, 48, cuts, flashes={60, 61 + 50})
    assert windows.find_cuts(media.frames_luma_histograms(frames)) == cuts


def test_windows_stay_within_the_limits_and_move_to_cuts():
    spans = windows.plan(21 * 24, Fraction(24), Window(20.0, 3.0), cuts=[])
    assert len(spans) == 2 and spans[0].start == 0 and spans[-1].end == 504
    assert all(3 * 24 <= s.end - s.start <= 20 * 24 for s in spans)
    assert spans[0].end - spans[1].start == 24  # 1 s of overlap
    moved = windows.plan(504, Fraction(24), Window(20.0, 3.0), cuts=[240])  # 10.0 s: 0.5 s from the middle
    assert moved[0].cut_after and moved[1].cut_before and (moved[0].end + moved[1].start) // 2 == 240
    far = windows.plan(504, Fraction(24), Window(20.0, 3.0), cuts=[100])  # beyond the tolerance: not moved
    assert not far[0].cut_after
    nine = windows.plan(40 * 24, Fraction(24), Window(30.0, 1.0, preferred=9.0), cuts=[])
    assert len(nine) == 5 and all(s.end - s.start <= 9 * 24 for s in nine)


def test_the_join_is_equal_power_and_exact_to_the_sample():
    fps, rate = Fraction(24), 1000
    spans = [windows.Span(0, 252), windows.Span(228, 504)]
    seconds = Fraction(504, 24)
    joined = windows.join([np.ones((1, 10_600), np.float32), np.ones((1, 11_600), np.float32)], spans, fps, rate,
                          seconds)
    assert joined.shape == (1, 21_000)
    overlap = joined[0, 9_500:10_500]  # gains √(1−t) and √t on equal signals: √(1−t) + √t
    t = np.linspace(0, 1, 1000, endpoint=False)
    assert np.allclose(overlap, np.sqrt(1 - t) + np.sqrt(t), atol=1e-3)
    assert np.allclose(joined[0, :9_500], 1) and np.allclose(joined[0, 10_500:], 1)
    at_cut = windows.join([np.ones((1, 10_600)), np.full((1, 11_600), 2.0)],
                          [windows.Span(0, 252, cut_after=True), windows.Span(228, 504, cut_before=True)], fps, rate,
                          seconds)
    assert np.allclose(at_cut[0, :9_990], 1) and np.allclose(at_cut[0, 10_010:], 2)  # a 20 ms fade at 10.0 s


def test_a_75_s_clip_with_shot_cuts_through_mmaudio(emulator, wavespeed_env, long_clip):
    path, cuts, flash, n = long_clip
    node = load_pack().NODE_CLASS_MAPPINGS["SonifyMMAudioV2"]
    audio, video, job = outputs(getattr(node(), node.FUNCTION))(
        prompt="rain", negative_prompt="", duration=0, num_inference_steps=25, guidance_scale=4.5,
        mask_away_clip=False, seed=3, video=module("nodes.comfy").FileVideo(str(path)))

    assert emulator.submits(MMAUDIO) == 3
    waveform = audio["waveform"]
    assert waveform.shape == (1, 1, round(Fraction(n) / NTSC * 44100))  # exact to the sample
    info = json.loads(job)
    spans = info["windows"]
    assert [w["window"] for w in spans] == [1, 2, 3] and len({w["task_id"] for w in spans}) == 3
    assert all(1 <= w["end"] - w["start"] <= 30 for w in spans)
    assert spans[0]["start"] == 0 and spans[-1]["end"] == pytest.approx(float(n / NTSC))
    boundaries = [(a["end"] + b["start"]) / 2 for a, b in itertools.pairwise(spans)]
    assert boundaries == pytest.approx([float(cuts[0] / NTSC), float(cuts[1] / NTSC)], abs=1e-4)  # at the cuts
    assert [w["cut_after"] for w in spans] == [True, True, False]
    assert info["cost_usd_estimate"] == pytest.approx(sum(w["cost_usd_estimate"] for w in spans))
    assert info["video_seconds"] == pytest.approx(75.008, abs=1e-3)

    heard = 49 + onset_time(waveform[0, :, 49 * 44100:51 * 44100].numpy(), 44100, 0.5)
    assert abs(heard - float(flash / NTSC)) <= float(1 / NTSC)  # the flash at 50.0 s, within one frame
    out = video.get_stream_source()
    assert video_packets(out) == video_packets(path)  # the picture copied
    assert media.probe(out).duration == media.probe(path).duration


def test_kling_21_s_two_windows_of_at_least_3_s_and_takes_of_windows_from_frames(emulator, wavespeed_env):
    n = 21 * 24
    frames = torch.from_numpy(shot_frames(n, 64, 48, cuts=[], flashes={300}))
    node = load_pack().NODE_CLASS_MAPPINGS["SonifyKlingVideoToAudio"]
    audio, video, job = outputs(getattr(node(), node.FUNCTION))(sound_effect_prompt="a door", bgm_prompt="", asmr_mode=False,
                                                       images=frames, fps=24.0, variations=2)
    assert emulator.submits(KLING_V2A.model_id) == 4  # 2 takes × 2 windows
    assert audio["waveform"].shape == (2, 2, 21 * 48000)
    info = json.loads(job)
    assert info["variations"] == 2 and info["cost_usd_estimate"] == pytest.approx(4 * 0.035)
    for take in info["takes"]:
        assert len(take["windows"]) == 2 and all(3 <= w["end"] - w["start"] <= 20 for w in take["windows"])
    assert video.get_components().images.shape[0] == n


def test_the_price_limit_applies_to_the_sum_over_windows(emulator, wavespeed_env, long_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_JOB", "0.05")  # each window ~$0.026 passes; the three ($0.078) do not
    with pytest.raises(ValidationError, match=r"node run's sum: its 3 windows are together estimated at \$0\.078"):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(long_clip[0])), out_dir=tmp_path / "o")
    assert emulator.requests == []


def test_cancel_cancels_every_running_window(emulator, wavespeed_env, long_clip, tmp_path):
    emulator.model_seconds = 30
    pressed = threading.Event()

    def is_cancelled() -> bool:
        if sum(t.status == "processing" for t in emulator.tasks.all()) == 3:
            pressed.set()
        return pressed.is_set()

    with pytest.raises(Cancelled) as caught:
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(long_clip[0])), out_dir=tmp_path / "o",
                     is_cancelled=is_cancelled)
    assert emulator.submits(MMAUDIO) == 3 and emulator.cancels(MMAUDIO) == 3
    for task in emulator.tasks.all():
        assert task.status in ("cancelled", "deleted") and f"cancel of task {task.id}" in str(caught.value)


RUN_WINDOWS = """
import sys, threading
from pathlib import Path
from sonify import media, pipeline
from sonify.catalog import MMAUDIO_V2
pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 5}, media.VideoSource(path=sys.argv[1]), out_dir=Path(sys.argv[2]),
             slots=threading.Semaphore(1))
"""


def test_killed_mid_way_a_rerun_submits_only_the_missing_windows(emulator, wavespeed_env, long_clip, tmp_path):
    """One slot: the first window is at the emulator, the others wait, when the run is killed."""
    emulator.model_seconds = 3
    child = subprocess.Popen([sys.executable, "-c", RUN_WINDOWS, str(long_clip[0]), str(tmp_path / "o")], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while emulator.submits(MMAUDIO) < 1:
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert emulator.submits(MMAUDIO) == 1
    (first,) = emulator.tasks.all()

    emulator.model_seconds = 0.2
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 5}, media.VideoSource(path=str(long_clip[0])),
                          out_dir=tmp_path / "o")
    assert emulator.submits(MMAUDIO) == 3  # the two windows that had no task
    spans = result.info["windows"]
    assert first.id in {w["task_id"] for w in spans} and len({w["task_id"] for w in spans}) == 3
    journal = jobs.Journal(Path(wavespeed_env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE)
    assert sorted(r.task_id for r in journal.recent() if r.delivered) == sorted(w["task_id"] for w in spans)

    fetched = pipeline.fetch("wavespeed", spans[1]["task_id"], out_dir=tmp_path / "fetched")  # one window, alone
    assert fetched.info["source"] is None  # not put on the whole clip: it is one window's sound
    assert spans[1]["end"] - spans[1]["start"] <= fetched.audio.shape[1] / 44100 <= 30.1


def test_a_random_seed_run_whose_window_failed_reuses_the_finished_windows_on_a_rerun(emulator, wavespeed_env,
                                                                                      long_clip, tmp_path):
    """Seed -1 (no result cache): a finished window is not marked delivered until its take is joined, so the
    re-run after one window failed takes the finished windows' stored sound and pays only for the failed one."""
    emulator.inject("POST", rf"/api/v3/{MMAUDIO}$", 400, times=1)  # one window's submit is refused
    with pytest.raises(SonifyError):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": -1}, media.VideoSource(path=str(long_clip[0])),
                     out_dir=tmp_path / "o")
    assert emulator.submits(MMAUDIO) == 2
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": -1}, media.VideoSource(path=str(long_clip[0])),
                          out_dir=tmp_path / "o")
    assert emulator.submits(MMAUDIO) == 3  # only the window that had failed
    assert {t.id for t in emulator.tasks.all()} == {w["task_id"] for w in result.info["windows"]}


def test_a_one_job_preparation_refuses_a_clip_that_needs_windows(emulator, wavespeed_env, tmp_path):
    """pipeline.prepare (a Temporal batch's activity) makes one job: a long clip is refused before it is cut."""
    from sonify import providers
    from sonify.pipeline.types import RunContext, StageTimer
    from sonify.waiter import Waiter

    path = write_shots(tmp_path / "kling.mp4", 21 * 24, Fraction(24), cuts=[])
    ctx = RunContext(Waiter(), lambda text, fraction: None, StageTimer(), tmp_path)
    with pytest.raises(ValidationError, match=r"takes at most 20 s in one job, got 21\.000 s.*not yet by a Temporal"):
        pipeline.prepare(KLING_V2A, KLING_V2A.validate({}), media.VideoSource(path=str(path)), None, None,
                         providers.client("wavespeed"), ctx)
    assert emulator.requests == [] and not list(tmp_path.glob("window-*"))
