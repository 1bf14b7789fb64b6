"""One run, top to bottom: plan -> uploads -> remote job (claim, submit, wait, download) -> deliver, and
several parts at once (takes x windows). Read flow.py first."""

from .deliver import deliver, output_name
from .flow import Result, fetch, run
from .job import no_task_reason, run_times, wait_limits
from .plan import Plan, file_fingerprint, prepare
from .several import failed_text, run_key
from .types import AudioInput, ResultBounds

__all__ = [
    "AudioInput",
    "Plan",
    "Result",
    "ResultBounds",
    "deliver",
    "failed_text",
    "fetch",
    "file_fingerprint",
    "no_task_reason",
    "output_name",
    "prepare",
    "run",
    "run_key",
    "run_times",
    "wait_limits",
]
