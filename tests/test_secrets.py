"""Known fake keys for both providers go through every node and every CLI command, on good and bad
paths; then every log record, exception text, job info, journal row, file written (and its media
metadata), CLI output and example workflow is searched for them: zero hits. The emulator's request
log shows the key went only to the providers' API routes, never to the upload or files host."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sqlite3
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
from clips import write_clip
from pack import ROOT, load_pack, module, outputs

from sonify_devtools.emulator import Emulator

WAVESPEED_KEY = "sk-test-SECRET-1234567890abcdef"
FAL_ID, FAL_SECRET = "fal-id-SECRET-0a1b2c3d4e5f", "fal-secret-SECRET-9f8e7d6c5b4a"
FAL_KEY = f"{FAL_ID}:{FAL_SECRET}"
NEEDLES = (WAVESPEED_KEY, FAL_KEY, FAL_ID, FAL_SECRET)
API_PATHS = re.compile(r"^/(api/v3/|storage/(auth/token|upload/initiate)$|fal-ai/|v1/models/requests/)")


@pytest.fixture
def secret_emulator() -> Emulator:
    with Emulator(api_keys=(WAVESPEED_KEY,), fal_keys=(FAL_KEY,), model_seconds=0.2).start() as running:
        yield running


@pytest.fixture
def env(secret_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    values = {
        "WAVESPEED_API_KEY": WAVESPEED_KEY, "FAL_KEY": FAL_KEY,
        "SONIFY_WAVESPEED_URL": secret_emulator.url, "SONIFY_FAL_QUEUE_URL": secret_emulator.url,
        "SONIFY_FAL_REST_URL": secret_emulator.url, "SONIFY_FAL_API_URL": secret_emulator.url,
        "SONIFY_FAL_CDN_URL": secret_emulator.files_url, "SONIFY_STATE_DIR": str(tmp_path / "state"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


class Evidence:
    """Every text the run produced, by where it came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str | bytes) -> None:
        self.texts.append((where, text.decode("latin-1") if isinstance(text, bytes) else text))

    def hits(self) -> list[tuple[str, str]]:
        return [(where, needle) for where, text in self.texts for needle in NEEDLES if needle in text]


def node(node_id: str):
    cls = load_pack().NODE_CLASS_MAPPINGS[node_id]
    return outputs(getattr(cls(), cls.FUNCTION))


def run_every_node(em: Emulator, clip: Path, long_clip: Path, evidence: Evidence) -> dict[str, str]:
    """Each node once on its good path; returns the task id per provider for Fetch Result."""
    video = module("nodes.comfy").FileVideo
    voice = {"waveform": torch.from_numpy(np.full((1, 1, 24000), 0.1, np.float32)), "sample_rate": 48000}
    runs = {
        "SonifyMMAudioV2": {"video": video(str(clip)), "prompt": "rain", "negative_prompt": "", "duration": 0,
                                "num_inference_steps": 25, "guidance_scale": 4.5, "mask_away_clip": False, "seed": 3},
        "SonifyThinkSoundWaveSpeed": {"video": video(str(clip)), "prompt": "", "seed": -1},
        "SonifyThinkSoundFal": {"video": video(str(clip)), "prompt": "", "seed": -1, "num_inference_steps": 24, "cfg_scale": 5.0},
        "SonifyKlingVideoToAudio": {"video": video(str(long_clip)), "sound_effect_prompt": "steps", "bgm_prompt": "",
                                        "asmr_mode": False},
        "SonifySyncLipsync": {"video": video(str(clip)), "audio": voice, "sync_mode": "cut_off"},
    }
    tasks: dict[str, str] = {}
    for node_id, inputs in runs.items():
        outputs = node(node_id)(**inputs)
        info = json.loads(outputs[-1])
        evidence.add(f"{node_id} job", outputs[-1])
        evidence.add(f"{node_id} outputs", repr(outputs[:-1]))
        tasks[info["provider"]] = info["task_id"]
        if node_id == "SonifyThinkSoundFal":
            evidence.add("fal prompt", outputs[2])
    (muxed,) = node("SonifyMuxAudio")(video=video(str(clip)), audio=voice)
    evidence.add("mux", repr(muxed))
    for provider, task_id in tasks.items():
        model = "mmaudio-v2" if provider == "wavespeed" else "thinksound-fal"
        *_, job = node("SonifyFetchResult")(provider=provider, model=model, task_id=task_id)
        evidence.add(f"fetch {provider}", job)
    return tasks


def run_failures(em: Emulator, clip: Path, evidence: Evidence) -> None:
    """Error paths, including provider answers that echo the key back (redacted on the way out)."""
    video = module("nodes.comfy").FileVideo(str(clip))
    mmaudio = {"video": video, "prompt": "rain", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
                   "guidance_scale": 4.5, "mask_away_clip": False, "seed": -1}
    fal = {"video": video, "prompt": "rain", "seed": -1, "num_inference_steps": 24, "cfg_scale": 5.0}
    em.fail_next("wavespeed-ai/mmaudio-v2", error="the model failed")
    em.inject("POST", r"^/api/v3/wavespeed-ai/mmaudio-v2$", 403,
              body={"code": 403, "message": f"key {WAVESPEED_KEY} has no balance", "data": None})
    em.inject("POST", r"^/fal-ai/thinksound$", 500, body={"detail": f"bad key {FAL_KEY} (id {FAL_ID})"})
    em.inject("GET", r"^/outputs/", 200, body=f"not media {WAVESPEED_KEY}")
    errors = module("sonify.errors")
    for node_id, inputs in (("SonifyMMAudioV2", mmaudio), ("SonifyMMAudioV2", mmaudio),
                            ("SonifyThinkSoundFal", fal), ("SonifyMMAudioV2", mmaudio)):
        with pytest.raises(errors.SonifyError) as caught:
            node(node_id)(**inputs)
        evidence.add(f"{node_id} error", f"{caught.value}\n{caught.value!r}\n{caught.value.args}")
    assert any("***" in text for where, text in evidence.texts if "error" in where)  # echoed keys were masked


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonify", *args], env=env, cwd=ROOT, capture_output=True,
                          check=False, text=True, timeout=120)


def run_cli(env: dict[str, str], clip: Path, tasks: dict[str, str], out: Path, evidence: Evidence) -> None:
    """Every command's --help (the list is read from the top-level help, so new commands are covered),
    and the commands that talk to the providers, on good and bad paths."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    top = cli(["--help"], full_env)
    evidence.add("cli --help", top.stdout + top.stderr)
    listed = re.search(r"\{([a-z,-]+)\}", top.stdout)  # argparse's {a,b,c}, or one command a line
    names = listed[1].split(",") if listed else re.findall(r"^ {4}([a-z][a-z-]*) {2,}", top.stdout, re.MULTILINE)
    assert {"run", "fetch", "jobs"} <= set(names), top.stdout
    commands = [[name, "--help"] for name in names] + [["doctor"]] * ("doctor" in names) + [
        ["run", "mmaudio-v2", "--video", str(clip), "--param", "prompt=rain", "-o", str(out)],
        ["run", "thinksound-fal", "--video", str(clip), "-o", str(out)],
        ["run", "mmaudio-v2", "--video", str(clip), "--param", "prompt=x\x01", "-o", str(out)],
        ["fetch", "wavespeed", tasks["wavespeed"], "-o", str(out)],
        ["fetch", "fal", tasks["fal"], "--model", "thinksound-fal", "-o", str(out)],
        ["jobs"],
    ]
    for args in commands:
        done = cli(args, full_env)
        evidence.add(f"cli {args[:2]}", done.stdout + done.stderr)
        expected = {3} if "prompt=x\x01" in args else {0, 1} if args == ["doctor"] else {0}
        assert done.returncode in expected, done.stderr[-600:]


def collect_files(roots: list[Path], since: float, evidence: Evidence) -> None:
    """Raw bytes of every file written, and the container and stream metadata of every media file."""
    for root in roots:
        for path in (p for p in root.rglob("*") if p.is_file() and p.stat().st_mtime >= since):
            evidence.add(f"file {path}", path.read_bytes())
            try:
                with av.open(str(path)) as container:
                    tags = [container.metadata] + [s.metadata for s in container.streams]
            except av.FFmpegError:
                continue
            evidence.add(f"metadata {path}", json.dumps(tags))


def collect_journal(state: Path, evidence: Evidence) -> int:
    rows = 0
    with sqlite3.connect(state / "jobs.sqlite3") as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}"):
                evidence.add(f"journal {table}", repr(row))
                rows += 1
    return rows


def test_no_key_anywhere(secret_emulator, env, tmp_path, caplog, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    since = time.time() - 1
    clip = write_clip(tmp_path / "clip.mp4", 12, Fraction(24), 64, 48, flash_at=(5,))
    long_clip = write_clip(tmp_path / "long.mp4", 36, Fraction(12), 64, 48, flash_at=(20,))

    tasks = run_every_node(secret_emulator, clip, long_clip, evidence)
    with monkeypatch.context() as bounded:  # fal's 500 on submit: its request is looked for until a 2 s bound
        bounded.setenv("SONIFY_QUEUE_TIMEOUT", "1")
        bounded.setenv("SONIFY_RUN_TIMEOUT", "1")
        run_failures(secret_emulator, clip, evidence)
    run_cli(env, clip, tasks, tmp_path / "cli-out", evidence)

    for record in caplog.records:
        evidence.add(f"log {record.name}", f"{record.getMessage()} {record.exc_text or ''}")
    evidence.add("log text", caplog.text)
    assert collect_journal(tmp_path / "state", evidence) >= 8
    collect_files([tmp_path, module("nodes.comfy").temp_dir()], since, evidence)
    for workflow in (ROOT / "example_workflows").glob("*.json"):
        evidence.add(f"workflow {workflow.name}", workflow.read_text(encoding="utf-8"))
    assert len(evidence.texts) > 50

    assert evidence.hits() == []

    # The key went to the API routes only: never to uploads (PUT, CDN) or result files.
    records = secret_emulator.requests
    assert any(r.path.startswith("/outputs/") for r in records)
    for record in records:
        if record.path == "/files/upload":
            assert record.status == 200  # carried the CDN token; the emulator answers the fal key with 401
        else:
            assert record.authorized == bool(API_PATHS.search(record.path)), record.path


# ---------------------------------------------------------------- the key file: concurrent saves, refused keys

ROUNDS = 25
SAVER = """
import sys
from sonify import key_store
provider, key = sys.argv[1], sys.argv[2]
for line in sys.stdin:  # one line: save now (both savers are told at once)
    key_store.save(provider, key + line.strip())
    print("saved", flush=True)
"""


def test_two_threads_saving_two_providers_keys_at_once_both_land(state) -> None:
    from sonify import key_store

    lost = []
    for round_ in range(ROUNDS):
        (state / "keys.json").unlink(missing_ok=True)
        start = threading.Barrier(2, timeout=30)
        wanted = {"wavespeed": f"ws-thread-SECRET-{round_:04d}", "fal": f"fal-id:fal-thread-SECRET-{round_:04d}"}

        def save(provider: str, start: threading.Barrier = start, wanted: dict = wanted) -> None:
            start.wait()
            key_store.save(provider, wanted[provider])

        savers = [threading.Thread(target=save, args=(provider,)) for provider in wanted]
        for saver in savers:
            saver.start()
        for saver in savers:
            saver.join(30)
        if json.loads((state / "keys.json").read_text()) != wanted:
            lost.append(round_)
    assert lost == []


def test_two_processes_saving_two_providers_keys_at_once_both_land(state) -> None:
    """Two processes (two ComfyUI servers, or ComfyUI and a script on one state folder) each save their
    provider's key, told to at the same moment, ROUNDS times: both keys are there after every round."""
    keys = {"wavespeed": "ws-process-SECRET-", "fal": "fal-id:fal-process-SECRET-"}
    env = {**os.environ, "SONIFY_STATE_DIR": str(state)}
    savers = [subprocess.Popen([sys.executable, "-c", SAVER, provider, key], cwd=ROOT, env=env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE) for provider, key in keys.items()]
    lost = []
    try:
        for round_ in range(ROUNDS):
            (state / "keys.json").unlink(missing_ok=True)
            for saver in savers:
                saver.stdin.write(f"{round_:04d}\n")
            for saver in savers:
                saver.stdin.flush()
            assert [saver.stdout.readline() for saver in savers] == ["saved\n", "saved\n"]
            if json.loads((state / "keys.json").read_text()) != {p: k + f"{round_:04d}" for p, k in keys.items()}:
                lost.append(round_)
    finally:
        for saver in savers:
            saver.stdin.close()
            saver.wait(30)
    assert lost == []


def test_a_refused_key_is_never_masked(state) -> None:
    """A refused key is never used, so it is not registered for redaction: 4,000 characters add no piece to the
    mask set, and a sentence pasted as a key is not masked in later messages."""
    from sonify import key_store
    from sonify.errors import ValidationError
    from sonify.redact import redact

    huge = secrets.token_hex(2000)
    sentence = "please refuse this sentence pasted where the key goes"
    half = f"fal-{secrets.token_hex(12)}"  # no key_secret part
    for provider, key, reason in (("wavespeed", huge, "at most 512"), ("wavespeed", sentence, "one word"),
                                  ("fal", half, "key_id:key_secret")):
        with pytest.raises(ValidationError, match=reason):
            key_store.save(provider, key)
    assert not (state / "keys.json").exists()
    assert redact(huge) == huge and redact(huge[1000:1040]) == huge[1000:1040]
    assert redact(f"the job failed: {sentence}") == f"the job failed: {sentence}"
    assert redact(half) == half
    kept = "ws-kept-SECRET-" + secrets.token_hex(8)
    key_store.save("wavespeed", kept)  # a key that is kept is masked, as before
    assert kept not in redact(f"echo {kept}")
