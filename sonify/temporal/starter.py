"""`python -m sonify batch MODEL SOURCES -o DIR --temporal HOST:PORT`: the batch's clips as Temporal workflows
(temporal_flow.py), run by the workers (temporal_worker.py) and followed here with the single-machine batch's
progress bar and summary (batch.py).

Each clip's workflow id is derived from the journal's fingerprint of its job (pipeline.file_fingerprint) and its
result's place, so the same batch submitted again starts nothing twice: a running workflow is followed, a
completed one is not run again (Temporal keeps its result for the namespace's retention), a failed one runs
anew. Clips whose result is already in DIR are skipped before any of this, as without Temporal.

The connection: HOST:PORT, and Temporal's own variables for the rest — TEMPORAL_NAMESPACE (default
"default"), TEMPORAL_API_KEY (Temporal Cloud's API key; turns TLS on), TEMPORAL_TLS=1 (TLS without a key).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from .. import journal, pipeline, providers
from ..errors import ConfigurationError
from ..pipeline import batch
from .workflows import WORKFLOW_QUEUE, ClipJob, SlotsState, slots_id

FOLLOW_SECONDS = 1.0  # between looks at the running workflows


LOOK_TIMEOUT = timedelta(seconds=2)  # a stage not told by then is shown next time


LOOKS = 16  # running workflows asked their stage per look, in turn (a query is a round trip to a worker)


RETRY_MAY_HELP = ("NothingSent", "ProviderError")


async def connect(address: str) -> Client:
    """A client of the Temporal service at `address` (see the module docstring for namespace, TLS, API key)."""
    api_key = os.environ.get("TEMPORAL_API_KEY") or None
    tls = True if os.environ.get("TEMPORAL_TLS", "").strip().lower() in ("1", "true", "yes") else None
    try:
        return await Client.connect(address, namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
                                    api_key=api_key, tls=tls)
    except (RuntimeError, ValueError) as exc:  # the SDK's "Failed client connect"; ValueError: a malformed address
        raise ConfigurationError(f"cannot reach Temporal at {address} ({exc})") from None


def workflow_id(spec_key: str, fingerprint: str, out_dir: str, name: str) -> str:
    """The clip's workflow id: its job's fingerprint and where its result goes."""
    return f"sonify-{spec_key}-{journal.digest_of(fingerprint, out_dir, name)[:40]}"


class TemporalBatch(batch.Batch):
    """A Batch whose clips run on Temporal's workers; `run` starts and follows them (Ctrl-C stops following:
    the workflows go on, and the same command follows them again)."""

    def __init__(self, *args: Any, address: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address = address
        provider = self.spec.provider  # the account's limits, for the slots workflow (the batch's settings)
        self.limits = self.settings.limits(provider, providers.endpoint(provider, self.settings))
        self.queue_seconds = self.settings.queue_seconds

    def run(self, on_tick: Callable[[], None]) -> None:
        asyncio.run(self._run(on_tick))

    async def _run(self, on_tick: Callable[[], None]) -> None:
        todo = [item for item in self.items if item.state == "waiting"]
        client = await connect(self.address)
        if todo:
            await client.start_workflow("SonifyProviderSlots", SlotsState(self.concurrency),
                                        id=slots_id(self.spec.provider), task_queue=WORKFLOW_QUEUE,
                                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        handles = {}
        for item in todo:
            if self.is_cancelled():  # Ctrl-C while starting: no further clip becomes a paid job
                item.state, item.error = "cancelled", "not started (cancelled)"
                continue
            handles[item.name] = await self._start(client, item)
            on_tick()
        todo = [item for item in todo if item.name in handles]
        followed = {asyncio.ensure_future(self._follow(item, handles[item.name])) for item in todo}
        turn = 0
        while followed:
            if self.is_cancelled():
                for task in followed:
                    task.cancel()
                for item in todo:
                    if item.state == "running":
                        item.state, item.error = "cancelled", "no longer followed; its workflow goes on"
                break
            running = [item for item in todo if item.state == "running"]
            asked = (running[turn:] + running[:turn])[:LOOKS]
            turn = (turn + LOOKS) % max(len(running), 1)
            await asyncio.gather(*(self._look(item, handles[item.name]) for item in asked))
            on_tick()
            _, followed = await asyncio.wait(followed, timeout=FOLLOW_SECONDS)
        on_tick()

    async def _start(self, client: Client, item: batch.Item) -> WorkflowHandle:
        source = item.source.resolve()
        out_dir = str(self.out_dir.resolve())
        limits = self.limits
        job = ClipJob(self.spec.key, self.spec.provider, self.params, str(source), out_dir, item.name,
                      self.concurrency, at_once=limits.at_once if limits else None,
                      starts=limits.starts if limits else None, per_seconds=limits.seconds if limits else 60.0,
                      queue_seconds=self.queue_seconds, run_id=self.run_id)
        fingerprint = await asyncio.to_thread(pipeline.file_fingerprint, self.spec, self.params, source,
                                              self.settings)
        wid = workflow_id(self.spec.key, fingerprint, out_dir, item.name)
        item.state, item.text = "running", "starting"
        job.delivery = await _undelivered(client.get_workflow_handle(wid))
        try:
            return await client.start_workflow(
                "SonifyClip", job, id=wid, task_queue=WORKFLOW_QUEUE,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        except WorkflowAlreadyStartedError:  # completed before: its result is followed, nothing runs again
            return client.get_workflow_handle(wid)

    async def _look(self, item: batch.Item, handle: WorkflowHandle) -> None:
        try:
            item.text = await handle.query("progress", rpc_timeout=LOOK_TIMEOUT)
        except RPCError:  # finished meanwhile, or no worker has answered yet
            pass

    async def _follow(self, item: batch.Item, handle: WorkflowHandle) -> None:
        try:
            info = await handle.result()
        except WorkflowFailureError as exc:
            cause = exc.cause
            item.state, item.error = "failed", getattr(cause, "message", None) or str(cause or exc)
            if isinstance(cause, ApplicationError) and cause.type == "BudgetExceeded":  # nothing sent for it
                item.state = "left"
                self.stopped = self.stopped or item.error
            if isinstance(cause, ApplicationError):
                item.task_id = cause.details[0] if cause.details else None
                item.retry_may_help = cause.type in RETRY_MAY_HELP or len(cause.details) > 1 and bool(cause.details[1])
            return
        item.task_id = info.get("task_id")
        video = self.out_dir / f"{item.name}.mp4"
        if not video.is_file():
            item.state = "failed"
            item.error = (f"its workflow {handle.id} completed earlier, but {video} is no longer there (Temporal runs "
                          f"a completed clip once): `python -m sonify fetch {self.spec.provider} {item.task_id}` gets "
                          "the result again")
            return
        if not (self.out_dir / f"{item.name}{batch.SIDECAR}").is_file():  # the result is there; its record again
            record = {"source": str(item.source.resolve()), "model": self.spec.key, "params": self.params, "job": info}
            batch.write_sidecar(self.out_dir, item.name, record)
        item.state, item.info = "done", info


async def _undelivered(handle: WorkflowHandle) -> dict[str, Any] | None:
    """The task of the workflow's failed last run, unless it failed at the provider: the next run waits for it
    again (or only delivers it, when it had completed)."""
    try:
        described = await handle.describe()
    except RPCError:  # no such workflow yet
        return None
    if described.status != WorkflowExecutionStatus.FAILED:
        return None
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        details = getattr(exc.cause, "details", ())
        return details[1] if len(details) > 1 and details[1] else None
    return None
