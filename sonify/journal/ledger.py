"""The spend ledger: what each job cost, kept in the journal's rows (jobs.py calls these inside its connections).

A job enters the ledger when its estimate is claimed against the budgets, before anything is uploaded: its row's
`spent_at` is set in the same SQLite transaction (BEGIN IMMEDIATE) that sums the ledger and checks the caps, so of
two processes racing to a cap one is counted and the other refused. It counts from then on — unless its submit was
never sent (the row stays INTENT, and is deleted when its run ends) — including a job that failed or was cancelled:
no provider says per task what it charged for those. Its figure is the measured one where the provider reports what
was used (`measured_usd`, with `measured`: what was counted and where it came from), else the estimate made before
the submit (`cost_usd`), else nothing (no price published: counted as $0).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import budget as budgets

# The jobs table's ledger columns (journal version 6), added to an older journal when it is opened.
COLUMNS = {"run_id": "TEXT", "spent_at": "REAL", "measured_usd": "REAL", "measured": "TEXT"}


SCHEMA = """
CREATE INDEX IF NOT EXISTS jobs_by_spend ON jobs(spent_at) WHERE spent_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS budget (         -- the caps saved from ComfyUI's settings (budget.py): the environment wins
    name TEXT PRIMARY KEY,                  -- the setting's variable, e.g. SONIFY_MAX_USD_PER_DAY
    usd REAL NOT NULL,
    saved_at REAL NOT NULL
);
"""


# A journal from before the ledger: its jobs that reached the provider (any row past INTENT, bar a task only
# fetched) count from when they were made, at their estimate.
BACKFILL = "UPDATE jobs SET spent_at = created_at WHERE spent_at IS NULL AND fingerprint IS NOT NULL AND status != ?"


Counts = Callable[[sqlite3.Row], bool]  # does a row with spent_at set count (its submit sent, or its run still alive)


_FIELDS = "id, spent_at, provider, model, task_id, status, cost_usd, measured_usd, measured, run_id, owner, heartbeat"


@dataclass(frozen=True)
class Entry:
    """One job in the ledger."""

    at: float  # when its estimate was claimed (time.time())
    provider: str
    model: str  # the provider's model id
    task_id: str | None
    status: str
    estimate_usd: float | None
    measured_usd: float | None
    measured: dict[str, Any] | None  # {"quantity", "unit", "from"}: what the measured figure counts
    run_id: str | None

    @property
    def usd(self) -> float | None:
        """The ledger's figure: measured, else estimated, else None (no price published)."""
        return self.measured_usd if self.measured_usd is not None else self.estimate_usd

    @property
    def basis(self) -> str | None:
        if self.measured_usd is not None:
            return "measured"
        return "estimate" if self.estimate_usd is not None else None

    @classmethod
    def of(cls, row: sqlite3.Row) -> Entry:
        return cls(row["spent_at"], row["provider"], row["model"], row["task_id"], row["status"], row["cost_usd"],
                   row["measured_usd"], json.loads(row["measured"]) if row["measured"] else None, row["run_id"])


def entries(db: sqlite3.Connection, since: float, counts: Counts) -> list[Entry]:
    """The jobs counted since `since`, oldest first."""
    rows = db.execute(f"SELECT {_FIELDS} FROM jobs WHERE spent_at >= ? ORDER BY spent_at", (since,)).fetchall()
    return [Entry.of(row) for row in rows if counts(row)]


def spent(db: sqlite3.Connection, now: float, run_id: str | None, counts: Counts,
          exclude: int | None = None) -> budgets.Spent:
    """What the ledger holds today, this month and for `run_id`, as of `now` (without the row `exclude`)."""
    day, month = budgets.day_start(now), budgets.month_start(now)
    rows = db.execute(f"SELECT {_FIELDS} FROM jobs WHERE spent_at >= ? OR (run_id = ? AND spent_at IS NOT NULL)",
                      (month, run_id)).fetchall()
    totals = {"day": 0.0, "month": 0.0, "run": 0.0}
    for row in rows:
        entry = Entry.of(row)
        if not counts(row) or entry.usd is None or row["id"] == exclude:
            continue
        totals["day"] += entry.usd if entry.at >= day else 0.0
        totals["month"] += entry.usd if entry.at >= month else 0.0
        totals["run"] += entry.usd if run_id is not None and entry.run_id == run_id else 0.0
    return budgets.Spent(**totals)


def claim(db: sqlite3.Connection, row_id: int, now: float, run_id: str | None, budget: budgets.Budget,
          estimate: float | None, what: str, counts: Counts) -> None:
    """Inside the caller's transaction: the caps checked against the ledger (BudgetExceeded), then the row counted
    (a row claimed before, by a run that stopped before its submit, is counted once)."""
    budgets.check(budget, spent(db, now, run_id, counts, exclude=row_id), estimate, what)
    db.execute("UPDATE jobs SET spent_at = ?, run_id = ?, updated_at = ? WHERE id = ?", (now, run_id, now, row_id))


def record_measured(db: sqlite3.Connection, provider: str, task_id: str, usd: float,
                    measured: Mapping[str, Any]) -> None:
    db.execute("UPDATE jobs SET measured_usd = ?, measured = ?, updated_at = ? WHERE provider = ? AND task_id = ?",
               (usd, json.dumps(dict(measured)), time.time(), provider, task_id))


def saved_budget(db: sqlite3.Connection) -> dict[str, float]:
    return {row["name"]: row["usd"] for row in db.execute("SELECT name, usd FROM budget")}


def save_budget(db: sqlite3.Connection, values: Mapping[str, float | None]) -> None:
    """Each setting given: saved, or (None) removed."""
    now = time.time()
    for name, usd in values.items():
        if usd is None:
            db.execute("DELETE FROM budget WHERE name = ?", (name,))
        else:
            db.execute("INSERT OR REPLACE INTO budget VALUES (?, ?, ?)", (name, usd, now))
