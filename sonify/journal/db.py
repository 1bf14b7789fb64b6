"""The job journal and the caches that keep a paid result from being lost or paid for twice.

One SQLite file in the state folder (`jobs.sqlite3`, WAL mode) records every job: its intent before
the submit (provider, model, a fingerprint of what was asked for), its task id before the wait, its
status changes, output URLs and the downloaded result file (kept in `results/`). From it:

- resume: a run whose fingerprint matches a job that was submitted but never delivered (the process
  died, timed out, or was cancelled while the remote job ran on) waits on that task instead of
  submitting again;
- result cache: with a fixed seed (>= 0), a completed job's stored result is reused without a request;
- upload cache: media uploaded to the same provider endpoint within RETENTION_SECONDS is not uploaded
  again;
- a run's drawn seeds: the seeds drawn for the takes of a seed −1 run, kept under the run's own fingerprint
  until it delivered every take, so a re-run of the same inputs resumes or reuses each take (pipeline/several.py);
- one submit for identical concurrent runs: a per-fingerprint lock between threads, and between
  processes an "intent" row claimed inside BEGIN IMMEDIATE (the other run waits for it).

A journal that cannot be used (any SQLite or file error) is logged once (logger "sonify") and the job goes
on without it; a usable one is a gate too: a row whose submit may have created a task stops an identical run
from submitting again. Rows hold ids, URLs, parameters and paths — never a key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import budget as budgets
from .. import settings
from ..redact import redact
from . import ledger
from .claims import AMBIGUOUS, OPEN, RESUMABLE, Claim, ClaimKind, JobMeta, JobRow, Status, owner_alive

log = logging.getLogger("sonify")


JOURNAL_FILE = "jobs.sqlite3"


JOURNAL_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside the journal


RESULTS_DIR = "results"


RETENTION_SECONDS = 6 * 86400  # WaveSpeed keeps tasks and uploads ~7 days, fal >= 7: a day's margin


BUSY_TIMEOUT_MS = 2000  # a locked journal delays a job at most this long per statement


SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT,                       -- NULL for a task known only from `fetch`
    provider TEXT NOT NULL,
    model TEXT NOT NULL,                    -- the provider's model id
    task_id TEXT,                           -- recorded right after the submit, before the wait
    status TEXT NOT NULL,
    cacheable INTEGER NOT NULL DEFAULT 0,   -- fixed seed: the result may be reused
    delivered INTEGER NOT NULL DEFAULT 0,   -- a run (or fetch) returned the result
    params TEXT NOT NULL DEFAULT '{}',      -- the parameters sent (no media URLs, never a key)
    cost_usd REAL,                          -- the estimate shown before the submit
    source_path TEXT,                       -- the user's source file, when it was a file
    outputs TEXT NOT NULL DEFAULT '[]',     -- the provider's result URLs
    extra TEXT NOT NULL DEFAULT '{}',       -- other result fields (fal's prompt)
    result_path TEXT,                       -- the downloaded provider output in results/
    error TEXT,
    owner TEXT,                             -- host:pid:run of the run working on it; NULL when none
    heartbeat REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    request TEXT,                           -- the submit as sent {body, sent_at}: finds its task if the answer is lost
    run_id TEXT,                            -- the run (node run, command, batch) it was made for: its per-run cap
    spent_at REAL,                          -- when its estimate was counted in the ledger (ledger.py); NULL: not
    measured_usd REAL,                      -- what the provider reported it used, priced by the catalog's rule
    measured TEXT                           -- {quantity, unit, from}: what that figure counts
);
CREATE INDEX IF NOT EXISTS jobs_by_fingerprint ON jobs(fingerprint);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_task ON jobs(provider, task_id) WHERE task_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS uploads (
    provider TEXT NOT NULL,
    endpoint TEXT NOT NULL,                 -- the provider's base URL: the emulator's files are not WaveSpeed's
    media_key TEXT NOT NULL,                -- hash of what the uploaded file was made from
    url TEXT NOT NULL,
    size INTEGER,
    uploaded_at REAL NOT NULL,
    PRIMARY KEY (provider, endpoint, media_key)
);
CREATE TABLE IF NOT EXISTS run_times (      -- when polled jobs ended (providers/schedule.py)
    key TEXT NOT NULL,                      -- endpoint and model
    after REAL NOT NULL,                    -- seconds from the submit to the last poll that saw it running
    by REAL NOT NULL,                       -- ... and to the first poll that saw it done
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS run_times_by_key ON run_times(key, at);
CREATE TABLE IF NOT EXISTS uplinks (        -- measured upload rates (sonify/uplink.py)
    key TEXT NOT NULL,                      -- provider and endpoint
    bytes_per_second REAL NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS uplinks_by_key ON uplinks(key, at);
CREATE TABLE IF NOT EXISTS proxy_speeds (   -- how fast this machine makes upload proxies (sonify/uplink.py)
    key TEXT NOT NULL,                      -- the proxy rule
    seconds_per_mpf REAL NOT NULL,          -- encode seconds per source megapixel-frame (every frame is decoded)
    bytes_per_mpf REAL,                     -- proxy bytes per proxy megapixel-frame (NULL: stopped before its end)
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS proxy_speeds_by_key ON proxy_speeds(key, at);
CREATE TABLE IF NOT EXISTS run_seeds (      -- seeds drawn for a seed -1 run's takes (takes.py)
    key TEXT PRIMARY KEY,                   -- the run's own fingerprint (takes.run_key)
    seeds TEXT NOT NULL,                    -- JSON list, one per take
    drawn_at REAL NOT NULL
);
"""


SCHEMA_VERSION = 6  # a journal of an older version gets the tables and columns it lacks when opened


ADDED_COLUMNS = {"request": "TEXT", **ledger.COLUMNS}  # jobs columns newer than version 1


RUN_TIMES_KEPT = 20  # per key; older ones are deleted


MEASUREMENTS_KEPT = 20  # uplink rates and proxy speeds per key; older ones are deleted


# --- the journal -----------------------------------------------------------------------------


class Journal:
    """The SQLite journal at `path`. Thread-safe: every call uses its own short-lived connection.
    Raises sqlite3.Error / OSError; callers go through Ticket or the guarded helpers below."""

    def __init__(self, path: Path) -> None:
        self.path = path
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._set_up()
                return
            except sqlite3.OperationalError as exc:
                # Switching a new file to WAL does not wait for a busy lock: two processes creating
                # the journal at once collide here. Bounded retry, like the busy timeout.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _set_up(self) -> None:
        with self._connect() as db:
            ready = db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION
            if ready and db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return  # nothing to write: opening never waits for another writer
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.debug("journal %s is in %s mode", self.path, mode)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.executescript(SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in present:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
            db.executescript(ledger.SCHEMA)
            if 0 < version < 6:
                db.execute(ledger.BACKFILL, (Status.INTENT,))
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # last: a journal half set up is set up again

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # SQLite follows links: a journal file (or its -wal, -shm) planted as one would be written anywhere.
        settings.refuse_links(self.path, *(f"{self.path}{suffix}" for suffix in JOURNAL_SIDE_FILES))
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA synchronous=FULL")  # a task id written is a task id kept
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: one writer at a time across threads and processes, decided atomically."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- runs ---

    def claim(self, owner: str, meta: JobMeta) -> Claim:
        """Decide atomically what a run with this fingerprint does (see Claim), recording it."""
        now = time.time()
        with self._transaction() as db:
            rows = [JobRow.from_sql(r) for r in db.execute(
                "SELECT * FROM jobs WHERE fingerprint = ? ORDER BY id DESC", (meta.fingerprint,))]
            alive = {r.id: owner_alive(r.owner, r.heartbeat, now) for r in rows}
            claim = _decide(rows, alive, meta.cacheable, now)
            if claim.kind == ClaimKind.RESUME or (claim.kind == ClaimKind.STORED and not alive[claim.row.id]):
                status = Status.SUBMITTED if claim.row.status == Status.DETACHED else claim.row.status
                _update(db, claim.row.id, owner=owner, heartbeat=now, status=status, source_path=meta.source_path)
                claim = Claim(claim.kind, self._row(db, claim.row.id))
            elif claim.kind == ClaimKind.AMBIGUOUS:  # this run asks the provider what came of that submit
                _update(db, claim.row.id, owner=owner, heartbeat=now)
                claim = Claim(claim.kind, self._row(db, claim.row.id))
            elif claim.kind == ClaimKind.NEW:
                stale = [r.id for r in rows if r.status == Status.INTENT and not alive[r.id]]
                db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in stale])
                row_id = db.execute(
                    "INSERT INTO jobs (fingerprint, provider, model, status, cacheable, params, cost_usd, source_path,"
                    " owner, heartbeat, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (meta.fingerprint, meta.provider, meta.model, Status.INTENT, int(meta.cacheable), json.dumps(meta.params),
                     meta.cost_usd, meta.source_path, owner, now, now, now),
                ).lastrowid
                claim = Claim(ClaimKind.NEW, self._row(db, row_id))
        return claim

    def waiting_for(self, fingerprint: str, cacheable: bool) -> JobRow | None:
        """The row a claim of this fingerprint would reuse (STORED) or resume (RESUME) now, without claiming it."""
        now = time.time()
        with self._connect() as db:
            rows = [JobRow.from_sql(r) for r in db.execute(
                "SELECT * FROM jobs WHERE fingerprint = ? ORDER BY id DESC", (fingerprint,))]
        claim = _decide(rows, {r.id: owner_alive(r.owner, r.heartbeat, now) for r in rows}, cacheable, now)
        return claim.row if claim.kind in (ClaimKind.STORED, ClaimKind.RESUME) else None

    def update(self, row_id: int, **fields: Any) -> None:
        with self._connect() as db:
            _update(db, row_id, **fields)

    def release(self, row_id: int, owner: str) -> None:
        """The run ends: the row has no owner any more (an intent that never reached the submit goes)."""
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE id = ? AND owner = ? AND status = ?", (row_id, owner, Status.INTENT))
            db.execute("UPDATE jobs SET owner = NULL, updated_at = ? WHERE id = ? AND owner = ?",
                       (time.time(), row_id, owner))

    def touch(self, row_id: int, owner: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE jobs SET heartbeat = ? WHERE id = ? AND owner = ?", (time.time(), row_id, owner))

    # --- lookups ---

    def get(self, row_id: int) -> JobRow | None:
        with self._connect() as db:
            return self._row(db, row_id)

    def find_task(self, provider: str, task_id: str) -> JobRow | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE provider = ? AND task_id = ?", (provider, task_id)).fetchone()
        return JobRow.from_sql(row) if row else None

    def unanswered_submits(self, provider: str, model: str, since: float, until: float, but: int | None) -> int:
        """Rows of `model` other than row `but` whose submit was sent between `since` and `until` (time.time()) and
        has no task id recorded (its answer still to come, or lost): a task the listing shows then may be theirs."""
        unanswered = (Status.SUBMITTING, Status.UNKNOWN, Status.UNKNOWN_REPORTED)
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs WHERE provider = ? AND model = ? AND task_id IS NULL AND request IS "
                              "NOT NULL AND status IN (?, ?, ?)", (provider, model, *unanswered)).fetchall()
        sent = [(row.request or {}).get("sent_at") for row in map(JobRow.from_sql, rows) if row.id != but]
        return sum(isinstance(at, (int, float)) and since <= at <= until for at in sent)

    def recent(self, limit: int = 50) -> list[JobRow]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [JobRow.from_sql(r) for r in rows]

    def record_fetched(self, provider: str, model: str, task_id: str, outputs: list[str], extra: dict[str, Any],
                       result_path: str) -> None:
        """A result fetched by task id: update its row, or add one (without fingerprint) if none. Not yet
        delivered: a result refused once downloaded leaves a run's row resumable (`mark_delivered` once it is not)."""
        now = time.time()
        fields = {"status": Status.COMPLETED, "outputs": outputs, "extra": extra, "result_path": result_path,
                  "error": None}
        with self._transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE provider = ? AND task_id = ?", (provider, task_id)).fetchone()
            if row is None:
                row_id = db.execute(
                    "INSERT INTO jobs (provider, model, task_id, status, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (provider, model, task_id, Status.COMPLETED, now, now)).lastrowid
            else:
                row_id = row["id"]
            _update(db, row_id, **fields)

    def mark_delivered(self, provider: str, task_id: str) -> None:
        """The task's result was handed to the user (a fetch's, once verified)."""
        with self._connect() as db:
            db.execute("UPDATE jobs SET delivered = 1, updated_at = ? WHERE provider = ? AND task_id = ?",
                       (time.time(), provider, task_id))

    def would_submit(self, fingerprint_: str, cacheable: bool) -> bool:
        """Would a claim of this fingerprint now send a new job (NEW, or AMBIGUOUS: it may), rather than reuse,
        resume or join one? (A run's spend checked before its claims: a stored take costs nothing.)"""
        now = time.time()
        with self._connect() as db:
            rows = [JobRow.from_sql(r) for r in db.execute(
                "SELECT * FROM jobs WHERE fingerprint = ? ORDER BY id DESC", (fingerprint_,))]
        alive = {r.id: owner_alive(r.owner, r.heartbeat, now) for r in rows}
        return _decide(rows, alive, cacheable, now).kind in (ClaimKind.NEW, ClaimKind.AMBIGUOUS)

    @staticmethod
    def _row(db: sqlite3.Connection, row_id: int) -> JobRow | None:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (row_id,)).fetchone()
        return JobRow.from_sql(row) if row else None

    # --- uploads ---

    def upload_url(self, provider: str, endpoint: str, media_key: str,
                   max_age: float = RETENTION_SECONDS) -> str | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT url FROM uploads WHERE provider = ? AND endpoint = ? AND media_key = ? AND uploaded_at > ?",
                (provider, endpoint, media_key, time.time() - min(max_age, RETENTION_SECONDS))).fetchone()
        return row["url"] if row else None

    def remember_upload(self, provider: str, endpoint: str, media_key: str, url: str, size: int) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
                       (provider, endpoint, media_key, url, size, time.time()))

    def forget_upload(self, provider: str, endpoint: str, media_key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM uploads WHERE provider = ? AND endpoint = ? AND media_key = ?",
                       (provider, endpoint, media_key))

    # --- the spend ledger (ledger.py) ---

    @staticmethod
    def _counts(now: float) -> ledger.Counts:
        """A row in the ledger counts once its submit may have been sent, or while the run that claimed it lives."""
        return lambda row: row["status"] != Status.INTENT or owner_alive(row["owner"], row["heartbeat"], now)

    def claim_spend(self, row_id: int, estimate: float | None, run_id: str | None, budget: budgets.Budget,
                    what: str) -> None:
        """The caps checked against the ledger and the row counted in it, in one transaction (BudgetExceeded)."""
        now = time.time()
        with self._transaction() as db:
            ledger.claim(db, row_id, now, run_id, budget, estimate, what, self._counts(now))

    def add_spend(self, provider: str, model: str, owner: str, estimate: float | None, run_id: str | None,
                  budget: budgets.Budget, what: str) -> JobRow:
        """A job without a row of its own (a Temporal clip's: its workflow's history is its record), about to be
        submitted, checked and counted the same way: a new SUBMITTING row without fingerprint, owned by `owner`;
        nothing is added when refused."""
        now = time.time()
        with self._transaction() as db:
            row_id = db.execute(
                "INSERT INTO jobs (provider, model, status, cost_usd, owner, heartbeat, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (provider, model, Status.SUBMITTING, estimate, owner, now, now, now),
            ).lastrowid
            ledger.claim(db, row_id, now, run_id, budget, estimate, what, self._counts(now))
            return self._row(db, row_id)

    def spent(self, run_id: str | None = None) -> budgets.Spent:
        now = time.time()
        with self._connect() as db:
            return ledger.spent(db, now, run_id, self._counts(now))

    def spend_entries(self, since: float) -> list[ledger.Entry]:
        now = time.time()
        with self._connect() as db:
            return ledger.entries(db, since, self._counts(now))

    def record_measured(self, provider: str, task_id: str, usd: float, measured: dict[str, Any]) -> None:
        with self._connect() as db:
            ledger.record_measured(db, provider, task_id, usd, measured)

    def saved_budget(self) -> dict[str, float]:
        with self._connect() as db:
            return ledger.saved_budget(db)

    def save_budget(self, values: dict[str, float | None]) -> None:
        with self._transaction() as db:
            ledger.save_budget(db, values)

    # --- a run's drawn seeds ---

    def seeds(self, key: str, draw: Callable[[], list[int]], valid: Callable[[Any], bool]) -> tuple[list[int], bool]:
        """The seeds kept under `key` (drawn less than RETENTION_SECONDS ago, and `valid`), or those `draw()` gives,
        kept now — decided in one transaction, so identical runs starting together agree. (seeds, reused)."""
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM run_seeds WHERE drawn_at < ?", (now - RETENTION_SECONDS,))
            row = db.execute("SELECT seeds FROM run_seeds WHERE key = ?", (key,)).fetchone()
            if row is not None:
                kept = json.loads(row["seeds"])
                if valid(kept):
                    return kept, True
            seeds = draw()
            db.execute("INSERT OR REPLACE INTO run_seeds VALUES (?, ?, ?)", (key, json.dumps(seeds), now))
        return seeds, False

    def forget_seeds(self, key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM run_seeds WHERE key = ?", (key,))

    # --- run times ---

    def run_times(self, key: str, limit: int) -> list[tuple[float, float]]:
        """The newest `limit` (after, by) pairs of `key`, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT after, by FROM run_times WHERE key = ? ORDER BY at DESC, rowid DESC LIMIT ?",
                              (key, limit)).fetchall()
        return [(row["after"], row["by"]) for row in reversed(rows)]

    def record_run_time(self, key: str, bracket: tuple[float, float]) -> None:
        self._append("run_times", key, bracket, RUN_TIMES_KEPT)

    # --- what uploads measured ---

    def uplink_rates(self, key: str, limit: int, since: float) -> list[float]:
        """The newest `limit` upload rates (bytes/s) of `key` measured after `since` (time.time())."""
        return [row[0] for row in self._newest("uplinks", "bytes_per_second", key, limit, since)]

    def record_uplink(self, key: str, bytes_per_second: float) -> None:
        self._append("uplinks", key, (bytes_per_second,), MEASUREMENTS_KEPT)

    def proxy_speeds(self, key: str, limit: int) -> list[tuple[float, float | None]]:
        """The newest `limit` (seconds per source megapixel-frame, bytes per proxy megapixel-frame or None) of
        `key`."""
        return [(row[0], row[1]) for row in self._newest("proxy_speeds", "seconds_per_mpf, bytes_per_mpf", key, limit, 0.0)]

    def record_proxy_speed(self, key: str, seconds_per_mpf: float, bytes_per_mpf: float | None) -> None:
        self._append("proxy_speeds", key, (seconds_per_mpf, bytes_per_mpf), MEASUREMENTS_KEPT)

    def _newest(self, table: str, columns: str, key: str, limit: int, since: float) -> list[sqlite3.Row]:
        with self._connect() as db:
            return db.execute(f"SELECT {columns} FROM {table} WHERE key = ? AND at > ? ORDER BY at DESC, rowid DESC"
                              " LIMIT ?", (key, since, limit)).fetchall()

    def _append(self, table: str, key: str, values: tuple[float | None, ...], kept: int) -> None:
        """A measurement row (key, values..., now); only the newest `kept` of the key stay."""
        marks = ", ".join("?" * (len(values) + 2))
        with self._connect() as db:
            db.execute(f"INSERT INTO {table} VALUES ({marks})", (key, *values, time.time()))
            db.execute(f"DELETE FROM {table} WHERE key = ? AND rowid NOT IN"
                       f" (SELECT rowid FROM {table} WHERE key = ? ORDER BY at DESC, rowid DESC LIMIT ?)",
                       (key, key, kept))


def _decide(rows: list[JobRow], alive: dict[int, bool], cacheable: bool, now: float) -> Claim:
    """The claim rules, newest row first (see Status in claims.py)."""
    for r in rows:
        if r.stored_result() and (cacheable or (not r.delivered and not alive[r.id])):
            return Claim(ClaimKind.STORED, r)
    if cacheable:
        for r in rows:
            if alive[r.id] and (r.status in OPEN or (r.status == Status.COMPLETED and not r.delivered)):
                return Claim(ClaimKind.BUSY, r)
    for r in rows:
        fresh = now - r.created_at < RETENTION_SECONDS
        wanted = not r.delivered or (cacheable and r.status == Status.COMPLETED)  # a cached result whose file went
        if r.task_id and r.status in RESUMABLE and wanted and fresh and not alive[r.id]:
            return Claim(ClaimKind.RESUME, r)
    for r in rows:
        if r.status in AMBIGUOUS and not r.task_id and not alive[r.id]:
            return Claim(ClaimKind.AMBIGUOUS, r)
    return Claim(ClaimKind.NEW)


def _update(db: sqlite3.Connection, row_id: int, **fields: Any) -> None:
    values = {k: json.dumps(v) if k in ("params", "outputs", "extra", "request", "measured") else v
              for k, v in fields.items()}
    for name in ("error", "outputs", "extra"):  # what the provider answered may echo a key
        if isinstance(values.get(name), str):
            values[name] = redact(values[name])
    values["updated_at"] = time.time()
    assignments = ", ".join(f"{name} = ?" for name in values)
    db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), row_id))


# --- opening it, safely ----------------------------------------------------------------------

_journals: dict[Path, Journal] = {}


_journals_lock = threading.Lock()


def open_journal() -> Journal | None:
    """The state folder's journal, or None (after a warning) when it cannot be used. An unreadable
    file is moved aside (kept for inspection) and a new journal started."""
    try:
        path = settings.state_dir() / JOURNAL_FILE
    except OSError as exc:
        log.warning("Sonify's state folder is not usable (%s); this job runs without its journal", exc)
        return None
    with _journals_lock:
        if path in _journals:
            return _journals[path]
        journal = _open(path)
        if journal is not None:
            _journals[path] = journal
        return journal


def _open(path: Path) -> Journal | None:
    try:
        return Journal(path)
    except (sqlite3.OperationalError, settings.UnsafeState) as exc:  # locked, read-only, full, a link: left alone
        log.warning("Sonify's job journal %s is unavailable (%s); this job runs without it", path, exc)
        return None
    except (sqlite3.DatabaseError, OSError) as exc:
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        log.warning("Sonify's job journal %s is unreadable (%s); moved it to %s and started a new one",
                    path, exc, aside)
        try:
            os.replace(path, aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return Journal(path)
        except (sqlite3.Error, OSError) as again:
            log.warning("Sonify could not start a new job journal (%s); this job runs without it", again)
            return None


def guarded(what: str, call: Callable[[Journal], Any], default: Any = None) -> Any:
    """`call(journal)`, or `default` (after a warning) when the journal is missing or fails."""
    journal = open_journal()
    if journal is None:
        return default
    try:
        return call(journal)
    except (sqlite3.Error, OSError) as exc:
        log.warning("Sonify's job journal failed while %s (%s); going on without it", what, exc)
        return default


def _state_text() -> str:
    try:
        return str(settings.state_dir())
    except OSError as exc:
        return f"unusable: {exc}"


def drawn_seeds(key: str, draw: Callable[[], list[int]], valid: Callable[[Any], bool]) -> list[int]:
    """A run's seeds, kept in the journal under `key` (Journal.seeds); without a usable journal, `draw()`'s."""
    def kept(journal: Journal) -> list[int]:
        seeds, reused = journal.seeds(key, draw, valid)
        if reused:
            log.info("the seeds %s of an earlier run of these inputs, which did not deliver every take, are used again",
                     seeds)
        return seeds

    found = guarded("keeping the drawn seeds", kept)
    return found if found is not None else draw()


def record_measured(provider: str, task_id: str, usd: float, measured: dict[str, Any]) -> None:
    """What the provider reported a task used, priced (ledger.py), on the task's row if the journal has one."""
    guarded("recording a measured cost", lambda journal: journal.record_measured(provider, task_id, usd, measured))


def forget_seeds(key: str) -> None:
    """The run delivered every take: its next run draws new seeds."""
    guarded("forgetting the drawn seeds", lambda journal: journal.forget_seeds(key))


def results_dir(fallback: Path) -> Path:
    """Where downloaded provider outputs are kept (state folder/results), or `fallback` if unusable."""
    try:
        path = settings.state_dir() / RESULTS_DIR
        return settings.private_folder(path, "Sonify's result store", hint="remove it", links=False)
    except OSError as exc:
        log.warning("cannot keep results in the state folder (%s); this result is not stored", exc)
        return fallback
