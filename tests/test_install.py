"""`pip install .` from a clone, then the installed `sonify` command run as a user runs it: from another folder,
with relative clip paths, against the emulator. Nothing is downloaded: the venvs are made without pip, the
wheel is built without isolation from this environment's setuptools, and the venv with the CLI extra sees this
environment's packages (numpy, PyAV, requests) through a .pth file, so the whole module takes seconds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from fractions import Fraction
from pathlib import Path

import pytest
from clips import write_clip
from pack import ROOT

NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", ".pytest_cache",
                                    ".ruff_cache", ".hypothesis", "out", ".state")


def venv(folder: Path, *, sees_this_environment: bool) -> Path:
    """A new venv without pip; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=60)
    python = folder / "bin" / "python"
    if sees_this_environment:
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        Path(site, "this-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def pip(*args: str | Path, python: str | Path = sys.executable) -> None:
    subprocess.run([str(python), "-m", "pip", *map(str, args), "--no-index", "--disable-pip-version-check", "-q"],
                   check=True, timeout=120, capture_output=True, env=clean_env())


def clean_env(**extra: str) -> dict[str, str]:
    """This environment less PYTHONPATH (which would point at the clone), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` builds from a copy of the clone."""
    folder = tmp_path_factory.mktemp("build")
    clone = folder / "clone"
    shutil.copytree(ROOT, clone, ignore=NOT_COPIED)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", folder / "wheels", clone)
    (built,) = (folder / "wheels").glob("sonify-*.whl")
    return built


def built_version(wheel: Path) -> str:
    """The version setuptools read from pyproject.toml (the wheel's name says it)."""
    return wheel.name.split("-")[1]


@pytest.fixture(scope="module")
def with_cli(wheel, tmp_path_factory) -> Path:
    """The bin folder of a venv with Sonify and its CLI extra (numpy, PyAV)."""
    python = venv(tmp_path_factory.mktemp("venv") / "cli", sees_this_environment=True)
    pip("install", "--no-deps", wheel, python=python)
    return python.parent


@pytest.fixture(scope="module")
def plain(wheel, tmp_path_factory) -> Path:
    """The bin folder of a venv with Sonify alone: no numpy, no PyAV (nor requests: nothing but the wheel)."""
    python = venv(tmp_path_factory.mktemp("venv") / "plain", sees_this_environment=False)
    pip("--python", python, "install", "--no-deps", wheel)
    return python.parent


def run(bin_folder: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_folder / "sonify"), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False, env=clean_env(**(env or {})))


def test_the_wheel_holds_the_engine_and_the_dev_tools_not_the_comfyui_side(wheel, with_cli, tmp_path):
    code = "import sonify, sonify_devtools.emulator; print(sonify.__file__); print(sonify.__version__)"
    where = subprocess.run([str(with_cli / "python"), "-c", code],
                           cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60, env=clean_env())
    path, version = where.stdout.split()
    site = Path(path).parents[1]
    assert site.is_relative_to(with_cli.parent) and version == built_version(wheel)
    assert not (site / "nodes").exists() and not (site / "__init__.py").exists()
    clone = subprocess.run([sys.executable, "-m", "sonify", "--version"], cwd=ROOT, capture_output=True, text=True,
                           check=True, timeout=60, env=clean_env(PYTHONPATH=str(ROOT)))  # as in ComfyUI's custom_nodes
    assert clone.stdout.strip() == f"sonify {built_version(wheel)}"


def test_the_installed_command_works_from_another_folder_with_relative_paths(wheel, with_cli, emulator,
                                                                             wavespeed_env, tmp_path):
    work = tmp_path / "work"
    (work / "clips").mkdir(parents=True)
    for name in ("a.mp4", "b.mp4"):
        write_clip(work / "clips" / name, 24, Fraction(24), 64, 48, flash_at=(8,))
    version = run(with_cli, "--version", cwd=work)
    assert version.returncode == 0 and version.stdout.strip() == f"sonify {built_version(wheel)}"

    done = run(with_cli, "run", "mmaudio-v2", "--video", "clips/a.mp4", "--prompt", "rain", "-o", "out/a.mov",
               "--json", cwd=work)
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert record["path"] == str(work / "out" / "a.mov") and (work / "out" / "a.mov").is_file()
    assert record["emulator"] is True and record["task_id"] and record["cost_usd_estimate"] == 0.001

    batch = run(with_cli, "batch", "mmaudio-v2", "clips", "-o", "batch", "--prompt", "rain", "--json", cwd=work)
    assert batch.returncode == 0, batch.stderr
    records = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [(r["source"], r["outcome"], r["path"]) for r in records] == [
        (f"clips/{name}.mp4", "done", str(work / "batch" / f"{name}.mp4")) for name in "ab"]
    assert "2 done, 0 resumed, 0 reused (free), 0 failed of 2" in batch.stderr

    listed = run(with_cli, "jobs", "--json", cwd=work)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {row["task_id"] for row in rows} == {record["task_id"], *(r["task_id"] for r in records)}
    assert all(row["status"] == "completed" and row["delivered"] for row in rows)
    assert {row["source_path"] for row in rows} == {str(work / "clips" / f"{name}.mp4") for name in "ab"}

    missing = run(with_cli, "run", "mmaudio-v2", "--video", "clips/nope.mp4", "--prompt", "rain", cwd=work)
    assert missing.returncode == 3 and "--video: no such file: clips/nope.mp4" in missing.stderr
    usage = run(with_cli, "run", "mmaudio", "--video", "clips/a.mp4", cwd=work)
    assert usage.returncode == 2 and "did you mean mmaudio-v2?" in usage.stderr
    demo = run(with_cli, "demo", "-o", "demo", "--json", "-q", cwd=work)
    assert demo.returncode == 0 and demo.stderr == "", demo.stderr
    assert json.loads(demo.stdout)["emulator"] is True


def test_a_plain_install_says_which_extra_a_command_needs(wheel, plain, tmp_path):
    version = run(plain, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"sonify {built_version(wheel)}"
    assert run(plain, "--help", cwd=tmp_path).returncode == 0
    for args in (("run", "mmaudio-v2", "--video", "clip.mp4", "--prompt", "rain"), ("demo",)):
        done = run(plain, *args, cwd=tmp_path)
        assert done.returncode == 3, done.stderr
        assert done.stderr.strip() == "error: this command needs PyAV and numpy, which a plain install leaves out " \
                                      "(ComfyUI brings its own): pip install 'sonify[cli]'"
