"""One run's handle on its journal row (Ticket): claim, record each step, deliver; and one flight per
fingerprint in this process, so identical runs wait for each other instead of paying twice."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .. import budget as budgets
from ..errors import ConfigurationError
from ..waiter import Waiter
from .claims import HEARTBEAT_SECONDS, Claim, ClaimKind, JobMeta, JobRow, Status, _active, _active_lock, _new_owner
from .db import RETENTION_SECONDS, Journal, _state_text, guarded, open_journal

log = logging.getLogger("sonify")


JOIN_POLL_SECONDS = 0.25  # how often a run waiting for an identical job elsewhere looks again


# --- one run's handle ------------------------------------------------------------------------


class Ticket:
    """One run's view of its journal row. Every method is safe: a journal error is logged once and
    the run goes on without the journal (so it cannot resume or cache, but it never fails for it)."""

    owns_task = True  # the run's task: cancelled with the run, its row kept up to date

    def __init__(self, journal: Journal | None, meta: JobMeta) -> None:
        self.meta = meta
        self.owner = _new_owner()
        self.row: JobRow | None = None
        self._journal = journal
        self._status: Status | None = None
        self._problem = ""  # why the journal was given up, for record_submitting's message
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None

    @property
    def row_id(self) -> int | None:
        return self.row.id if self.row is not None else None

    def _do(self, what: str, call: Callable[[Journal], Any], default: Any = None) -> Any:
        if self._journal is None:
            return default
        try:
            return call(self._journal)
        except (sqlite3.Error, OSError) as exc:
            log.warning("Sonify's job journal failed while %s (%s); this job goes on without it", what, exc)
            self._journal, self._problem = None, str(exc)
            return default

    def claim(self, waiter: Waiter, on_busy: Callable[[JobRow], None]) -> Claim:
        """Claim the fingerprint; while an identical job runs in another live run, wait for it."""
        self._live()
        while True:
            claim = self._do("claiming the job", lambda j: j.claim(self.owner, self.meta), Claim(ClaimKind.NEW))
            if claim.kind != ClaimKind.BUSY:
                break
            on_busy(claim.row)
            waiter.sleep(JOIN_POLL_SECONDS)
        if claim.row is not None and claim.kind != ClaimKind.BUSY:
            self.row = claim.row
            self._status = claim.row.status
            self._start_heartbeat()
        return claim

    def _live(self) -> None:
        """This run is live from now, before its row exists: an identical claim must never take it for dead, nor
        the ledger its claimed row."""
        with _active_lock:
            _active.add(self.owner)

    def record(self, status: Status | None = None, **fields: Any) -> None:
        """Update the row (status and/or fields); a status already recorded is not written again."""
        if status is not None and status != self._status:
            fields["status"] = self._status = status
        if self.row_id is not None and fields:
            self._do(f"recording {status or ', '.join(fields)}", lambda j: j.update(self.row_id, **fields))

    @property
    def status(self) -> Status | None:
        return self._status

    def record_submitting(self, request: dict[str, Any] | None = None) -> None:
        """SUBMITTING and the submit as sent (`request`: {body, sent_at}, which finds its task if the answer
        is lost), written — or ConfigurationError (see write_or_refuse)."""
        self.write_or_refuse(lambda journal, row_id: journal.update(row_id, status=Status.SUBMITTING, request=request))
        self._status = Status.SUBMITTING

    def claim_spend(self, estimate: float | None, run_id: str | None, budget: budgets.Budget, what: str) -> None:
        """Before anything is uploaded: the job counted in the ledger within the caps (BudgetExceeded, naming the cap),
        atomically with every process sharing the journal — or ConfigurationError (see write_or_refuse)."""
        self.write_or_refuse(lambda journal, row_id: journal.claim_spend(row_id, estimate, run_id, budget, what))

    def write_or_refuse(self, write: Callable[[Journal, int], Any]) -> Any:
        """`write(journal, row id)`, which must be recorded before the job goes on — or ConfigurationError: a job
        the journal cannot record is not submitted, since a crash during it would strand a paid task and the next
        run would pay again (and its spend would be counted nowhere)."""
        self._problem = self._problem or ("it could not be opened" if self._journal is None else "")
        if self.row_id is not None and self._journal is not None:
            try:
                return write(self._journal, self.row_id)
            except (sqlite3.Error, OSError) as exc:
                self._problem = str(exc)
                self._journal = None
        raise ConfigurationError(
            f"Sonify's job journal (in {_state_text()}) cannot record this job, so it was not "
            f"submitted: {self._problem or 'it failed earlier in this run'}. Nothing was sent or paid; free disk "
            "space or fix the state folder, then run again."
        )

    def _start_heartbeat(self) -> None:
        self._heart = threading.Thread(target=self._beat, name="sonify-journal-heartbeat", daemon=True)
        self._heart.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            journal = self._journal
            if journal is None or self.row_id is None:
                return
            try:
                journal.touch(self.row_id, self.owner)
            except (sqlite3.Error, OSError) as exc:
                log.debug("journal heartbeat skipped: %s", exc)

    def close(self) -> None:
        """The run ends: stop the heartbeat and give the row up."""
        self._stop.set()
        if self._heart is not None:
            self._heart.join()
        with _active_lock:
            _active.discard(self.owner)
        if self.row_id is not None:
            self._do("closing the job", lambda j: j.release(self.row_id, self.owner))

    def owned_elsewhere(self, task_id: str) -> bool:
        """Another journal row has this task: it is not the one this run's lost submit created."""
        row = self._do("looking up a task", lambda j: j.find_task(self.meta.provider, task_id))
        return row is not None and row.id != self.row_id

    def unanswered_elsewhere(self, since: float, until: float) -> bool:
        """Another row of this model sent a submit between `since` and `until` (time.time()) and has no task id
        recorded yet (or never will): a listed task may be its. A journal that cannot be read answers yes."""
        count = self._do("looking up other submits",
                         lambda j: j.unanswered_submits(self.meta.provider, self.meta.model, since, until, self.row_id), 1)
        return count > 0

    # --- uploads (same safety) ---

    def upload_url(self, endpoint: str, media_key: str, max_age: float = RETENTION_SECONDS) -> str | None:
        """An upload of `media_key` to `endpoint` made less than `max_age` seconds ago (the provider's own
        reuse time; never more than RETENTION_SECONDS)."""
        return self._do("looking up an upload",
                        lambda j: j.upload_url(self.meta.provider, endpoint, media_key, max_age))

    def remember_upload(self, endpoint: str, media_key: str, url: str, size: int) -> None:
        self._do("recording an upload",
                 lambda j: j.remember_upload(self.meta.provider, endpoint, media_key, url, size))

    def forget_upload(self, endpoint: str, media_key: str) -> None:
        self._do("forgetting an upload", lambda j: j.forget_upload(self.meta.provider, endpoint, media_key))


class FetchedTask:
    """A fetch's view of a task: the row of the run that made it, or none. A fetch only looks, so it
    writes nothing until it has the result, then records it (adding a row if there was none), and marks it
    delivered once the result was verified and handed over (`record(delivered=1)`)."""

    owns_task = False

    def __init__(self, provider: str, model: str, task_id: str, row: JobRow | None) -> None:
        self.provider, self.model, self.task_id, self.row = provider, model, task_id, row
        self._status = row.status if row is not None else None
        self._result: dict[str, Any] = {}  # outputs and extra, from the COMPLETED record

    @property
    def status(self) -> Status | None:
        return self._status

    def record(self, status: Status | None = None, **fields: Any) -> None:
        if status is not None:
            self._status = status
        if status == Status.COMPLETED:
            self._result = fields
        if "result_path" in fields:
            outputs, extra = self._result.get("outputs", []), self._result.get("extra", {})
            guarded("recording the fetched result", lambda journal: journal.record_fetched(
                self.provider, self.model, self.task_id, outputs, extra, fields["result_path"]))
        if fields.get("delivered"):
            guarded("recording the delivery", lambda journal: journal.mark_delivered(self.provider, self.task_id))


# --- identical runs in this process ----------------------------------------------------------

_flights: dict[str, list] = {}  # fingerprint -> [lock, number of runs holding or waiting]


_flights_lock = threading.Lock()


@contextlib.contextmanager
def flight(fingerprint_: str, waiter: Waiter, on_wait: Callable[[], None]) -> Iterator[None]:
    """One run at a time per fingerprint in this process; the others wait (cancellably) and then
    find the first one's stored result."""
    with _flights_lock:
        entry = _flights.setdefault(fingerprint_, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with waiter.holding(entry[0], on_wait):
            yield
    finally:
        with _flights_lock:
            entry[1] -= 1
            if entry[1] == 0:
                del _flights[fingerprint_]


@contextlib.contextmanager
def ticket(meta: JobMeta, waiter: Waiter, on_wait: Callable[[], None]) -> Iterator[Ticket]:
    """A Ticket for one run, serialised with identical cacheable runs of this process."""
    serialise = flight(meta.fingerprint, waiter, on_wait) if meta.cacheable else contextlib.nullcontext()
    with serialise:
        handle = Ticket(open_journal(), meta)
        try:
            yield handle
        finally:
            handle.close()
