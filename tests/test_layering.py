"""The engine's layers point one way: providers know nothing of the journal, the remote job nothing of
the pipeline above it. Each import runs in a fresh interpreter, so sys.modules shows what it pulled in."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pack import ROOT

LOADED = "import sys, {module}; print(' '.join(sorted(m for m in sys.modules if m.startswith('sonify'))))"


def loaded_by(module: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", LOADED.format(module=module)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize(("module", "never"), [
    ("sonify.providers", {"sonify.jobs", "sonify.pipeline", "sonify.remote_job"}),
    ("sonify.remote_job", {"sonify.pipeline", "sonify.batch", "sonify.cli", "sonify.uplink"}),
    ("sonify.uplink", {"sonify.pipeline", "sonify.batch", "sonify.cli"}),
    ("sonify.pipeline", {"sonify.batch", "sonify.cli", "sonify_devtools"}),
    # Temporal's workflow sandbox loads it again for every workflow run: none of the engine
    ("sonify.temporal_flow", {"sonify.pipeline", "sonify.jobs", "sonify.remote_job", "sonify.providers",
                              "sonify.media", "sonify.batch"}),
])
def test_an_engine_layer_imports_nothing_above_it(module, never):
    loaded = loaded_by(module)
    assert module in loaded
    assert not {m for m in loaded if m in never or m.split(".")[0] in never}


def test_temporal_is_imported_only_for_a_batch_on_it_or_a_worker():
    check = "import sys, sonify.cli, sonify.batch, sonify.pipeline; print('temporalio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout.strip() == "False"
