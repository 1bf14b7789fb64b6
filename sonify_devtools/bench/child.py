"""One benchmark case in a fresh interpreter: `python -m sonify_devtools.bench.child KIND CONFIG_JSON` prints
the case's JSON record as its last line. Imports nothing heavy before the case runs, so the start-up case
measures the pack's import on a clean slate."""

from __future__ import annotations

import json
import sys
from typing import Any


def startup(config: dict[str, Any]) -> dict[str, Any]:
    """Import the pack the way ComfyUI does (by file location, as a package named by its folder) and say
    what that cost and what it pulled in."""
    import importlib.util
    import time
    from pathlib import Path

    root = Path(config["pack"])
    before = set(sys.modules)
    start = time.perf_counter()
    spec = importlib.util.spec_from_file_location("bench_pack", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pack"] = module
    spec.loader.exec_module(module)
    seconds = time.perf_counter() - start
    loaded = set(sys.modules) - before
    return {
        "seconds": round(seconds, 4),
        "nodes": len(module.NODE_CLASS_MAPPINGS),
        "imports_pyav": any(name == "av" or name.startswith("av.") for name in loaded),
        "imports_emulator": any(".emulator" in name for name in loaded),
        "heavy_modules": sorted(name for name in loaded if name.split(".")[0] in ("av", "numpy", "torch", "requests")
                                and "." not in name),
    }


def main(argv: list[str]) -> int:
    kind, config = argv[0], json.loads(argv[1])
    if kind == "startup":
        record = startup(config)
    else:
        import logging

        from . import cases, fast_paths, long_clips, saves

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        record = {"clip": cases.clip_case, "lipsync": cases.lipsync_case, "job": cases.job_case,
                  "frames": fast_paths.frames_case, "two_nodes": fast_paths.two_nodes_case,
                  "long_clip": long_clips.long_clip_case, "long_clip_memory": long_clips.memory_case,
                  "frames_save": saves.frames_save_case, "neighbours": saves.neighbours_case}[kind](config)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
