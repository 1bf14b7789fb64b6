"""Emulated remote tasks: created -> processing -> completed | failed | cancelled | deleted, over configurable
time.

Provider-neutral: each provider's routes map these statuses onto their own wire format. A provider, and an
account (accounts.py), may have a concurrency limit: tasks past it wait in "created", first come first served.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonify import media
from sonify.catalog import ModelSpec
from sonify.errors import ValidationError

from . import synth
from .storage import FetchError, Storage

log = logging.getLogger("sonify.emulator")

FINAL = ("completed", "failed", "cancelled", "deleted")
SLOT_CHECK = 0.1  # seconds between looks for a free slot (the limit can change at any time)
JOIN_SECONDS = 5.0


class TaskFailure(Exception):
    """Ends a task with status failed, `message` and the provider's task error `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Task:
    id: str
    provider: str
    spec: ModelSpec
    params: dict[str, Any]
    media: dict[str, str]  # request field -> URL as submitted
    seconds: float  # time from submit to a final status when no concurrency limit holds the task back
    queue_seconds: float  # least time spent in "created" (more while waiting for a slot)
    fmt: str  # output format handed to synth.render
    fail: TaskFailure | None = None  # set by fail_next: the task ends with this failure
    stuck: bool = False  # set by stick_next: the task never leaves the queue
    reported_status: str | None = None  # set by report_next: the raw status word shown once final
    sound: str | None = None  # set by bad_sound_next: how its sound is made wrong (synth.BAD_SOUNDS)
    name: str = ""  # set by hand_out("task_id"): the id the answers give (and requests find it by) instead of `id`
    input: dict[str, Any] | None = None  # the submit body as sent (fal's request listing shows it)
    webhook: str = ""  # the submit's webhook URL: a signed delivery is POSTed there once the task is final
    account: str = ""  # accounts.account_of(the submit's key)
    created_at: str = ""  # ISO 8601, UTC
    submitted: float = field(default_factory=time.monotonic)
    status: str = "created"
    started: float | None = None
    completed_at: float | None = None  # monotonic time the final status was set
    outputs: tuple[Path, ...] = ()
    error: str = ""
    code: int = 0

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def shown_id(self) -> str:
        """The id the provider's answers give: `name`, else `id` (which also names the task's files)."""
        return self.name or self.id

    @property
    def inference_ms(self) -> int:
        if self.started is None or self.completed_at is None:
            return 0
        return round((self.completed_at - self.started) * 1000)


class TaskBoard:
    """Holds every task and runs one daemon worker thread per task.

    `on_final(task)` is called (outside the lock) with a snapshot of each task as it reaches a final status.
    `slots(provider)` is the number of that provider's tasks that may be processing at once, and
    `account_slots(account)` that of one account's (None: no limit); read whenever a task looks for a slot, so
    they can be changed at any time."""

    def __init__(
        self, storage: Storage, stopping: threading.Event, slots: Callable[[str], int | None] = lambda provider: None,
        on_final: Callable[[Task], None] = lambda task: None,
        account_slots: Callable[[str], int | None] = lambda account: None,
    ) -> None:
        self._storage = storage
        self._stopping = stopping
        self._slots = slots
        self._account_slots = account_slots
        self._on_final = on_final  # called with a snapshot once a task's final status is set (webhooks)
        self._changed = threading.Condition()
        self._tasks: dict[str, Task] = {}
        self._names: dict[str, str] = {}  # Task.name -> id
        self._threads: list[threading.Thread] = []

    def add(self, task: Task) -> None:
        thread = threading.Thread(
            target=self._run, args=(task,), name=f"sonify-emulator-task-{task.id[:8]}", daemon=True
        )
        with self._changed:
            self._tasks[task.id] = task
            if task.name:
                self._names[task.name] = task.id
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def get(self, task_id: str) -> Task | None:
        """A snapshot of the task (later changes do not show in it), by its id or its name."""
        with self._changed:
            task = self._tasks.get(self._names.get(task_id, task_id))
            return dataclasses.replace(task) if task is not None else None

    def all(self, provider: str | None = None) -> list[Task]:
        """Snapshots of every task (of one provider), oldest first."""
        with self._changed:
            tasks = [dataclasses.replace(t) for t in self._tasks.values() if provider in (None, t.provider)]
        return sorted(tasks, key=lambda t: t.submitted)

    def wait_final(self, task_id: str, timeout: float) -> Task:
        """The task once final, or as it is when `timeout` passes or the emulator stops."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                task = self._tasks[task_id]
                left = deadline - time.monotonic()
                if task.final or left <= 0 or self._stopping.is_set():
                    return dataclasses.replace(task)
                self._changed.wait(left)

    def wait_change(self, timeout: float) -> None:
        """Return when any task changes (or the emulator stops), or after `timeout` seconds."""
        with self._changed:
            if not self._stopping.is_set():
                self._changed.wait(timeout)

    def queue_position(self, task_id: str) -> int:
        """How many tasks of the same provider wait ahead of this one (0: next in line)."""
        with self._changed:
            return self._position(self._tasks[task_id])

    def cancel(self, task_id: str, status: str = "cancelled") -> bool:
        """End a task that is not final yet with `status`; False if it already was final."""
        with self._changed:
            task = self._tasks[task_id]
            if task.final:
                return False
            self._tasks[task_id] = ended = dataclasses.replace(
                task, status=status, error="cancelled by the client", completed_at=time.monotonic()
            )
            self._changed.notify_all()
        self._on_final(dataclasses.replace(ended))
        return True

    def delete(self, task_id: str) -> None:
        """A final task is deleted, its result with it (WaveSpeed's DELETE of a finished task)."""
        with self._changed:
            self._tasks[task_id] = dataclasses.replace(self._tasks[task_id], status="deleted", outputs=())
            self._changed.notify_all()

    def close(self) -> None:
        """Wake every waiter and let the workers end (the stopping event is already set)."""
        with self._changed:
            self._changed.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + JOIN_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _position(self, task: Task, account: bool = False) -> int:
        """Tasks of the same provider (and `account`) waiting ahead of this one."""
        return sum(
            1 for t in self._tasks.values()
            if t.provider == task.provider and t.status == "created" and not t.stuck and t.submitted < task.submitted
            and (not account or t.account == task.account)
        )

    def _free(self, task: Task) -> bool:
        """Whether a slot is this task's now: within the provider's limit and its account's."""
        limit, own = self._slots(task.provider), self._account_slots(task.account)
        running = [t for t in self._tasks.values() if t.provider == task.provider and t.status == "processing"]
        if limit is not None and self._position(task) >= limit - len(running):
            return False
        mine = sum(1 for t in running if t.account == task.account)
        return own is None or self._position(task, account=True) < own - mine

    def _start(self, task_id: str) -> float | None:
        """Wait for a free slot, then mark the task processing; its start time, or None if the task
        was cancelled or the emulator stops meanwhile."""
        with self._changed:
            while not self._stopping.is_set():
                task = self._tasks[task_id]
                if task.final:
                    return None
                if task.stuck:
                    self._changed.wait(SLOT_CHECK)
                    continue
                if self._free(task):
                    started = time.monotonic()
                    self._tasks[task_id] = dataclasses.replace(task, status="processing", started=started)
                    self._changed.notify_all()
                    return started
                self._changed.wait(SLOT_CHECK)
        return None

    def _finish(self, task_id: str, **outcome: Any) -> None:
        """Set the final status, unless the task was cancelled meanwhile."""
        with self._changed:
            if self._tasks[task_id].final:
                return
            self._tasks[task_id] = ended = dataclasses.replace(self._tasks[task_id], completed_at=time.monotonic(),
                                                               **outcome)
            self._changed.notify_all()
        self._on_final(dataclasses.replace(ended))

    def _run(self, task: Task) -> None:
        queued = min(task.queue_seconds, task.seconds)
        if self._stopping.wait(queued):
            return
        started = self._start(task.id)
        if started is None:
            return
        try:
            outcome: dict[str, Any] = {"status": "completed", "outputs": self._produce(task)}
        except TaskFailure as e:
            outcome = {"status": "failed", "error": e.message, "code": e.code}
        except Exception as e:  # noqa: BLE001 - any synth/media error is the provider's internal error
            if self._stopping.is_set():
                return
            log.warning("emulated task %s failed in synth: %s", task.id, e)
            outcome = {"status": "failed", "error": f"{type(e).__name__}: {e}", "code": 5000}
        remaining = started + task.seconds - queued - time.monotonic()
        if remaining > 0 and self._stopping.wait(remaining):
            return
        self._finish(task.id, **outcome)

    def _produce(self, task: Task) -> tuple[Path, ...]:
        if task.fail is not None:
            raise task.fail
        spec = task.spec
        paths = {name: self._fetch(name, url) for name, url in task.media.items()}
        video = paths[spec.video_field]
        if spec.min_seconds is not None or spec.max_seconds is not None:
            try:
                spec.check_duration(float(media.probe(video).duration))
            except ValidationError as e:
                raise TaskFailure(str(e), 1401) from e
        audio = str(paths[spec.audio_field]) if spec.audio_field else None
        out_dir = self._storage.output_dir(task.id)
        outputs = tuple(Path(p) for p in synth.render(spec, task.params, str(video), audio, str(out_dir), task.fmt,
                                                          task.sound))
        if not outputs or not all(p.is_file() and p.resolve().parent == out_dir.resolve() for p in outputs):
            raise TaskFailure("the emulator's synth produced no output file", 5000)
        return outputs

    def _fetch(self, name: str, url: str) -> Path:
        try:
            return self._storage.resolve(url)
        except FetchError as e:
            raise TaskFailure(f"{name}: {e}", 1402) from e
