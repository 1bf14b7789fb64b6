"""ComfyUI's "try it without a key": the bundled emulator (sonify_devtools) on 127.0.0.1 in place of both
providers, switched on by the Settings dialog (POST /sonify/emulator) or SONIFY_EMULATOR=1 at start.

It runs as a child process of ComfyUI (started from the pack's folder): the dev tools
import the engine as the top-level `sonify`, which inside ComfyUI's process is not this pack's engine (the
pack is loaded under its folder's name and must never be put on sys.path). It gets fresh keys of its own
and an environment without the real ones; while it runs, settings.emulator points every job at it.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
from pathlib import Path

from ..sonify import settings
from ..sonify.errors import ConfigurationError

log = logging.getLogger("sonify")

ENV = settings.EMULATOR_ENV
PACK = Path(__file__).resolve().parents[1]
START_SECONDS = 60.0  # its first start imports PyAV and numpy in a new interpreter
MODEL_SECONDS = "1.5"  # each job's time at the emulator: long enough to see the progress text
_READY = re.compile(r"API (http://127\.0\.0\.1:\d+)")
# The child: the emulator until its stdin closes (ComfyUI stops it) or ComfyUI's process is gone, however it
# ended — killed too, with the pipe held open by a process it forked — so that it never outlives ComfyUI.
CHILD = """
import sys
from sonify_devtools.emulator.child import serve_for_parent
serve_for_parent(int(sys.argv[1]), api_keys=(sys.argv[2],), fal_keys=(sys.argv[3],), model_seconds=float(sys.argv[4]))
"""

_lock = threading.Lock()
_process: subprocess.Popen | None = None


def from_environment() -> bool:
    """SONIFY_EMULATOR=1; False while a setting is bad (ComfyUI still loads the pack, and each run says what is
    wrong before anything is sent)."""
    try:
        return settings.current().emulator_asked
    except ConfigurationError:
        return False


def is_on() -> bool:
    return settings.emulator is not None


def start() -> None:
    """Start the emulator (if it is not running) and point the pack at it. ConfigurationError if it does not
    say it listens within START_SECONDS."""
    global _process
    with _lock:
        if _process is not None and _process.poll() is None:
            return
        keys = {"wavespeed": f"ws-emulator-{secrets.token_hex(12)}",
                "fal": f"emulator-{secrets.token_hex(6)}:{secrets.token_hex(12)}"}
        env = {k: v for k, v in os.environ.items() if k not in (*settings.KEY_ENV.values(), "FAL_KEY_ID", "FAL_KEY_SECRET")}
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(os.getpid()), keys["wavespeed"], keys["fal"], MODEL_SECONDS],
            cwd=PACK, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            url = _wait_for_url(process)
        except ConfigurationError as exc:
            settings.emulator_failure = str(exc)
            raise
        _process = process
        settings.emulator, settings.emulator_failure = settings.LocalEmulator(url, keys), None
    log.info("emulator mode: Sonify's local emulator at %s (synthetic sound, free) stands in for both providers", url)


def stop() -> None:
    """Point the pack back at the real providers and end the emulator."""
    global _process
    with _lock:
        settings.emulator, settings.emulator_failure = None, None
        process, _process = _process, None
    if process is not None and process.poll() is None:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait()
        log.info("emulator mode off: the real providers again")


atexit.register(stop)


def _wait_for_url(process: subprocess.Popen) -> str:
    found: list[str] = []

    def read() -> None:
        for line in process.stdout:
            match = _READY.search(line)
            if match:
                found.append(match.group(1))
                break
        # the rest of its output is not needed, but must not fill the pipe
        threading.Thread(target=process.stdout.read, daemon=True).start()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(START_SECONDS)
    if not found:
        process.kill()
        process.wait()
        raise ConfigurationError("Sonify's emulator did not start (it needs the pack's sonify_devtools folder, and "
                                 f"PyAV and numpy in ComfyUI's Python); exit status {process.returncode}")
    return found[0]
