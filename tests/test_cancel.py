"""Cancel at both providers: from the engine (as a node's Cancel reaches it) and from the command line
(Ctrl-C), while queued and while running, with fal's status stream delivering events, silent, or
unavailable (polling), and in the middle of a read. The wait stops within a second, the provider's
cancel is recorded by the emulator before the job could end, and the row and the message say so. A
cancel that comes after the job finished keeps its result; a timeout cancels nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pack import ROOT

from sonify import cli, media, pipeline
from sonify import journal as jobs
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL, ModelSpec
from sonify.errors import Cancelled, JobTimedOut
from sonify_devtools.emulator import Emulator, StreamShape

FAL_STREAM = r"/requests/[^/]+/status/stream$"
FAL_POLL = r"/requests/[^/]+/status$"
WAVESPEED_POLL = r"^/api/v3/predictions/[^/]+/result$"


def run(spec: ModelSpec, clip: media.VideoSource, tmp_path: Path, **kwargs) -> pipeline.Result:
    return pipeline.run(spec, {"prompt": "rain"}, clip, out_dir=tmp_path / "out", **kwargs)


def journal(env: dict[str, str]) -> jobs.Journal:
    Path(env["SONIFY_STATE_DIR"]).mkdir(parents=True, exist_ok=True)
    return jobs.Journal(Path(env["SONIFY_STATE_DIR"]) / jobs.JOURNAL_FILE)


class Press:
    """ComfyUI's Cancel as the engine sees it: `is_cancelled` turns true once `ready()` (checked as the job
    reports progress and as its waits look at the flag) has held; `at` is when."""

    def __init__(self, ready: Callable[[str], bool]) -> None:
        self.ready, self.at, self.text = ready, None, ""

    def on_progress(self, text: str, fraction: float | None) -> None:
        self.text = text
        self.is_cancelled()

    def is_cancelled(self) -> bool:
        if self.at is None and self.ready(self.text):
            self.at = time.monotonic()
        return self.at is not None


def showing(word: str, seconds: float = 0.0) -> Callable[[Emulator], Callable[[str], bool]]:
    """Pressed once the progress text starts with `word` and shows at least `seconds` of waiting."""
    def ready(emulator: Emulator) -> Callable[[str], bool]:
        return lambda text: text.startswith(word) and seconds_shown(text) >= seconds
    return ready


def reading(emulator: Emulator) -> Callable[[str], bool]:
    """Pressed 0.3 s after the submit was answered, while the client's first look at the task is held back."""
    since: list[float] = []

    def ready(text: str) -> bool:
        if not since and emulator.submits() == 1 and the_task(emulator).status != "created":
            since.append(time.monotonic())
        return bool(since) and time.monotonic() - since[0] >= 0.3

    return ready


def seconds_shown(text: str) -> float:
    found = re.search(r"(\d+) s", text)
    return float(found[1]) if found else 0.0


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def the_task(emulator: Emulator):
    (task,) = emulator.tasks.all()
    return task


def nothing(emulator: Emulator) -> None:
    pass


CASES = {
    # name: (spec, prepare the emulator, when Cancel is pressed)
    "wavespeed-queued": (MMAUDIO_V2, lambda em: em.stick_next(MMAUDIO_V2.model_id), showing("queued")),
    "wavespeed-running": (MMAUDIO_V2, nothing, showing("processing")),
    "wavespeed-mid-read": (MMAUDIO_V2, lambda em: em.delay("GET", WAVESPEED_POLL, 30.0), reading),
    "fal-queued-silent-stream": (THINKSOUND_FAL, lambda em: em.stick_next(THINKSOUND_FAL.model_id), showing("queued", 2)),
    "fal-running-stream-events": (THINKSOUND_FAL, nothing, showing("processing")),
    "fal-running-silent-stream": (THINKSOUND_FAL, nothing, showing("processing", 2)),
    "fal-queued-polling": (THINKSOUND_FAL, lambda em: (em.inject("GET", FAL_STREAM, 503),
                                                       em.stick_next(THINKSOUND_FAL.model_id)), showing("queued")),
    "fal-running-polling": (THINKSOUND_FAL, lambda em: em.inject("GET", FAL_STREAM, 503), showing("processing")),
    "fal-mid-read": (THINKSOUND_FAL, lambda em: em.delay("GET", FAL_STREAM, 30.0), reading),
    "fal-mid-poll": (THINKSOUND_FAL, lambda em: (em.inject("GET", FAL_STREAM, 503), em.delay("GET", FAL_POLL, 30.0)),
                     reading),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cancel_stops_the_wait_within_a_second_and_cancels_at_the_provider(emulator, wavespeed_env, fal_env, clip,
                                                                           tmp_path, case):
    spec, prepare, when = CASES[case]
    emulator.model_seconds, emulator.sse_keepalive = 30, 60  # a quiet stream stays quiet
    prepare(emulator)
    press = Press(when(emulator))
    with pytest.raises(Cancelled) as caught:
        run(spec, clip, tmp_path, on_progress=press.on_progress, is_cancelled=press.is_cancelled)
    assert time.monotonic() - press.at < 1.0
    task = the_task(emulator)
    assert emulator.cancels(spec.model_id) == 1
    assert task.status in ("cancelled", "deleted") and not task.outputs  # cancelled before the job's end
    row = journal(wavespeed_env).find_task(spec.provider, task.id)
    assert row.status == "cancelled" and row.owner is None
    assert f"{spec.provider} accepted the cancel of task {task.id}" in str(caught.value)
    assert f"{spec.provider} accepted the cancel" in row.error
    if when is reading:  # the held answer was never waited for
        assert not any(r.fault == "delay" for r in emulator.requests)


def cli_args(spec: ModelSpec, clip_path: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "sonify", "run", spec.key, "--video", str(clip_path), "--prompt", "rain", "-o", str(out)]


@pytest.mark.parametrize(("spec", "stream"), [(MMAUDIO_V2, None), (THINKSOUND_FAL, None),
                                              (THINKSOUND_FAL, StreamShape("chatty", "close"))],
                         ids=["wavespeed", "fal", "fal-chatty-stream-ending-with-the-connection"])
@pytest.mark.parametrize("phase", ["queued", "running"])
def test_ctrl_c_cancels_at_the_provider_within_a_second(emulator, wavespeed_env, fal_env, clip_path, tmp_path,
                                                        spec, stream, phase):
    emulator.model_seconds = 30
    emulator.fal_stream = stream or emulator.fal_stream
    if phase == "queued":
        emulator.stick_next(spec.model_id)
    rows = journal(wavespeed_env)
    process = subprocess.Popen(cli_args(spec, clip_path, tmp_path / "out"), cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: process.poll() is None and any(r.status == phase for r in rows.recent()))
        pressed = time.monotonic()
        os.kill(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        seconds = time.monotonic() - pressed
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    task = the_task(emulator)
    assert process.returncode == 130, stderr
    assert seconds < 1.0, stderr
    assert "cancelling…" in stderr and f"{spec.provider} accepted the cancel of task {task.id}" in stderr
    assert emulator.cancels(spec.model_id) == 1 and task.status in ("cancelled", "deleted")
    assert rows.find_task(spec.provider, task.id).status == "cancelled"


@pytest.mark.parametrize("spec", [MMAUDIO_V2, THINKSOUND_FAL], ids=lambda s: s.provider)
def test_a_cancel_after_the_job_finished_keeps_its_result(emulator, wavespeed_env, fal_env, clip, clip_path, tmp_path,
                                                          capsys, spec):
    """The job ends while the client's look at it is held back; Cancel comes after that: the provider is not
    asked to cancel (WaveSpeed's DELETE would delete the result) or says it finished, the result is fetched."""
    emulator.model_seconds = 0.3
    emulator.delay("GET", WAVESPEED_POLL if spec.provider == "wavespeed" else FAL_STREAM, 30.0)
    finished = Press(lambda text: any(t.status == "completed" for t in emulator.tasks.all()))
    with pytest.raises(Cancelled) as caught:
        run(spec, clip, tmp_path, on_progress=finished.on_progress, is_cancelled=finished.is_cancelled)
    assert time.monotonic() - finished.at < 1.0
    task = the_task(emulator)
    assert f"task {task.id} had already finished at {spec.provider}" in str(caught.value)
    assert "its result is kept" in str(caught.value) and f"python -m sonify fetch {spec.provider} {task.id}" in str(
        caught.value)
    assert emulator.cancels() == 0 and task.status == "completed" and task.outputs
    row = journal(wavespeed_env).find_task(spec.provider, task.id)
    assert row.status == "detached" and "already finished" in row.error

    out = tmp_path / "fetched"
    model = [] if spec.provider == "wavespeed" else ["--model", spec.key]
    assert cli.main(["fetch", spec.provider, task.id, *model, "-o", str(out)]) == 0
    wav, video, provider_file = (Path(p) for p in capsys.readouterr().out.split())
    assert media.decode_audio(wav)[0].shape[1] > 0 and video.is_file() and provider_file.is_file()
    assert emulator.submits() == 1
    row = journal(wavespeed_env).find_task(spec.provider, task.id)
    assert row.status == "completed" and row.delivered


@pytest.mark.parametrize("spec", [MMAUDIO_V2, THINKSOUND_FAL], ids=lambda s: s.provider)
def test_a_timeout_cancels_nothing(emulator, wavespeed_env, fal_env, clip, tmp_path, monkeypatch, spec):
    emulator.model_seconds = 30
    monkeypatch.setenv("SONIFY_RUN_TIMEOUT", "0.3")
    with pytest.raises(JobTimedOut) as caught:
        run(spec, clip, tmp_path)
    assert emulator.cancels() == 0 and the_task(emulator).status == "processing"
    assert journal(wavespeed_env).find_task(spec.provider, caught.value.task_id).status == "detached"
