"""Shared fixtures: a real emulator on 127.0.0.1 and an environment that points the engine at it."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from clips import write_clip

from sonify import media
from sonify_devtools.emulator import Emulator

EMULATOR_KEY = "ws-test-3f9a7c1e5b2d8046"  # random-looking, as keys are: redact() masks any 8 of its characters


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Processes started within start with SIGINT ignored (inherited through exec), as a shell script's
    `command &` starts them, and as a test run in the background starts its children."""
    ignoring = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, ignoring)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A started emulator (fast tasks: 0.2 s), stopped after the test."""
    with Emulator(api_keys=(EMULATOR_KEY,), model_seconds=0.2).start() as running:
        yield running


@pytest.fixture
def wavespeed_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    """WAVESPEED_API_KEY, SONIFY_WAVESPEED_URL and SONIFY_STATE_DIR set for the emulator; returns them."""
    env = {
        "WAVESPEED_API_KEY": EMULATOR_KEY,
        "SONIFY_WAVESPEED_URL": emulator.url,
        "SONIFY_STATE_DIR": str(tmp_path / "state"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


FAL_KEY = "test-fal-id:test-fal-secret"


@pytest.fixture
def fal_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    """FAL_KEY, SONIFY_FAL_QUEUE_URL, SONIFY_FAL_REST_URL, SONIFY_FAL_API_URL, SONIFY_FAL_CDN_URL and SONIFY_STATE_DIR
    set for the emulator (queue, rest and the platform API share its API origin; the CDN is its files origin, as
    fal's is a host of its own); returns them."""
    env = {
        "FAL_KEY": FAL_KEY,
        "SONIFY_FAL_QUEUE_URL": emulator.url,
        "SONIFY_FAL_REST_URL": emulator.url,
        "SONIFY_FAL_API_URL": emulator.url,
        "SONIFY_FAL_CDN_URL": emulator.files_url,
        "SONIFY_STATE_DIR": str(tmp_path / "state"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def clip_path(tmp_path: Path) -> Path:
    """A 1 s, 24 fps, 64×48 clip with a flash at frame 8."""
    return write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 48, flash_at=(8,))


@pytest.fixture
def clip(clip_path: Path) -> media.VideoSource:
    return media.VideoSource(path=str(clip_path))


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No provider key in the environment, and a fresh state folder (SONIFY_STATE_DIR); returns its path."""
    for name in ("WAVESPEED_API_KEY", "FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SONIFY_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture(autouse=True)
def _close_the_tests_clients() -> Iterator[None]:
    """The provider clients a test made (one HTTP session each, per emulator port) are closed after it: left open,
    their pooled connections pile up over the whole suite past the file descriptors select() can watch (1024)."""

    def registries() -> list:
        return [m for name, m in list(sys.modules.items())
                if name.endswith("sonify.providers") and hasattr(m, "_clients")]

    before = {id(m): set(m._clients) for m in registries()}
    yield
    for module in registries():
        with module._lock:
            made = [key for key in module._clients if key not in before.get(id(module), set())]
            clients = [module._clients.pop(key) for key in made]
        for client in clients:
            client.http.session.close()
