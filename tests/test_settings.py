"""Every SONIFY_* setting is read in sonify/settings.py, all at once, and a value that is not of its form is a
ConfigurationError naming the variable and the form, before anything is sent (it was a raw ValueError for some). The
snapshot is made once and reused while its variables stay as they are; a run reads only the one it started with."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pack import ROOT

from sonify import pipeline, settings
from sonify.catalog import MMAUDIO_V2
from sonify.errors import ConfigurationError, JobTimedOut
from sonify.settings import Settings

NUMBERS = ("SONIFY_MAX_USD_PER_JOB", "SONIFY_MAX_DOWNLOAD_MB", "SONIFY_MAX_DECODE_MB", "SONIFY_QUEUE_TIMEOUT",
           "SONIFY_RUN_TIMEOUT", "SONIFY_TRANSFER_TIMEOUT", "SONIFY_UPLOAD_TTL_HOURS", "SONIFY_WEBHOOK_SECONDS",
           "SONIFY_WEBHOOK_THREADS", "SONIFY_MAX_USD_PER_RUN", "SONIFY_MAX_USD_PER_DAY", "SONIFY_MAX_USD_PER_MONTH",
           "SONIFY_MIN_BALANCE_USD")


@pytest.mark.parametrize("variable", NUMBERS)
@pytest.mark.parametrize("value", ["five", "-1", "inf", "1e999", "nan"])
def test_a_setting_that_is_not_a_number_is_named(variable, value):
    with pytest.raises(ConfigurationError, match=variable):
        Settings.from_environ({variable: value})


@pytest.mark.parametrize("value", ["five", "64.5", "0", "-64", "31", "257", "１２８"])
def test_an_aac_rate_outside_the_encoders_range_is_named_with_that_range(value):
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_environ({"SONIFY_AAC_KBPS": value})
    assert str(refused.value) == (f"SONIFY_AAC_KBPS must be a whole number from 32 to 256 kbit/s a channel "
                                  f"(got {value!r})")


def test_the_limits_read_as_numbers():
    read = Settings.from_environ({"SONIFY_MAX_USD_PER_JOB": "0.05", "SONIFY_MAX_DOWNLOAD_MB": "1.5",
                                  "SONIFY_QUEUE_TIMEOUT": "12"})
    assert (read.max_usd_per_job, read.max_download_bytes, read.queue_seconds) == (0.05, int(1.5 * (1 << 20)), 12.0)
    assert Settings.from_environ({}).max_usd_per_job is None  # unset: the saved limit, else the default (budget.read)


def test_a_bad_price_limit_stops_a_run_before_any_request(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_JOB", "five")
    with pytest.raises(ConfigurationError, match="SONIFY_MAX_USD_PER_JOB must be a number of US dollars"):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert not emulator.requests


GOOD = {"SONIFY_QUEUE_TIMEOUT": "12", "SONIFY_RUN_TIMEOUT": "30", "SONIFY_MAX_DOWNLOAD_MB": "100",
        "SONIFY_SILENCE_DBFS": "-50", "SONIFY_PROVIDER_ORDER": "fal,wavespeed", "SONIFY_WAVESPEED_TIER": "gold"}


def test_one_bad_variable_among_several_is_named_before_any_request(emulator, wavespeed_env, clip, tmp_path,
                                                                    monkeypatch):
    """Every variable is read and checked at once, the sound's too (used only once a result is in): a bad one among
    good ones is named with its form, before the run sends anything."""
    bad = {**GOOD, "SONIFY_AAC_KBPS": "1000"}
    with pytest.raises(ConfigurationError, match=r"^SONIFY_AAC_KBPS must be a whole number from 32 to 256 kbit/s a channel"):
        Settings.from_environ(bad)
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=r"^SONIFY_AAC_KBPS must be a whole number from 32 to 256 kbit/s a channel"):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert not emulator.requests
    read = Settings.from_environ({**bad, "SONIFY_AAC_KBPS": "64"})  # mended: every one as given
    assert (read.queue_seconds, read.run_seconds, read.max_download_bytes, read.silence_dbfs, read.provider_order,
            read.wavespeed_limits, read.aac_kbps) == (12.0, 30.0, 100 << 20, -50.0, ("fal", "wavespeed"),
                                                      settings.WAVESPEED_TIERS["gold"], 64)


def test_a_snapshot_is_reused_until_its_variables_change(monkeypatch):
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "12")
    first = settings.current()
    assert first.queue_seconds == 12 and settings.current() is first
    monkeypatch.setenv("NOT_A_SONIFY_SETTING", "1")  # another variable: the same snapshot
    assert settings.current() is first
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "13")
    second = settings.current()
    assert second is not first and second.queue_seconds == 13 and settings.current() is second
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "soon")  # refused at every call until it is mended
    for _ in range(2):
        with pytest.raises(ConfigurationError, match="SONIFY_QUEUE_TIMEOUT must be a number of seconds"):
            settings.current()
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "13")
    assert settings.current() == second
    # What ComfyUI's adapter sets is part of the snapshot too: emulator mode, whose keys are never shown
    local = settings.LocalEmulator("http://127.0.0.1:9", {"wavespeed": "ws-emulator-0123456789"})
    monkeypatch.setattr(settings, "emulator", local)
    third = settings.current()
    assert third.emulator is local and third.base_url("wavespeed") == "http://127.0.0.1:9"
    assert "ws-emulator-0123456789" not in repr(third)


def test_a_run_keeps_the_settings_it_started_with(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    """A variable changed while a job waits at the provider changes the next run, not this one. The processing
    bound is cut to 0.3 s just as the job's wait begins (its "waiting" event, on the job's own thread), while the
    emulator takes 1.5 s: the run still completes under the bound it started with; a run started afterwards keeps to
    the new one."""
    emulator.model_seconds = 1.5
    monkeypatch.setenv("SONIFY_RUN_TIMEOUT", "60")
    waits = []

    def observe(event: str, info: object) -> None:
        if event == "waiting":
            monkeypatch.setenv("SONIFY_RUN_TIMEOUT", "0.3")
            waits.append(settings.current().run_seconds)

    result = pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out", observe=observe)
    assert result.info["status"] == "completed" and waits == [0.3]
    with pytest.raises(JobTimedOut):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain on a roof"}, clip, out_dir=tmp_path / "out")


def test_only_the_settings_module_reads_sonify_variables():
    readers = []
    for path in sorted((ROOT / "sonify").rglob("*.py")) + sorted((ROOT / "nodes").rglob("*.py")):
        if path == ROOT / "sonify" / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("SONIFY_") \
                    and _read_from_environment(path, node):
                readers.append(f"{Path(path).relative_to(ROOT)}:{node.lineno}")
    assert not readers


def _read_from_environment(path: Path, constant: ast.Constant) -> bool:
    line = path.read_text().splitlines()[constant.lineno - 1]
    return "environ" in line or "getenv" in line
