"""A journal row's life: the Status state machine (its docstring lists every transition), the claim kinds, and
which process owns a row (a heartbeat, its pid and host)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 5.0  # a running job's row is touched this often...


STALE_SECONDS = 30.0  # ...so a row untouched this long has no live owner


HOST = socket.gethostname()


class Word(str, Enum):
    """A word stored in the journal: compares, formats and serialises as its text."""

    def __str__(self) -> str:
        return str.__str__(self)

    __format__ = str.__format__


class Status(Word):
    """A job row's status. These are all the transitions the code makes:

        (claim "new")                 → INTENT
        INTENT      → SUBMITTING        the submit is about to be sent (a run that ends before deletes its INTENT row)
        SUBMITTING  → SUBMITTED         the provider answered with a task id (recorded before the wait)
                    → INTENT            refused (HTTP 4xx) or cancelled before anything was sent: nothing to pay for
                    → UNKNOWN           no readable answer: a task may exist (the provider is asked at once)
        UNKNOWN, or SUBMITTING/UNKNOWN (no live run, no task id) at a later identical run's claim:
                    → SUBMITTED         the provider lists exactly one task that can be ours: adopted
                    → INTENT            it lists none, and its listing shows unfinished tasks too (WaveSpeed):
                                        nothing was created (a claim then submits on this row)
                    → UNKNOWN (kept)    it lists finished tasks only (fal) and none showed before the job's
                                        queue-and-run bound had passed since the submit: the row stays open, the
                                        user is told how to find the task, and the next identical run looks again
        SUBMITTED   → QUEUED → RUNNING  as the provider reports them (either may be skipped)
        SUBMITTED, QUEUED, RUNNING
                    → COMPLETED         the task succeeded (its result file is then downloaded, `result_path`)
                    → FAILED            the task failed, or the provider no longer has it
                    → CANCELLED         the user cancelled and the provider accepted the cancel
                    → DETACHED          the run stopped while the task went on (timeout, crash, a Cancel the
                                        provider did not get) or had just finished (its result kept)
        DETACHED    → SUBMITTED         an identical run resumes the task (a resume keeps any other status)
        SUBMITTING, UNKNOWN (no live run, no task id)
                    → UNKNOWN_REPORTED  several candidates, or the provider could not be asked, or (fal) none listed
                                        by a run that started after the bound had passed: the user is told
                                        (candidate ids, or how to find it) once, and the next identical run submits anew
        (no row)    → COMPLETED         a result fetched by task id (`record_fetched`)
    """

    INTENT = "intent"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DETACHED = "detached"
    UNKNOWN = "unknown"
    UNKNOWN_REPORTED = "unknown_reported"


OPEN = frozenset({Status.INTENT, Status.SUBMITTING, Status.SUBMITTED, Status.QUEUED, Status.RUNNING})  # a run works on it


RESUMABLE = frozenset({Status.SUBMITTED, Status.QUEUED, Status.RUNNING, Status.DETACHED, Status.COMPLETED})  # has a task


AMBIGUOUS = frozenset({Status.SUBMITTING, Status.UNKNOWN})  # the submit may or may not have reached the provider




class ClaimKind(Word):
    """What a run does with its fingerprint (see Claim)."""

    STORED = "stored"  # use the row's stored result: no request
    RESUME = "resume"  # wait on the row's task
    BUSY = "busy"  # an identical job runs in another live run: wait, then claim again
    AMBIGUOUS = "ambiguous"  # a dead run's submit may or may not have reached the provider: ask it (RemoteJob)
    NEW = "new"  # upload and submit


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    id: int
    fingerprint: str | None
    provider: str
    model: str
    task_id: str | None
    status: Status
    cacheable: bool
    delivered: bool
    params: dict[str, Any]
    cost_usd: float | None
    source_path: str | None
    outputs: list[str]
    extra: dict[str, Any]
    result_path: str | None
    error: str | None
    owner: str | None
    heartbeat: float | None
    created_at: float
    updated_at: float
    request: dict[str, Any] | None = None  # {body, sent_at}: the submit as sent, once it was about to be
    run_id: str | None = None
    spent_at: float | None = None  # in the ledger from then (ledger.py)
    measured_usd: float | None = None
    measured: dict[str, Any] | None = None

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> JobRow:
        values = dict(row)
        for name, empty in (("params", "{}"), ("outputs", "[]"), ("extra", "{}")):
            values[name] = json.loads(values[name] or empty)
        for name in ("request", "measured"):
            values[name] = json.loads(values[name]) if values.get(name) else None
        values["cacheable"], values["delivered"] = bool(values["cacheable"]), bool(values["delivered"])
        values["status"] = Status(values["status"])
        return cls(**values)

    def stored_result(self) -> Path | None:
        """The downloaded result file, if this row has one that still exists."""
        if self.status == Status.COMPLETED and self.result_path and Path(self.result_path).is_file():
            return Path(self.result_path)
        return None


@dataclass(frozen=True)
class Claim:
    """What a run should do (see ClaimKind), and the row it concerns."""

    kind: ClaimKind
    row: JobRow | None = None


@dataclass(frozen=True)
class JobMeta:
    """What the intent row records about a new job."""

    provider: str
    model: str
    fingerprint: str
    cacheable: bool
    params: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = None
    source_path: str | None = None


# --- who is working on a row ----------------------------------------------------------------

_active: set[str] = set()  # owner tokens of this process's runs in progress


_active_lock = threading.Lock()


def _new_owner() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_alive(owner: str | None, heartbeat: float | None, now: float) -> bool:
    """Is the run that owns a row still working on it? This process knows its own runs; another
    process on this host must exist and have touched the row lately; another host, only the latter."""
    if not owner:
        return False
    host, pid_text, _token = _split_owner(owner)
    if host == HOST and pid_text == str(os.getpid()):
        with _active_lock:
            return owner in _active
    if heartbeat is None or now - heartbeat > STALE_SECONDS:
        return False
    return host != HOST or _pid_exists(pid_text)


def _split_owner(owner: str) -> tuple[str, str, str]:
    host, pid, token = (owner.rsplit(":", 2) + ["", ""])[:3]
    return host, pid, token


def _pid_exists(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
