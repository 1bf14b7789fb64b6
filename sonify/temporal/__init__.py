"""Batches across machines on Temporal, by role: workflows (sandboxed: imports nothing of the engine),
activities, worker, starter. This file stays empty of imports for the workflow sandbox."""
