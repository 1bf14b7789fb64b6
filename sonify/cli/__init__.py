"""The `sonify` command: run, batch, worker, fetch, jobs, doctor and the dev tools."""

from .commands import main
from .exits import EXIT_SOME_FAILED

__all__ = ["EXIT_SOME_FAILED", "main"]
