"""Remote nodes as coroutines (ComfyUI since #8830): the job runs in a worker thread, so two nodes wait at
the provider at the same time; Cancel still stops a waiting node at once; an older host gets the
synchronous nodes; and the pack tells the two hosts apart by `comfy_execution.utils`."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from clips import click_audio
from pack import module, outputs

from sonify import journal as jobs
from sonify_devtools.emulator import Emulator

REMOTE = ("SonifyMMAudioV2", "SonifyThinkSoundWaveSpeed", "SonifyThinkSoundFal", "SonifyKlingVideoToAudio",
          "SonifySyncLipsync", "SonifyFetchResult", "SonifyThinkSound", "SonifySyncLipsync2", "SonifySyncLipsync2Pro",
          "SonifySync3", "SonifyKlingLipsync", "SonifyLatentSync", "SonifyHunyuanFoley")


def built(cls: type) -> tuple[type, Callable]:
    """A node class built by its factory, and its FUNCTION."""
    return cls, outputs(getattr(cls(), cls.FUNCTION))


def model_node(key: str, coroutine: bool = True) -> tuple[type, Callable]:
    spec = module("sonify.catalog").MODELS[key]
    if spec.output == "video":
        return built(module("nodes.lipsync").make_lipsync_node(spec, coroutine=coroutine))
    return built(module("nodes.video_to_audio").make_video_to_audio_node(spec, coroutine=coroutine))


def fetch_node(coroutine: bool) -> tuple[type, Callable]:
    return built(module("nodes.fetch_result").make_fetch_result_node(coroutine=coroutine))


def defaults(cls: type, **inputs) -> dict:
    """Every widget at its default, then `inputs`."""
    return {**{name: spec[1].get("default") for name, spec in cls.INPUT_TYPES()["required"].items()
               if len(spec) > 1}, **inputs}


def file_video(path: Path):
    return module("nodes.comfy").FileVideo(str(path))


def journal(env: dict[str, str]) -> jobs.Journal:
    state = Path(env["SONIFY_STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    return jobs.Journal(state / jobs.JOURNAL_FILE)


def waiting(emulator: Emulator, journal: jobs.Journal) -> list[str]:
    """Task ids the journal holds for jobs processing at the emulator."""
    return [row.task_id for row in journal.recent() if row.task_id
            and emulator.tasks.get(row.task_id).status == "processing"]


def span(emulator: Emulator, job: str) -> tuple[float, float]:
    """(submitted, final) of the job's task, in the emulator's own clock."""
    task = emulator.tasks.get(json.loads(job)["task_id"])
    assert task.status == "completed"
    return task.submitted, task.completed_at


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Bounded polling for a condition (not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def waiting_at_the_provider(key: str, emulator: Emulator, rows: jobs.Journal, clip_path: Path):
    """A coroutine node's run as a task, once its job is processing at the emulator; and the job's task id."""
    cls, run = model_node(key)
    task = asyncio.create_task(run(**defaults(cls, prompt="rain", video=file_video(clip_path))))
    await until(lambda: bool(waiting(emulator, rows)))
    (task_id,) = waiting(emulator, rows)
    return task, task_id


def test_three_coroutine_nodes_wait_at_the_providers_at_the_same_time(emulator, wavespeed_env, fal_env, clip_path):
    emulator.model_seconds = 1.5
    mmaudio, run_mmaudio = model_node("mmaudio-v2")
    thinksound, run_thinksound = model_node("thinksound-fal")
    lipsync, run_lipsync = model_node("sync-lipsync")
    voice = {"waveform": torch.from_numpy(click_audio(1.0, 48000, 1, 0.5))[None], "sample_rate": 48000}
    assert all(inspect.iscoroutinefunction(cls.run) for cls in (mmaudio, thinksound, lipsync))

    async def graph():
        return await asyncio.gather(
            run_mmaudio(**defaults(mmaudio, prompt="rain", video=file_video(clip_path))),
            run_thinksound(**defaults(thinksound, prompt="rain", video=file_video(clip_path))),
            run_lipsync(**defaults(lipsync, audio=voice, video=file_video(clip_path))),
        )

    (audio, _, job_a), (_, _, prompt, job_b), (_, images, _, fps, job_c) = asyncio.run(graph())
    assert audio["waveform"].shape[2] == 44100 and prompt and images.shape[1:] == (48, 64, 3) and fps == 24
    spans = [span(emulator, job) for job in (job_a, job_b, job_c)]
    assert all(end - start >= 1.5 for start, end in spans)
    # all three were at the providers at once: the last submit came before the first job ended
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans


def test_a_node_for_an_older_host_is_synchronous_and_works_as_before(emulator, wavespeed_env, clip_path):
    mmaudio, run_mmaudio = model_node("mmaudio-v2", coroutine=False)
    fetch, run_fetch = fetch_node(coroutine=False)
    assert not inspect.iscoroutinefunction(mmaudio.run) and not inspect.iscoroutinefunction(fetch.run)
    audio, video, job = run_mmaudio(**defaults(mmaudio, prompt="rain", seed=3, video=file_video(clip_path)))
    assert json.loads(job)["status"] == "completed" and Path(video.get_stream_source()).is_file()

    fetch_coroutine, run_fetch_coroutine = fetch_node(coroutine=True)
    assert inspect.iscoroutinefunction(fetch_coroutine.run)
    task_id = json.loads(job)["task_id"]
    fetched = [run_fetch(provider="wavespeed", model="mmaudio-v2", task_id=task_id),
               asyncio.run(run_fetch_coroutine(provider="wavespeed", model="mmaudio-v2", task_id=task_id))]
    for fetched_audio, _, info in fetched:
        assert torch.equal(fetched_audio["waveform"], audio["waveform"]) and json.loads(info)["task_id"] == task_id
    assert emulator.submits() == 1


@pytest.mark.parametrize(("key", "status", "cancels"),
                         [("mmaudio-v2", "cancelled", 1), ("thinksound-fal", "cancelled", 1)])
def test_cancelling_the_coroutine_stops_its_worker_within_a_second(emulator, wavespeed_env, fal_env, clip_path,
                                                                    key, status, cancels):
    """ComfyUI cancels the nodes still pending when a graph stops: the worker is told, and waited for."""
    emulator.model_seconds = 30
    rows = journal(wavespeed_env)

    async def cancel_while_waiting():
        task, task_id = await waiting_at_the_provider(key, emulator, rows, clip_path)
        pressed = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the worker's cleanup is done before the CancelledError goes on
        return time.monotonic() - pressed, rows.find_task(module("sonify.catalog").MODELS[key].provider, task_id)

    seconds, row = asyncio.run(cancel_while_waiting())
    assert seconds < 1.0
    assert row.status == status and row.owner is None
    assert emulator.cancels() == cancels


def host_interrupt(base: type[BaseException] = Exception) -> types.ModuleType:
    """ComfyUI's interrupt functions (comfy/model_management.py), as its Cancel button drives them. `base`: what
    its InterruptProcessingException derives from (0.8: Exception; 0.33: BaseException)."""
    mm = types.ModuleType("comfy.model_management")
    mm.lock, mm.flag = threading.RLock(), False

    class InterruptProcessingException(base):
        pass

    def interrupt_current_processing(value: bool = True) -> None:
        with mm.lock:
            mm.flag = value

    def processing_interrupted() -> bool:
        with mm.lock:
            return mm.flag

    def throw_exception_if_processing_interrupted() -> None:
        with mm.lock:
            if mm.flag:
                mm.flag = False
                raise InterruptProcessingException()

    mm.__dict__.update(InterruptProcessingException=InterruptProcessingException,
                       interrupt_current_processing=interrupt_current_processing,
                       processing_interrupted=processing_interrupted,
                       throw_exception_if_processing_interrupted=throw_exception_if_processing_interrupted)
    return mm


def test_comfyuis_cancel_stops_a_coroutine_node_as_its_own_interrupt(emulator, wavespeed_env, clip_path, monkeypatch):
    emulator.model_seconds = 30
    mm = host_interrupt()
    monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    rows = journal(wavespeed_env)

    async def press_cancel_while_waiting():
        task, task_id = await waiting_at_the_provider("mmaudio-v2", emulator, rows, clip_path)
        pressed = time.monotonic()
        mm.interrupt_current_processing()
        with pytest.raises(mm.InterruptProcessingException):
            await task
        return task_id, time.monotonic() - pressed

    task_id, seconds = asyncio.run(press_cancel_while_waiting())
    assert seconds < 1.0 and not mm.processing_interrupted()  # cleared, as ComfyUI's own check does
    row = rows.find_task("wavespeed", task_id)
    assert row.status == "cancelled" and "wavespeed accepted the cancel" in row.error
    assert emulator.cancels() == 1 and emulator.tasks.get(task_id).status == "deleted"  # before the job's end


def test_the_worker_runs_in_the_nodes_context():
    """ComfyUI 0.8 finds the executing node (for its progress bar) through a contextvar set around the
    coroutine: the worker thread must see it."""
    executing = contextvars.ContextVar("executing")

    def body(is_cancelled: Callable[[], bool], n: int) -> tuple:
        return executing.get(), threading.current_thread() is threading.main_thread(), n, is_cancelled()

    async def node_task():
        executing.set("node 7")
        return await module("nodes.run").in_worker(body, {"n": 1})

    assert asyncio.run(node_task()) == ("node 7", False, 1, False)


DETECT = """
import inspect, json, sys
from pack import load_pack

nodes = load_pack().NODE_CLASS_MAPPINGS
coroutines = sorted(n for n, c in nodes.items() if inspect.iscoroutinefunction(getattr(c, c.FUNCTION)))
print(json.dumps({"coroutines": coroutines, "imported": "comfy_execution.utils" in sys.modules}))
"""


@pytest.mark.parametrize("host", ["since July 2025", "older"])
def test_the_pack_runs_coroutines_where_the_host_has_comfy_execution_utils(tmp_path, host):
    paths = [str(Path(__file__).resolve().parent)]
    if host == "since July 2025":  # the module that came with ComfyUI#8830 (a namespace package there too)
        (tmp_path / "comfy_execution").mkdir()
        (tmp_path / "comfy_execution" / "utils.py").write_text("raise RuntimeError('only looked up')\n")
        paths.append(str(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run([sys.executable, "-c", DETECT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["coroutines"] == (sorted(REMOTE) if host == "since July 2025" else [])
    assert seen["imported"] is False
