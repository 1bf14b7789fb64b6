"""Every SONIFY_* setting is read in sonify/settings.py, and a value that is not of its form is a ConfigurationError
naming the variable and the form, before anything is sent (it was a raw ValueError for some)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pack import ROOT

from sonify import pipeline, settings
from sonify.catalog import MMAUDIO_V2
from sonify.errors import ConfigurationError

NUMBERS = {
    "SONIFY_MAX_USD_PER_JOB": settings.max_usd_per_job,
    "SONIFY_MAX_DOWNLOAD_MB": settings.max_download_bytes,
    "SONIFY_MAX_DECODE_MB": settings.max_decode_bytes,
    "SONIFY_QUEUE_TIMEOUT": settings.queue_seconds,
    "SONIFY_RUN_TIMEOUT": settings.run_seconds,
    "SONIFY_TRANSFER_TIMEOUT": settings.transfer_seconds,
    "SONIFY_UPLOAD_TTL_HOURS": settings.upload_ttl_seconds,
    "SONIFY_WEBHOOK_SECONDS": settings.webhook_seconds,
    "SONIFY_WEBHOOK_THREADS": settings.webhook_threads,
    **{name: (lambda name=name: settings.spend_limit(name))
       for name in ("SONIFY_MAX_USD_PER_RUN", "SONIFY_MAX_USD_PER_DAY", "SONIFY_MAX_USD_PER_MONTH",
                    "SONIFY_MIN_BALANCE_USD")},
}


@pytest.mark.parametrize("variable", NUMBERS)
@pytest.mark.parametrize("value", ["five", "-1", "inf", "1e999", "nan"])
def test_a_setting_that_is_not_a_number_is_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        NUMBERS[variable]()


def test_the_limits_read_as_numbers(monkeypatch):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_JOB", "0.05")
    monkeypatch.setenv("SONIFY_MAX_DOWNLOAD_MB", "1.5")
    monkeypatch.setenv("SONIFY_QUEUE_TIMEOUT", "12")
    assert (settings.max_usd_per_job(), settings.max_download_bytes(), settings.queue_seconds()) == (
        0.05, int(1.5 * (1 << 20)), 12.0)
    monkeypatch.delenv("SONIFY_MAX_USD_PER_JOB")
    assert settings.max_usd_per_job() == settings.MAX_USD  # unset: the default confirmation limit


def test_a_bad_price_limit_stops_a_run_before_any_request(emulator, wavespeed_env, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("SONIFY_MAX_USD_PER_JOB", "five")
    with pytest.raises(ConfigurationError, match="SONIFY_MAX_USD_PER_JOB must be a number of US dollars"):
        pipeline.run(MMAUDIO_V2, {"prompt": "rain"}, clip, out_dir=tmp_path / "out")
    assert not emulator.requests


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
