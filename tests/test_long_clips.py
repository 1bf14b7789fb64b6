"""Long clips: a clip longer than one job takes is done in windows at the emulator — boundaries at shot
cuts, sound joined exact to the sample, the picture copied; each window its own job (resumed after a
crash, cancelled on Cancel, priced in the sum); takes of windows."""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import onset_time, video_packets, write_clip
from pack import ROOT, load_pack, module, outputs

from sonify import journal as jobs
from sonify import media, pipeline
from sonify.catalog import KLING_V2A, MMAUDIO_V2, THINKSOUND_WAVESPEED, Window
from sonify.errors import Cancelled, ConfigurationError, SonifyError, ValidationError
from sonify.media import windows
from sonify.media.sound_file import SoundFile
from sonify.pipeline import plan as plan_module

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


@pytest.mark.parametrize("fps", [Fraction(1), Fraction(3, 2), Fraction(240)])
def test_windows_are_planned_at_any_rate_a_source_may_have(fps):
    frames = math.ceil(600 * fps)  # ten minutes
    for window in (MMAUDIO_V2.window, KLING_V2A.window, Window(30.0, 1.0, preferred=9.0)):
        spans = windows.plan(frames, fps, window, cuts=[])
        assert spans[0].start == 0 and spans[-1].end == frames
        assert all(a.start < b.start < a.end <= b.end for a, b in itertools.pairwise(spans))
        assert all(s.end - s.start <= window.longest * fps for s in spans)


def test_a_rate_no_window_can_take_is_an_error_not_an_endless_loop():
    raised: list[Exception] = []

    def plan() -> None:
        try:
            windows.plan(48, Fraction(1, 100), MMAUDIO_V2.window, cuts=[])  # 0.3 frames in 30 s: no window
        except ValueError as exc:
            raised.append(exc)

    worker = threading.Thread(target=plan, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and "at 0.01 fps" in str(raised[0])


def join(sounds, spans, fps, rate, seconds) -> np.ndarray:
    """windows.joined's blocks, put together, for each window's sound given whole (one block)."""
    return np.concatenate(list(windows.joined([[sound] for sound in sounds], spans, fps, rate, seconds)), axis=1)


def test_the_join_is_equal_power_and_exact_to_the_sample():
    fps, rate = Fraction(24), 1000
    spans = [windows.Span(0, 252), windows.Span(228, 504)]
    seconds = Fraction(504, 24)
    joined = join([np.ones((1, 10_600), np.float32), np.ones((1, 11_600), np.float32)], spans, fps, rate, seconds)
    assert joined.shape == (1, 21_000)
    overlap = joined[0, 9_500:10_500]  # gains √(1−t) and √t on equal signals: √(1−t) + √t
    t = np.linspace(0, 1, 1000, endpoint=False)
    assert np.allclose(overlap, np.sqrt(1 - t) + np.sqrt(t), atol=1e-3)
    assert np.allclose(joined[0, :9_500], 1) and np.allclose(joined[0, 10_500:], 1)
    at_cut = join([np.ones((1, 10_600)), np.full((1, 11_600), 2.0)],
                  [windows.Span(0, 252, cut_after=True), windows.Span(228, 504, cut_before=True)], fps, rate, seconds)
    assert np.allclose(at_cut[0, :9_990], 1) and np.allclose(at_cut[0, 10_010:], 2)  # a 20 ms fade at 10.0 s


def test_the_join_takes_each_window_only_once_the_sound_before_it_is_given_out():
    fps, rate = Fraction(24), 1000
    spans = windows.plan(60 * 24, fps, Window(20.0, 3.0), cuts=[])  # a minute in 4 windows
    given: list[int] = []  # samples given out when each window's sound was taken
    out: list[np.ndarray] = []

    def sounds():
        for k, span in enumerate(spans):
            given.append(sum(block.shape[1] for block in out))
            yield [np.full((2, round((span.end - span.start) / fps * rate)), k + 1.0, np.float32)]

    for block in windows.joined(sounds(), spans, fps, rate, Fraction(60)):
        out.append(block)  # noqa: PERF402 - one at a time: sounds() looks at what was given out so far
    starts = [round(span.start / fps * rate) for span in spans]
    assert given == [0, *starts[1:]]  # window k taken once everything before its first sample was written
    whole = np.concatenate(out, axis=1)
    assert whole.shape == (2, 60_000) and np.allclose(whole[:, :starts[1]], 1) and np.allclose(whole[:, -1000:], 4)


def _in_blocks(sound: np.ndarray, sizes) -> list[np.ndarray]:
    cuts = list(itertools.accumulate(sizes))
    return [sound[:, a:b] for a, b in itertools.pairwise([0, *[c for c in cuts if c < sound.shape[1]],
                                                          sound.shape[1]])]


def test_the_join_is_the_same_however_the_windows_sounds_come_in_blocks():
    fps, rate = Fraction(24), 1000
    spans = windows.plan(90 * 24, fps, MMAUDIO_V2.window, cuts=[560])  # a shot cut near the first boundary
    assert any(span.cut_after for span in spans) and not all(span.cut_after for span in spans[:-1])
    rng = np.random.default_rng(3)
    lengths = [round((s.end - s.start) / fps * rate) + extra for s, extra in zip(spans, itertools.cycle([-700, 0, 900]))]
    sounds = [rng.uniform(-1, 1, (2, n)).astype(np.float32) for n in lengths]  # short, exact and long of their window
    whole = join(sounds, spans, fps, rate, Fraction(90))
    for sizes in ([997] * 200, [1, 4_000, 13, 50_000] * 10, [10_000_000]):
        blocks = [_in_blocks(sound, sizes) for sound in sounds]
        assert np.array_equal(np.concatenate(list(windows.joined(blocks, spans, fps, rate, Fraction(90))), axis=1), whole)


@pytest.mark.parametrize("minutes", [1, 4])
def test_a_join_holds_a_block_and_an_overlap_however_long_the_windows(minutes):
    """Each window's sound read as it goes: at most two of its blocks are alive while the joined sound is written
    (the one being joined, and the one it hands over to), and the joined blocks are never longer than one."""
    fps, rate, block = Fraction(24), 1000, 2_000
    spans = windows.plan(minutes * 60 * 24, fps, Window(60.0, 3.0), cuts=[])
    alive: set[int] = set()
    most = 0
    ids = itertools.count()

    def sound(span: windows.Span):
        nonlocal most
        for _ in range(math.ceil((span.end - span.start) / fps * rate / block)):
            piece = np.ones((2, block), np.float32)
            tag = next(ids)
            alive.add(tag)
            most = max(most, len(alive))
            weakref.finalize(piece, alive.discard, tag)
            yield piece

    longest = max(b.shape[1] for b in windows.joined((sound(s) for s in spans), spans, fps, rate,
                                                     Fraction(minutes * 60)))
    assert most <= 2 and longest <= block


def test_a_windows_sound_is_read_in_blocks_as_decode_audio_reads_it_whole(tmp_path):
    """decode_blocks gives decode_audio's samples, placed the same (an AAC encoder's priming dropped; a gap in the
    timestamps silent), in blocks of the size asked; a sound past its bound is refused as decode_audio refuses it."""
    rng = np.random.default_rng(8)
    sound = (0.5 * rng.uniform(-1, 1, (2, 3 * 44_100 + 77))).astype(np.float32)
    gap = tmp_path / "gap.mkv"  # 1 s of silence between two halves, by timestamps alone
    with av.open(str(gap), "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        for i, pts in enumerate([*range(0, 8000, 800), *range(16_000, 24_000, 800)]):
            frame = av.AudioFrame.from_ndarray(np.full((1, 800), 500 * (i + 1), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 8000, pts, Fraction(1, 8000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    files = [media.write_audio(sound, 44_100, tmp_path / f"sound{ext}") for ext in (".m4a", ".flac")] + [gap]
    for path in files:
        whole, _ = media.decode_audio(path, max_seconds=4.0)
        blocks = list(media.decode_blocks(path, 4.0, size=3_000))
        assert {b.shape[1] for b in blocks[:-1]} == {3_000} and 0 < blocks[-1].shape[1] <= 3_000
        assert np.array_equal(np.concatenate(blocks, axis=1), whole)
        with pytest.raises(ValidationError, match="runs longer than the 1.0 s expected"):
            list(media.decode_blocks(path, 1.0, size=3_000))
    assert np.all(np.concatenate(list(media.decode_blocks(gap, 4.0)), axis=1)[:, 8_000:16_000] == 0)


def test_a_joined_sound_is_written_and_read_back_block_by_block(tmp_path):
    rng = np.random.default_rng(5)
    sound = rng.uniform(-1, 1, (3, 100_000)).astype(np.float32)
    kept = SoundFile.written((sound[:, i:i + 7_000] for i in range(0, 100_000, 7_000)), 100_000, 48000)
    assert kept.channels == 3 and kept.rate == 48000 and np.array_equal(kept.load(), sound)
    assert np.array_equal(np.concatenate(list(kept.blocks(4_096)), axis=1), sound)
    path = kept.path
    del kept
    gc.collect()
    assert not path.exists()  # removed once nothing refers to it
    with pytest.raises(ValueError, match="hold 7000 samples, not 8000"):
        SoundFile.written([sound[:, :7_000]], 8_000, 48000)


def test_a_take_is_joined_and_muxed_while_its_last_window_is_still_at_the_provider(emulator, wavespeed_env, long_clip,
                                                                                    tmp_path, monkeypatch):
    """The last window's job is held once its task has ended (its "final" event): meanwhile the sound of the windows
    before it is joined and muxed onto the picture (the untagged file grows). Then the take is delivered as ever:
    exact to the sample, its picture copied, its receipt naming every window's task."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the run's work folder: looked into below
    (tmp_path / "tmp").mkdir()
    submitted: list[str] = []
    grown: list[int] = []

    def observe(event: str, info) -> None:
        if event == "submitted":
            submitted.append(info.task_id)
        elif event == "final" and len(submitted) == 3 and info.task_id == submitted[-1]:
            deadline = time.monotonic() + 60
            while not grown and time.monotonic() < deadline:  # the windows before it joined and muxed, meanwhile
                grown.extend(p.stat().st_size for p in (tmp_path / "tmp").glob("sonify-*/joined-*.mp4")
                             if p.stat().st_size > 200_000)
                time.sleep(0.05)

    path, _, _, n = long_clip
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 6}, media.VideoSource(path=str(path)),
                          out_dir=tmp_path / "o", observe=observe)
    assert grown, "nothing was muxed while the last window's job was held"
    assert result.audio.shape[1] == round(Fraction(n) / NTSC * 44100)
    assert video_packets(result.video_path) == video_packets(path)
    receipt = pipeline.receipts.read(result.video_path)
    assert sorted(receipt["task_ids"]) == sorted(submitted) and receipt["model"] == MMAUDIO_V2.model_id
    assert not list((tmp_path / "tmp").glob("sonify-*"))  # the untagged file went with the run's work folder


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


def test_a_long_clips_sound_stays_in_its_file_until_it_is_asked_for(emulator, wavespeed_env, long_clip, tmp_path):
    path, _, _, n = long_clip
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 4}, media.VideoSource(path=str(path)),
                          out_dir=tmp_path / "o")
    assert isinstance(result.sound, SoundFile)  # the run never held the joined sound whole
    on_video, rate = media.decode_audio(result.video_path)
    assert result.audio.shape == (1, round(Fraction(n) / NTSC * 44100)) and rate == 44100
    assert not isinstance(result.sound, SoundFile)  # read once, then kept
    heard = np.sqrt(np.mean(result.audio ** 2)), np.sqrt(np.mean(on_video[:, :result.audio.shape[1]] ** 2))
    assert heard[1] == pytest.approx(heard[0], rel=0.05)  # the muxed sound is the joined one


def test_a_long_clips_jobs_in_progress_are_bounded_by_the_account_not_by_its_length(emulator, wavespeed_env,
                                                                                   tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_WAVESPEED_LIMITS", "1")  # one job at the provider at once: 1 + 2 in progress
    clip = write_clip(tmp_path / "seven-windows.mp4", 170, Fraction(1), 16, 16)
    threads: list[int] = []

    def is_cancelled() -> bool:  # asked often, from every job's thread
        threads.append(sum(t.name.startswith("sonify-take") for t in threading.enumerate()))
        return False

    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(clip)), out_dir=tmp_path / "o",
                          is_cancelled=is_cancelled)
    assert len(result.info["windows"]) == 7 and emulator.submits(MMAUDIO) == 7
    assert max(threads) == 3  # not one thread per window


def test_a_ten_hour_clip_is_refused_by_its_length_before_any_request(emulator, wavespeed_env, tmp_path):
    ten_hours = write_clip(tmp_path / "ten-hours.mp4", 36_000, Fraction(1), 16, 16)
    started = time.monotonic()
    with pytest.raises(ValidationError, match=r"^video: is 36000\.000 s long; a run takes at most 600 s "
                                              r"\(SONIFY_MAX_CLIP_SECONDS; MMAudio v2 · WaveSpeed can do up to 3600 s"):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(ten_hours)), out_dir=tmp_path / "o")
    assert emulator.requests == [] and time.monotonic() - started < 5


def test_the_clip_length_setting_is_lowered_raised_and_checked(emulator, wavespeed_env, tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "eleven-minutes.mp4", 660, Fraction(1), 16, 16)
    run = lambda spec: pipeline.run(spec, {}, media.VideoSource(path=str(clip)), out_dir=tmp_path / "o")
    monkeypatch.setenv("SONIFY_MAX_CLIP_SECONDS", "900")  # raised: ThinkSound's own longest still holds
    with pytest.raises(ValidationError, match="ThinkSound · WaveSpeed takes at most 600 s in one run"):
        run(THINKSOUND_WAVESPEED)
    for bad in ("ten", "0", "-5", "inf", "nan"):
        monkeypatch.setenv("SONIFY_MAX_CLIP_SECONDS", bad)
        with pytest.raises(ConfigurationError, match=f"SONIFY_MAX_CLIP_SECONDS must be a number of seconds above 0 "
                                                     f"\\(got '{bad}'\\)"):
            run(THINKSOUND_WAVESPEED)
    monkeypatch.setenv("SONIFY_MAX_CLIP_SECONDS", "30")  # lowered below a clip that one job takes
    with pytest.raises(ValidationError, match="is 31.000 s long; a run takes at most 30 s"):
        pipeline.run(KLING_V2A, {}, media.VideoSource(frames=np.zeros((31, 16, 16, 3), np.float32), fps=Fraction(1)),
                     out_dir=tmp_path / "o")
    assert emulator.requests == []


def test_a_run_dearer_than_the_default_limit_is_refused_saying_how_to_allow_it(emulator, wavespeed_env, tmp_path):
    clip = write_clip(tmp_path / "seven-minutes.mp4", 400, Fraction(1), 16, 16)  # Kling: 23 windows of ≤ 20 s
    with pytest.raises(ValidationError) as caught:  # 8 takes × 23 windows × $0.035 = $6.44, over the default $5
        pipeline.run(KLING_V2A, {}, media.VideoSource(path=str(clip)), out_dir=tmp_path / "o", variations=8)
    assert str(caught.value) == (
        "SONIFY_MAX_USD_PER_JOB: the limit applies to a node run's sum: its 184 jobs (8 takes × 23 windows) are "
        "together estimated at $6.440, above the limit of $5.000 (the default): nothing was sent; to allow it, set "
        "SONIFY_MAX_USD_PER_JOB to a higher number of dollars (e.g. SONIFY_MAX_USD_PER_JOB=7) and run again")
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
    """pipeline.prepare(..., one_job=True) (a Temporal batch's activity) makes one job: a long clip is refused before
    it is cut."""
    from sonify import providers, settings
    from sonify.pipeline.types import RunContext, StageTimer
    from sonify.waiter import Waiter

    path = write_shots(tmp_path / "kling.mp4", 21 * 24, Fraction(24), cuts=[])
    ctx = RunContext(Waiter(), lambda text, fraction: None, StageTimer(), tmp_path, settings.current())
    with pytest.raises(ValidationError, match=r"takes at most 20 s in one job, got 21\.000 s.*not yet by a Temporal"):
        pipeline.prepare(KLING_V2A, KLING_V2A.validate({}), media.VideoSource(path=str(path)), None, None,
                         providers.client("wavespeed", ctx.settings), ctx, one_job=True)
    assert emulator.requests == [] and not list(tmp_path.glob("window-*"))


def test_the_front_doors_prepare_is_the_runs_plan_made_before_any_request(emulator, wavespeed_env, clip, tmp_path):
    """sonify.prepare is the one the run uses: a Plan (here one take, one job: what it sends, priced), made without a
    request."""
    import sonify
    from sonify import providers, settings
    from sonify.pipeline.types import RunContext, StageTimer
    from sonify.waiter import Waiter

    ctx = RunContext(Waiter(), lambda text, fraction: None, StageTimer(), tmp_path, settings.current())
    plan = sonify.prepare(MMAUDIO_V2, MMAUDIO_V2.validate({"prompt": "rain", "seed": 3}), clip, None, None,
                          providers.client("wavespeed", ctx.settings), ctx, one_job=True)
    assert isinstance(plan, pipeline.Plan) and plan.source_path == str(Path(clip.path).resolve())
    part, info = plan.only_job()
    assert part.span is None and set(part.uploads) == {"video"} and part.hashes["video"] == jobs.hash_file(clip.path)
    assert info.params == MMAUDIO_V2.resolve(MMAUDIO_V2.validate({"prompt": "rain", "seed": 3}), 1.0)
    assert info.cost_usd_estimate == round(MMAUDIO_V2.price(info.params, 1.0), 6)
    assert emulator.requests == []


@pytest.mark.parametrize("seed", range(6))
def test_the_planner_decides_each_boundary_as_plan_does_from_the_cuts_known_by_then(seed):
    """Boundary by boundary, each from the cuts up to the frame it is due at, the windows are plan()'s from every
    cut: a clip's windows can be cut while it is read."""
    rng = np.random.default_rng(seed)
    frames, fps = int(rng.integers(1000, 6000)), Fraction(30)
    cuts = sorted(set(rng.integers(1, frames - 1, size=int(rng.integers(0, 40))).tolist()))
    planner = windows.Planner(frames, fps, MMAUDIO_V2.window)
    while planner.next < planner.count:
        due = planner.due
        planner.decide([c for c in cuts if c < due - windows.CUT_HOLD])  # what find_cuts can know by frame `due`
    assert [planner.span(k) for k in range(planner.count)] == windows.plan(frames, fps, MMAUDIO_V2.window, cuts)


def test_a_file_is_cut_into_its_windows_in_one_decoding_pass(long_clip, tmp_path, monkeypatch):
    """The source is opened once for its windows: each window's file holds its span's frames (at their shots'
    brightness), is handed on as soon as it is finished, in order, and the windows sit on the shot cuts."""
    from sonify.media.window_cutter import cut_in_one_pass

    path, cuts, _, n = long_clip
    plan = media.plan_upload(path, MMAUDIO_V2.proxy)  # the probe's look, before the pass
    opened: list[str] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    finished: list[tuple[int, windows.Span, bool]] = []
    fps, spans, files = cut_in_one_pass(plan, MMAUDIO_V2.window, tmp_path / "work",
                                        ready=lambda k, span, file: finished.append((k, span, file.is_file())))
    monkeypatch.undo()
    assert opened.count(str(path)) == 1 and fps == NTSC
    assert finished == [(k, span, True) for k, span in enumerate(spans)]
    assert spans[0].start == 0 and spans[-1].end == n
    at_cuts = [math.ceil((a.end + b.start) / 2) for a, b in itertools.pairwise(spans) if a.cut_after]
    assert at_cuts and set(at_cuts) <= set(cuts)
    source, _ = media.decode_frames(path)
    for span, file in zip(spans, files):
        picture, rate = media.decode_frames(file)
        assert rate == NTSC and picture.shape[0] == span.end - span.start
        for i in (0, picture.shape[0] // 2, picture.shape[0] - 1):  # the window's frames are the source's
            assert abs(float(picture[i].mean()) - float(source[span.start + i].mean())) < 0.03


def test_a_cut_stopped_mid_way_leaves_no_window_file(long_clip, tmp_path):
    from sonify.media.window_cutter import cut_in_one_pass

    path = long_clip[0]
    calls = itertools.count()

    def check() -> None:
        if next(calls) == 1500:  # past the first window's end: one file finished, another being written
            raise Cancelled("Cancelled")

    finished: list[int] = []
    with pytest.raises(Cancelled):
        cut_in_one_pass(media.plan_upload(path, MMAUDIO_V2.proxy), MMAUDIO_V2.window, tmp_path / "work",
                        ready=lambda k, span, file: finished.append(k), check=check)
    assert finished == [0] and list((tmp_path / "work").iterdir()) == []


class _GatedFeed:
    """WindowFeed whose cutting waits, once its first window is cut, until `opens()` says so (or `patience` has
    passed): whether anything happened while the rest of the clip was not cut yet."""

    def __new__(cls, opens, patience: float = 20.0):
        from sonify.pipeline.window_feed import WindowFeed

        class Gated(WindowFeed):
            opened_early = False

            def _check(self) -> None:
                super()._check()
                if self.cut[0] is not None and not Gated.opened_early:
                    deadline = time.monotonic() + patience
                    while not opens() and time.monotonic() < deadline:  # the emulator's count: looked at
                        time.sleep(0.02)
                    Gated.opened_early = opens()

        return Gated


def test_a_window_is_handed_on_while_the_rest_of_the_clip_is_cut(long_clip, tmp_path):
    from sonify.waiter import Waiter

    released = threading.Event()
    feed = _GatedFeed(released.is_set)(media.plan_upload(long_clip[0], MMAUDIO_V2.proxy), MMAUDIO_V2.window, tmp_path)
    feed.start()
    span, path = feed.take(0, Waiter())
    assert span.start == 0 and path.is_file() and feed.cut[-1] is None  # the last window is not cut yet
    released.set()
    last, _ = feed.take(feed.count - 1, Waiter())
    feed.stop()
    assert last.end == long_clip[3] and type(feed).opened_early
    assert all(s <= longest + 1e-9 for s, longest in zip(
        [float(Fraction(s.end - s.start) / feed.fps) for s, _ in feed.cut], feed.longest_seconds()))


def test_a_long_clips_first_window_is_submitted_while_the_clip_is_still_cut(emulator, wavespeed_env, long_clip,
                                                                           tmp_path, monkeypatch):
    """The cutting waits, after the first window, for a submit at the emulator: it comes (the first window's job
    did not wait for the others), and the run ends with every window, as a run does."""
    gated = _GatedFeed(lambda: emulator.submits(MMAUDIO) >= 1)
    monkeypatch.setattr(plan_module, "WindowFeed", gated)
    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain", "seed": 4}, media.VideoSource(path=str(long_clip[0])),
                          out_dir=tmp_path / "o")
    assert gated.opened_early and len(result.info["windows"]) == emulator.submits(MMAUDIO) == 3
    assert result.audio.shape[1] == round(media.probe(long_clip[0]).duration * result.sample_rate)
