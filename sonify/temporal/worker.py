"""A Temporal worker: `python -m sonify worker --temporal HOST:PORT`, on any number of machines.

It runs the workflows of temporal_flow.py and, for each provider whose key is in its environment, that
provider's activities, each one step of the engine's remote job (remote_job.py) and pipeline: prepare +
upload, submit, reconcile (a submit without an answer), wait, download + fit + mux. Every activity heartbeats
from a thread of its own (so a dead worker is noticed within temporal_flow.HEARTBEAT and its step handed to
another), and a cancel from Temporal stops the step as the user's Cancel does.

Temporal's history is the job's record here, not the worker's journal: a wait resumed on another worker
starts from the task id in its input, and a submit's fate is decided by the workflow (temporal_flow.py). The worker's
journal keeps its spend ledger: prepare checks the caps against it, and submit counts the job in it (a row of its
own), within the caps, in one transaction before it sends anything.

A workflow's input is not trusted as a path: a clip is taken, and a result written, only under the folders the
worker was started with (worker_folders.py), checked before any request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.worker import Worker

from .. import settings
from ..catalog import PROVIDERS
from ..errors import ConfigurationError
from . import activities
from .activities import ACTIVITIES, KnownTasks
from .starter import connect
from .worker_folders import AllowedFolders
from .workflows import (
    WORKFLOW_QUEUE,
    ClipWorkflow,
    ProviderSlots,
    provider_queue,
)

log = logging.getLogger("sonify")


ACTIVITY_THREADS = 8  # steps at once per provider per worker: waits mostly sleep; prepare and mux use a core


STICKY_TIMEOUT = timedelta(seconds=3)


def served_providers() -> list[str]:
    """The providers whose key this worker's environment (or key file) holds."""
    return [provider for provider in PROVIDERS if settings.find_key(provider) is not None]


async def serve(address: str, folders: AllowedFolders,
                on_ready: Callable[[list[str]], None] = lambda served: None) -> None:
    """Poll the workflow queue and each served provider's queue until cancelled (Ctrl-C), taking clips from and
    writing results under `folders` only."""
    served = served_providers()
    if not served:
        raise ConfigurationError("this worker has no provider key: set WAVESPEED_API_KEY and/or FAL_KEY in its "
                                 "environment (keys never travel through Temporal)")
    client = await connect(address)
    activities.serving(KnownTasks(client, asyncio.get_running_loop()), folders)
    threads = ThreadPoolExecutor(max_workers=ACTIVITY_THREADS * len(served), thread_name_prefix="sonify-activity")
    # A dead worker's cached workflows wait this long before another worker takes them (the SDK's default: 10 s).
    workers = [Worker(client, task_queue=WORKFLOW_QUEUE, workflows=[ClipWorkflow, ProviderSlots],
                      sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT)]
    workers += [Worker(client, task_queue=provider_queue(provider), activities=ACTIVITIES, activity_executor=threads,
                       max_concurrent_activities=ACTIVITY_THREADS) for provider in served]
    on_ready(served)
    try:
        await asyncio.gather(*(worker.run() for worker in workers))
    finally:
        threads.shutdown(wait=False, cancel_futures=True)
