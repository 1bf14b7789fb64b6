"""Load the pack the way ComfyUI loads a custom node: by file location, as a package named by
its folder, never by putting the pack folder on sys.path (ComfyUI has its own `nodes`)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NAME = "custom_nodes_sonify"


def load_pack() -> ModuleType:
    if NAME in sys.modules:
        return sys.modules[NAME]
    spec = importlib.util.spec_from_file_location(NAME, ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    return module


def module(name: str) -> ModuleType:
    """The pack's own copy of one of its modules (e.g. "sonify.settings"), as the nodes see it."""
    load_pack()
    return importlib.import_module(f"{NAME}.{name}")


def outputs(function: Callable[..., Any]) -> Callable[..., Any]:
    """A node's FUNCTION answering with its outputs tuple: from a {"ui": …, "result": …} answer (what a model
    node shows on itself, then its outputs) the "result". A coroutine FUNCTION stays one."""

    def result(answer: Any) -> Any:
        return answer["result"] if isinstance(answer, dict) else answer

    if inspect.iscoroutinefunction(function):
        async def run_async(**inputs: Any) -> Any:
            return result(await function(**inputs))

        return run_async
    return lambda **inputs: result(function(**inputs))
