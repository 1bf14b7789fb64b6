"""The job journal (one SQLite file in the state folder): claims before a submit, task ids before a wait,
results kept, and the measurements later runs learn from. It keeps a paid result from being lost or paid twice."""

from .claims import JobMeta, JobRow, Status
from .db import (
    JOURNAL_FILE,
    MEASUREMENTS_KEPT,
    RESULTS_DIR,
    RUN_TIMES_KEPT,
    SCHEMA_VERSION,
    Journal,
    drawn_seeds,
    forget_seeds,
    guarded,
    open_journal,
    record_measured,
    results_dir,
)
from .fingerprints import digest_of, fingerprint, hash_array, hash_file
from .learned import RunTimeStore, UplinkStore
from .ledger import save_budget, saved_budget, spent
from .tickets import FetchedTask, Ticket, ticket

__all__ = [
    "JOURNAL_FILE",
    "MEASUREMENTS_KEPT",
    "RESULTS_DIR",
    "RUN_TIMES_KEPT",
    "SCHEMA_VERSION",
    "FetchedTask",
    "JobMeta",
    "JobRow",
    "Journal",
    "RunTimeStore",
    "Status",
    "Ticket",
    "UplinkStore",
    "digest_of",
    "drawn_seeds",
    "fingerprint",
    "forget_seeds",
    "guarded",
    "hash_array",
    "hash_file",
    "open_journal",
    "record_measured",
    "results_dir",
    "save_budget",
    "saved_budget",
    "spent",
    "ticket",
]
