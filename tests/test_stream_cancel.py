"""Cancel never waits on a read. fal's status stream in every shape the emulator can send it in (chatty, quiet,
close-delimited or chunked, cut mid-event) and from a peer that never answers its headers, each cancelled by
Ctrl-C (the command line, a real SIGINT), as a coroutine (a ComfyUI node's task cancelled) and by ComfyUI's own
Cancel: the run stops within a second, and fal's cancel reaches the emulator within a second. Every other
blocking read (uploads, downloads, listings, key sets) from a stalled peer or an endless close-delimited body:
Cancel ends it within a second.

The case users hit: IN_PROGRESS every 20 ms on a body that ends with the connection (`chatty-close`). The reader
thread sat in a read while closing the stream waited for it, so Ctrl-C hung until the job ended."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EMULATOR_KEY, FAL_KEY
from pack import module
from test_node_async import defaults, file_video, host_interrupt, model_node

from sonify import cli
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL
from sonify.errors import Cancelled
from sonify.providers import webhooks
from sonify.providers.fal import Fal
from sonify.providers.wavespeed import WaveSpeed
from sonify.waiter import Waiter
from sonify_devtools.emulator import Emulator, StreamShape
from sonify_devtools.emulator.faults import Fault

STREAM = r"/requests/[^/]+/status/stream$"
CANCEL = r"/requests/[^/]+/cancel$"
BOUND = 1.0  # seconds from Cancel to the run's end, and to fal's cancel at the emulator
SHAPES = [f"{events}-{framing}" for events in ("changes", "chatty", "comments", "silent", "half")
          for framing in ("chunked", "close")] + ["stalled-peer"]


def shape_stream(emulator: Emulator, shape: str) -> Callable[[], bool]:
    """Send fal's stream in `shape`; returns what says the client is waiting on it (the emulator answered its
    headers; for a stalled peer: the emulator holds the request, never answering)."""
    emulator.model_seconds, emulator.sse_keepalive = 30, 0.05  # a quiet stream still sends its comments often
    if shape == "stalled-peer":
        held: Fault = emulator.delay("GET", STREAM, 3600)
        return held.taken.is_set
    events, framing = shape.split("-")
    emulator.fal_stream = StreamShape(events, framing)
    return lambda: any(r.status == 200 and re.search(STREAM, r.path) for r in emulator.requests)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Bounded polling for something the emulator records (not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def assert_cancelled_at_fal_in_time(emulator: Emulator, pressed: float) -> None:
    (answered,) = [r for r in emulator.requests if r.method == "PUT" and re.search(CANCEL, r.path)]
    assert answered.status in (200, 202) and answered.at - pressed < BOUND
    (task,) = emulator.tasks.all()
    assert emulator.cancels(THINKSOUND_FAL.model_id) == 1 and task.status == "cancelled"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("receiver", ["the process", "another thread"])
def test_ctrl_c_stops_a_fal_wait_within_a_second(emulator, fal_env, clip_path, tmp_path, capsys, shape, receiver):
    """`sonify run` on this (the main) thread; a real SIGINT once the client waits on the stream, sent to the process
    or to another of its threads. The kernel may hand a Ctrl-C to any thread; Python runs its handler only when the
    main thread next runs Python, which a read blocked on a silent peer holds off (up to the 60 s read timeout), so
    the press must be counted where it arrives."""
    waiting = shape_stream(emulator, shape)
    pressed: list[float] = []

    def press_ctrl_c() -> None:
        wait_until(waiting)
        pressed.append(time.monotonic())
        if receiver == "the process":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread, not the main one

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    code = cli.main(["run", THINKSOUND_FAL.key, "--video", str(clip_path), "--prompt", "rain", "-o",
                     str(tmp_path / "out")])
    stopped = time.monotonic()
    presser.join()
    stderr = capsys.readouterr().err
    assert code == 130 and stopped - pressed[0] < BOUND, stderr
    assert "cancelling…" in stderr and "fal accepted the cancel of task" in stderr
    assert_cancelled_at_fal_in_time(emulator, pressed[0])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("how", ["coroutine", "comfyui"])
def test_a_cancelled_node_stops_a_fal_wait_within_a_second(emulator, fal_env, clip_path, monkeypatch, shape, how):
    """A ComfyUI node's coroutine, cancelled as ComfyUI cancels a pending node (`coroutine`), or stopped by the
    Cancel button, which the node's waiter sees through ComfyUI's interrupt flag (`comfyui`)."""
    waiting = shape_stream(emulator, shape)
    mm = host_interrupt()
    monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    cls, run = model_node(THINKSOUND_FAL.key)
    stops = (asyncio.CancelledError, mm.InterruptProcessingException)

    async def cancel_while_waiting() -> float:
        node = asyncio.create_task(run(**defaults(cls, prompt="rain", video=file_video(clip_path))))
        while not waiting():
            assert not node.done(), node.exception()
            await asyncio.sleep(0.01)
        pressed = time.monotonic()
        if how == "coroutine":
            node.cancel()
        else:
            mm.interrupt_current_processing()
        with pytest.raises(stops):
            await node
        assert time.monotonic() - pressed < BOUND
        return pressed

    pressed = asyncio.run(cancel_while_waiting())
    assert_cancelled_at_fal_in_time(emulator, pressed)
    jobs = module("sonify.journal")
    rows = jobs.Journal(Path(fal_env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE).recent()
    assert [(r.status, r.owner) for r in rows] == [("cancelled", None)]


# ---------------------------------------------------------------- every other blocking read


def fal(emulator: Emulator) -> Fal:
    return Fal(FAL_KEY, emulator.url, emulator.url, emulator.url, emulator.files_url)


def wavespeed(emulator: Emulator) -> WaveSpeed:
    return WaveSpeed(EMULATOR_KEY, emulator.url)


def downloaded(emulator: Emulator, clip_path: Path, tmp_path: Path) -> Callable[[Waiter], object]:
    client = fal(emulator)
    url = client.upload(clip_path, Waiter())  # a file the emulator serves, like a result
    return lambda waiter: client.http.download(url, tmp_path / "got.mp4", max_bytes=1 << 30, waiter=waiter)


READS = {
    # name: (method, path of the request that misbehaves, the read given a Waiter)
    "fal-upload": ("POST", r"^/files/upload$", lambda em, clip, tmp: lambda w: fal(em).upload(clip, w)),
    "wavespeed-upload": ("PUT", r"^/storage/put/", lambda em, clip, tmp: lambda w: wavespeed(em).upload(clip, w)),
    "download": ("GET", r"^/files/", downloaded),
    "fal-listing": ("GET", r"/v1/models/requests/by-endpoint$", lambda em, clip, tmp: lambda w: fal(em).find_tasks(
        THINKSOUND_FAL.model_id, {}, time.time() - 60, time.time(), w)),
    "wavespeed-listing": ("POST", r"^/api/v3/predictions$", lambda em, clip, tmp: lambda w: wavespeed(em).find_tasks(
        MMAUDIO_V2.model_id, {}, time.time() - 60, time.time(), w)),
    "fal-key-set": ("GET", r"^/\.well-known/jwks\.json$", lambda em, clip, tmp: lambda w: fal(em).submit(
        THINKSOUND_FAL.model_id, {"video_url": f"{em.files_url}/files/x/clip.mp4"}, w)),
    "wavespeed-secret": ("GET", r"^/api/v3/webhook/secret$", lambda em, clip, tmp: lambda w: wavespeed(em).submit(
        MMAUDIO_V2.model_id, {"video": f"{em.files_url}/files/x/clip.mp4", "prompt": "rain"}, w)),
}


@pytest.mark.parametrize("peer", ["stalled-peer", "endless-close"])
@pytest.mark.parametrize("read", list(READS))
def test_cancel_ends_any_read_within_a_second(emulator, clip_path, tmp_path, monkeypatch, read, peer):
    """A stalled peer takes the request and never answers; an endless one answers its headers, then trickles a
    body without a length that never ends (the connection would end it)."""
    monkeypatch.setenv("SONIFY_TRANSFER_TIMEOUT", "600")  # only Cancel can end it
    monkeypatch.setenv("SONIFY_PUBLIC_URL", "http://127.0.0.1:9")  # submits fetch their key material first
    monkeypatch.setenv("SONIFY_FAL_JWKS_URL", emulator.url + "/.well-known/jwks.json")
    monkeypatch.setattr(webhooks, "_fetch_paused_until", {})
    method, path, make = READS[read]
    call = make(emulator, clip_path, tmp_path)
    if peer == "stalled-peer":
        waiting = emulator.delay(method, path, 3600).taken.is_set
    else:
        emulator.endless(method, path, rate=64)
        waiting = lambda: any(r.fault == "endless" for r in emulator.requests)  # its headers are on their way
    cancel, outcome = threading.Event(), {}

    def target() -> None:
        try:
            call(Waiter(cancel.is_set))
        except BaseException as exc:  # noqa: BLE001 - the test looks at what ended the read
            outcome["error"] = exc
        outcome["at"] = time.monotonic()

    reader = threading.Thread(target=target, daemon=True)
    reader.start()
    wait_until(waiting)
    pressed = time.monotonic()
    cancel.set()
    reader.join(5)
    assert isinstance(outcome.get("error"), Cancelled), outcome
    assert outcome["at"] - pressed < BOUND
