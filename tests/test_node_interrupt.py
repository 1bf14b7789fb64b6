"""ComfyUI's Cancel seen first by the node's progress bar, not by its waiter. ComfyUI's progress hook (main.py's
`hook`, behind comfy.utils.ProgressBar) checks the interrupt flag on every update and clears it as it raises
(throw_exception_if_processing_interrupted). The node must still stop within a second and cancel every remote
job it has: on ComfyUI 0.33, whose interrupt is a BaseException, and with takes, whose other threads no longer
see the cleared flag."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types

import pytest
from test_node_async import defaults, file_video, host_interrupt, journal, model_node, until, waiting

from sonify.catalog import THINKSOUND_FAL

BOUND = 1.0  # seconds from the hook's interrupt to the node's end, and to fal's cancel of every take
HOSTS = {"0.33": BaseException, "0.8": Exception}  # what each host's InterruptProcessingException derives from


def host_progress(mm: types.ModuleType) -> tuple[types.ModuleType, threading.Event, list[float]]:
    """comfy.utils with ComfyUI's ProgressBar and main.py's hook, unthrottled. Once `press` is set, Cancel is
    pressed just before the next update reaches the hook, so the hook is the first to see it; `pressed` gets
    that moment (time.monotonic())."""
    utils = types.ModuleType("comfy.utils")
    press, pressed, lock = threading.Event(), [], threading.Lock()

    def hook(value: int, total: int, preview: object, node_id: object = None) -> None:
        with lock:
            if press.is_set() and not pressed:
                mm.interrupt_current_processing()
                pressed.append(time.monotonic())
        mm.throw_exception_if_processing_interrupted()

    class ProgressBar:
        def __init__(self, total: int, node_id: object = None) -> None:
            self.total = total

        def update_absolute(self, value: int, total: int | None = None, preview: object = None) -> None:
            hook(value, total or self.total, preview)

    utils.ProgressBar = ProgressBar
    return utils, press, pressed


@pytest.mark.parametrize("variations", [1, 2])
@pytest.mark.parametrize("host", HOSTS)
def test_cancel_seen_by_the_progress_hook_stops_the_node_and_every_remote_job(emulator, fal_env, clip_path,
                                                                              monkeypatch, host, variations):
    emulator.model_seconds = 30
    mm = host_interrupt(HOSTS[host])
    utils, press, pressed = host_progress(mm)
    monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    monkeypatch.setitem(sys.modules, "comfy.utils", utils)
    rows = journal(fal_env)
    cls, run = model_node(THINKSOUND_FAL.key)

    async def press_cancel_while_waiting() -> float:
        node = asyncio.create_task(run(**defaults(cls, prompt="rain", video=file_video(clip_path),
                                                  variations=variations)))
        await until(lambda: len(waiting(emulator, rows)) == variations)
        press.set()
        with pytest.raises(mm.InterruptProcessingException):
            await node
        return time.monotonic()

    ended = asyncio.run(press_cancel_while_waiting())
    assert ended - pressed[0] < BOUND
    assert not mm.processing_interrupted()  # cleared at the end, as ComfyUI's own check does
    tasks = emulator.tasks.all()
    assert len(tasks) == variations and all(task.status == "cancelled" for task in tasks)
    cancels = [r for r in emulator.requests if r.method == "PUT" and r.path.endswith("/cancel")]
    assert len(cancels) == variations and all(r.at - pressed[0] < BOUND for r in cancels)
    assert [(row.status, row.owner) for row in rows.recent()] == [("cancelled", None)] * variations
