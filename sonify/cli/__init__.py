"""The `sonify` command: run, batch, worker, fetch, jobs, doctor and the dev tools."""

from .commands import main

__all__ = ["main"]
