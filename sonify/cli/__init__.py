"""The `sonify` command: run, batch, worker, fetch, jobs, doctor and the dev tools."""

from .commands import EXIT_SOME_FAILED, main

__all__ = ["EXIT_SOME_FAILED", "main"]
