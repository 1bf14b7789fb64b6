"""The engine's layers point one way (docs/architecture.md): each folder imports only from the layers below it,
and `import sonify` itself loads nothing heavy (ComfyUI's start-up and Temporal's sandbox pay for it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from pack import ROOT

ENGINE = ROOT / "sonify"
# lowest first; the base files may use each other, a folder only what stands in a lower layer
LAYERS = (
    {"atomic", "errors", "catalog", "settings", "key_store", "redact", "waiter", "version", "loudness_target", "budget",
     "offers", "background", "heap"},
    {"media", "net", "journal"},
    {"providers"},
    {"pipeline"},
    {"temporal"},
    {"cli"},
)
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    return path.relative_to(ENGINE).parts[0].removesuffix(".py")


def engine_imports(path: Path) -> set[str]:
    """The engine units (top-level files or folders of sonify/) that one file imports, anywhere in it."""
    package = path.relative_to(ROOT).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[: len(package) - node.level + 1]) + (node.module.split(".") if node.module else [])
            names = [base + [alias.name] for alias in node.names] if len(base) == 1 else [base]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sonify":
            names = [node.module.split(".")]
        else:
            continue
        found.update(name[1] for name in names if name[0] == "sonify" and len(name) > 1)
    return found


def engine_files() -> list[Path]:
    return sorted(p for p in ENGINE.rglob("*.py") if p.parent != ENGINE or p.stem not in {"__init__", "__main__"})


def test_every_engine_unit_has_a_layer():
    assert {unit_of(p) for p in engine_files()} <= set(LAYER_OF)


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(ENGINE)))
def test_a_file_imports_only_from_the_layers_below_its_own(path):
    unit = unit_of(path)
    level = LAYER_OF[unit]
    wrong = {other for other in engine_imports(path) - {unit}
             if LAYER_OF[other] > level or (LAYER_OF[other] == level and level > 0)}
    assert not wrong, f"{path.relative_to(ROOT)} (layer {level}) imports {sorted(wrong)}"


def loaded_by(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", f"import sys; {code}; print(' '.join(sorted(sys.modules)))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return set(done.stdout.split())


def test_import_sonify_loads_nothing_heavy():
    loaded = loaded_by("import sonify")
    assert not {m for m in loaded if m.split(".")[0] in {"numpy", "av", "temporalio", "requests", "torch"}}
    assert {m for m in loaded if m.startswith("sonify.")} <= {"sonify.version"}


def test_the_workflow_sandbox_loads_none_of_the_engine():
    loaded = loaded_by("import sonify.temporal.workflows")
    assert {m for m in loaded if m.startswith("sonify.")} == {"sonify.temporal", "sonify.temporal.workflows"}


def test_temporal_is_imported_only_for_a_batch_on_it_or_a_worker():
    assert "temporalio" not in loaded_by("import sonify.cli, sonify.pipeline.batch, sonify.pipeline")
