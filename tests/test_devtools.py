"""The dev tools (sonify_devtools: the emulator, the benchmark, the demo) stay beside the engine: a whole
node run imports none of them, and the engine's command line works without them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pack import ROOT

TESTS = Path(__file__).resolve().parent

# Run in a fresh interpreter, so that its sys.modules holds only what this node run imported: the pack
# loaded as ComfyUI loads it (tests/pack.py), SonifyMMAudioV2 with every widget at its default run on a
# file VIDEO against the emulator the test process started, then the names of the loaded modules.
NODE_RUN = """
import asyncio, inspect, json, sys
from pack import load_pack, module, outputs

node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyMMAudioV2"]
inputs = {name: spec[1].get("default") for name, spec in node_cls.INPUT_TYPES()["required"].items()}
inputs.update(prompt="a metal door slams", video=module("nodes.comfy").FileVideo(sys.argv[1]))
out = outputs(getattr(node_cls(), node_cls.FUNCTION))(**inputs)
if inspect.isawaitable(out):
    out = asyncio.run(out)
audio, video, job = out
print(json.dumps({"job": json.loads(job), "video": str(video.get_stream_source()), "modules": sorted(sys.modules)}))
"""


def dev_tool_modules(names: list[str]) -> list[str]:
    """The loaded modules of this project (the pack, the engine, the dev tools, under any name) that belong
    to the dev tools."""
    ours = {"custom_nodes_sonify", "sonify", "sonify_devtools"}
    dev_tools = {"sonify_devtools", "emulator", "bench", "demo"}
    return [name for name in names if name.split(".")[0] in ours and dev_tools & set(name.split("."))]


def test_a_node_run_imports_neither_the_emulator_nor_the_benchmark(emulator, wavespeed_env, clip_path, tmp_path):
    # the pack folder on the path too: an absolute `import sonify_devtools` anywhere in the run would
    # succeed, and be seen below, rather than fail and perhaps be caught
    env = {**os.environ, **wavespeed_env, "PYTHONPATH": os.pathsep.join((str(TESTS), str(ROOT)))}
    done = subprocess.run([sys.executable, "-c", NODE_RUN, str(clip_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])

    assert record["job"]["status"] == "completed" and emulator.submits() == 1  # a real run, on the emulator
    assert Path(record["video"]).is_file()
    assert "custom_nodes_sonify.sonify.pipeline" in record["modules"]  # the engine, as the pack's subpackage
    assert dev_tool_modules(record["modules"]) == []


def test_without_the_dev_tools_their_commands_say_so_and_the_others_work(tmp_path):
    """An install with the engine only (sonify/, no sonify_devtools/ beside it)."""
    shutil.copytree(ROOT / "sonify", tmp_path / "sonify", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SONIFY_STATE_DIR": str(tmp_path / "state")}

    def sonify(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sonify", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60, check=False)

    for args in (("emulator", "--port", "0"), ("demo", "-o", "out"), ("bench", "--quick"), ("emulator", "--help")):
        done = sonify(*args)
        assert done.returncode == 3, (args, done.stderr)
        assert "Traceback" not in done.stderr and "sonify_devtools" in done.stderr, args
    done = sonify("run", "mmaudio-v2", "--help")
    assert done.returncode == 0 and "--prompt" in done.stdout, done.stderr
