"""What a command prints, at the verbosity asked for: progress and notes on stderr (none with -q), the full job
info on stderr too with -v, and the results on stdout — their paths, or with --json one JSON object per result
and nothing else, for scripts."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ProgressFn = Callable[[str, float | None], None]


def add_options(parser: argparse.ArgumentParser, json_help: str) -> None:
    """--json, and -q / -v (one or the other)."""
    parser.add_argument("--json", action="store_true", help=json_help)
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="no progress or notes on stderr: errors only")
    loudness.add_argument("-v", "--verbose", action="store_true",
                          help="the full job info (JSON) and the engine's debug log on stderr too")


@dataclass(frozen=True)
class Output:
    quiet: bool = False
    verbose: bool = False
    json: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace) -> Output:
        return cls(getattr(args, "quiet", False), getattr(args, "verbose", False), getattr(args, "json", False))

    @property
    def log_level(self) -> int:
        """Of the "sonify" logger (whose records are redacted)."""
        return logging.WARNING if self.quiet else logging.DEBUG if self.verbose else logging.INFO

    def progress(self) -> ProgressFn:
        """Progress lines on stderr, each printed once (none when quiet)."""
        shown: list[str] = [""]

        def show(text: str, fraction: float | None) -> None:
            if not self.quiet and text != shown[0]:
                shown[0] = text
                print(f"  {text}", file=sys.stderr)

        return show

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)

    def job_info(self, info: dict[str, Any]) -> None:
        if self.verbose:
            print(json.dumps(info, indent=2), file=sys.stderr)

    def result(self, path: Path | None, info: dict[str, Any], **fields: Any) -> None:
        """A result on stdout: its path, or (--json) its record with `fields` added."""
        if self.json:
            self.record(result_record(path, info, **fields))
        elif path is not None:
            print(path, flush=True)

    @staticmethod
    def record(values: dict[str, Any]) -> None:
        print(json.dumps(values), flush=True)


def result_record(path: Path | None, info: dict[str, Any], *, reused: bool | None = None,
                  **fields: Any) -> dict[str, Any]:
    """One result for scripts: where it is, the task that made it, what it cost this run (0 when reused: no
    request, no cost), the seconds per stage of the run that made it, the seed sent, whether the Sonify emulator
    made it (synthetic sound), its receipt (what its file's metadata holds) — then `fields` and the full job info."""
    from ..pipeline import receipts  # the pipeline (numpy, PyAV) loads only when a result is written out

    reused = bool(info.get("cached")) if reused is None else reused
    return {
        "path": str(path.resolve()) if path is not None else None,  # absolute: a script may run elsewhere
        "task_id": info.get("task_id"),
        "provider": info.get("provider"),
        "model": info.get("model"),
        "cost_usd_estimate": 0.0 if reused else info.get("cost_usd_estimate"),
        "seconds": info.get("seconds") or {},
        "seed": (info.get("params") or {}).get("seed"),
        "emulator": bool(info.get("emulator")),
        "resumed": bool(info.get("resumed")),
        "reused": reused,
        "receipt": receipts.of(info) if info.get("task_id") else None,
        **fields,
        "job": info,
    }
