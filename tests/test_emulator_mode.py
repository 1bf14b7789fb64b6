"""Emulator mode (ComfyUI's "try it without a key"), switched on through the pack's route as the Settings
dialog does: the bundled emulator starts on 127.0.0.1 as a child process, a node run goes to it with its own
key (the real one, set in the environment, is never used), and the result says it is the emulator's — in the
progress text, the job info and the file's metadata. Switched off, the pack points at the real providers."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import av
import pytest
from pack import ROOT, load_pack, module, outputs
from test_routes import answer, serve

REAL_KEY = "ws-real-SECRET-0123456789abcdef"
PARAMS = {"prompt": "rain on a tin roof", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
          "guidance_scale": 4.5, "mask_away_clip": False, "seed": -1}


def test_the_setting_starts_the_emulator_and_results_say_so(state, monkeypatch, clip_path, caplog):
    caplog.set_level(logging.DEBUG, logger="sonify")
    monkeypatch.setenv("WAVESPEED_API_KEY", REAL_KEY)
    monkeypatch.delenv("SONIFY_EMULATOR", raising=False)
    monkeypatch.delenv("FAL_KEY", raising=False)
    config, routes = module("sonify.settings"), module("nodes.routes")
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyMMAudioV2"]
    video = module("nodes.comfy").FileVideo(str(clip_path))
    results = {}

    async def test(client) -> None:
        assert await answer(await client.get("/sonify/emulator")) == {"on": False, "from_environment": False}
        try:
            assert await answer(await client.post("/sonify/emulator", json={"on": True})) == {
                "on": True, "from_environment": False}
            assert config.current().base_url("wavespeed").startswith("http://127.0.0.1:")
            assert config.client_settings("wavespeed", config.current()).key != REAL_KEY
            # Test in the dialog, with no fal key set: none is needed now
            assert await answer(await client.post("/sonify/keys/fal/test")) == {
                "ok": True, "balance_usd": None, "emulator": True, "message": routes.EMULATOR_NOTE}
            made = outputs(getattr(node_cls(), node_cls.FUNCTION))(video=video, **PARAMS)
            results["job"], results["file"] = json.loads(made[-1]), made[1].get_stream_source()
            keys = await answer(await client.get("/sonify/keys"))  # the dialog still shows the real key
            assert keys["wavespeed"] == {"set": True, "source": "environment", "hint": "…cdef"}
        finally:
            off = await answer(await client.post("/sonify/emulator", json={"on": False}))
        assert off == {"on": False, "from_environment": False}
        assert config.client_settings("wavespeed", config.current()) == config.ClientSettings(
            REAL_KEY, ("https://api.wavespeed.ai",))

    serve(test)
    job = results["job"]
    assert job["status"] == "completed" and job["emulator"] is True
    with av.open(results["file"]) as container:
        assert container.metadata.get("title") == config.EMULATOR_TITLE
    progress = [r.getMessage() for r in caplog.records if "done in" in r.getMessage()]
    assert progress and all(m.startswith("emulator (synthetic sound) · ") for m in progress)
    assert all(REAL_KEY not in r.getMessage() for r in caplog.records)


PARENT = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from pack import module
mode = module("nodes.emulator_mode")
mode.start()
print(module("sonify.settings").emulator.url, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # ComfyUI killed: no atexit, no cleanup
"""


def test_the_emulator_never_outlives_comfyui(tmp_path):
    """A parent killed outright closes the emulator's stdin, and the emulator ends: its port stops answering."""
    done = subprocess.run([sys.executable, "-c", PARENT, str(ROOT / "tests")], check=False, cwd=tmp_path, capture_output=True,
                          text=True, timeout=90)
    url = done.stdout.strip()
    assert done.returncode == -signal.SIGKILL and url.startswith("http://127.0.0.1:"), done.stderr
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.1)  # polling a port that must close: no event to wait on from here
    raise AssertionError(f"the emulator at {url} still answers 20 s after ComfyUI died")


FORKING_PARENT = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from pack import module
mode = module("nodes.emulator_mode")
mode.start()
holder = os.fork()  # a process ComfyUI forked (a custom node's helper): it holds every pipe ComfyUI held open
if holder == 0:
    os.read(0, 1)  # until the test closes this stdin
    os._exit(0)
print(mode._process.pid, holder, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # ComfyUI killed: no atexit, no cleanup, the emulator's stdin still open
"""


def wait_for_exit(pid: int, timeout: float) -> bool:
    """True once process `pid` (not a child of this one) has ended, within `timeout` seconds."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="waits on another process's end with a pidfd (Linux)")
def test_the_emulator_ends_with_comfyui_though_a_forked_process_holds_its_stdin(tmp_path):
    """The forked child keeps the emulator's stdin open after ComfyUI is SIGKILLed, so no end of input comes:
    the emulator ends all the same, because it watches its parent process."""
    parent = subprocess.Popen([sys.executable, "-c", FORKING_PARENT, str(ROOT / "tests")], cwd=tmp_path, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    holder = None
    try:
        line = parent.stdout.readline()
        assert parent.wait(90) == -signal.SIGKILL and line, parent.stderr.read()
        emulator, holder = (int(pid) for pid in line.split())
        assert wait_for_exit(emulator, 20), "the emulator still runs 20 s after ComfyUI died"
    finally:
        parent.stdin.close()  # the forked process ends at the end of its input
        if holder is not None:
            os.kill(holder, signal.SIGKILL)


def test_an_emulator_whose_parent_is_gone_before_it_watches_ends(tmp_path):
    """The portable watch (the parent pid polled): a parent that is already gone when the child starts to watch
    (here: a pid that is not its parent) ends it, its stdin still open."""
    child = subprocess.Popen([sys.executable, "-c", module("nodes.emulator_mode").CHILD, str(os.getppid()),
                              "ws-emulator-0123456789", "emulator-id:emulator-0123456789", "0.2"],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().startswith("API http://127.0.0.1:")
        assert child.wait(20) == 0
    finally:
        child.stdin.close()
        if child.poll() is None:
            child.kill()
            child.wait()


def test_emulator_mode_that_did_not_start_sends_nothing_to_a_real_provider(emulator, wavespeed_env, clip_path, tmp_path,
                                                                          monkeypatch):
    """The user asked for free, synthetic runs: with the emulator not started, a run fails before any request
    (here the `emulator` fixture stands in for the real provider the key belongs to)."""
    from sonify import media, pipeline
    from sonify import settings as config
    from sonify.catalog import MMAUDIO_V2
    from sonify.errors import ConfigurationError

    monkeypatch.setattr(config, "emulator_failure", "it did not say it listens within 60 s")
    with pytest.raises(ConfigurationError, match="emulator did not start.*nothing was sent"):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, media.VideoSource(path=str(clip_path)), out_dir=tmp_path)
    assert emulator.requests == []


def test_in_emulator_mode_every_url_is_the_emulators_own_path(monkeypatch):
    from sonify import settings as config

    monkeypatch.setattr(config, "emulator", config.LocalEmulator("http://127.0.0.1:9", {}))
    assert config.current().fal_jwks_urls() == ("http://127.0.0.1:9/.well-known/jwks.json",)  # its key set: a path
    assert config.current().base_url("wavespeed") == "http://127.0.0.1:9"


SWITCH_ROUNDS = 20_000  # clients built while the mode switches: about 300 were mixed before the snapshot


def test_a_switch_of_emulator_mode_never_pairs_one_modes_key_with_the_others_urls(state, monkeypatch):
    """The mode race: one thread switches emulator mode on and off as fast as it can while this one builds
    clients. Each client has the emulator's key and only the emulator's URLs, or the real key and only the real
    URLs. (Threads are made to change hands every microsecond, so the race shows within a fraction of a second.)"""
    from sonify import providers
    from sonify import settings as config

    real = {"wavespeed": REAL_KEY, "fal": "fal-real-SECRET-id:fal-real-SECRET-0123456789"}
    monkeypatch.setenv("WAVESPEED_API_KEY", real["wavespeed"])
    monkeypatch.setenv("FAL_KEY", real["fal"])
    local = config.LocalEmulator("http://127.0.0.1:9", {"wavespeed": "ws-emulator-0123456789",
                                                        "fal": "emulator-id:emulator-0123456789"})
    monkeypatch.setattr(config, "emulator", None)
    stop, switches = threading.Event(), [0]

    def switch() -> None:
        while not stop.is_set():
            config.emulator = local if config.emulator is None else None
            switches[0] += 1
            time.sleep(0)  # a builder gets its turn between two switches

    mixed = []
    interval = sys.getswitchinterval()
    switcher = threading.Thread(target=switch)
    sys.setswitchinterval(1e-6)
    switcher.start()
    try:
        for i in range(SWITCH_ROUNDS):
            provider = ("wavespeed", "fal")[i % 2]
            made = providers.client(provider, config.current())
            key = made.http._auth["Authorization"].split(" ", 1)[1]
            if (key == local.keys[provider]) != made.http.local or key not in (local.keys[provider], real[provider]):
                mixed.append((provider, key == real[provider], made.http.base_url))
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        switcher.join()
    assert switches[0] > 100  # the mode did switch, many times, while the clients were built
    assert mixed == []
