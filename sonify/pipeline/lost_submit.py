"""The words for a submit whose answer was lost: what the listing showed, how to find and fetch the task, and
that nothing is sent again on its own."""

from __future__ import annotations

import time

from ..catalog import ModelSpec


def _ambiguous_message(spec: ModelSpec, last_record: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last_record))
    return (
        f"An identical {spec.title} job was being submitted at {when} by a run that stopped before "
        f"{spec.provider} answered, so that job may exist (and be charged) although its task id was never "
        f"recorded. Check your {spec.provider} dashboard for it. Nothing was sent now; run again to submit "
        "anew (you will not be asked again)."
    )


def _clock(moment: float) -> str:
    """A time for a message: UTC, to the second (the providers' dashboards and listings use UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def _fetch_command(spec: ModelSpec, task_id: str) -> str:
    model = f" --model {spec.key}" if spec.provider == "fal" else ""  # fal's request ids do not name the model
    return f"python -m sonify fetch {spec.provider} {task_id}{model}"


def _still_unknown_note(spec: ModelSpec) -> str:
    """What a Cancel while a lost submit's task is looked for leaves behind."""
    return (f"the {spec.title} submit's answer was lost, so a {spec.provider} task may exist (and be charged); an "
            "identical run looks for it again before it submits anything")


def _unlisted_note(spec: ModelSpec, lost: str) -> str:
    """What the open journal row says of a lost submit whose task the listing did not show by the bound."""
    return (f"submit answer lost ({lost}); {spec.provider} listed no finished task from it by {_clock(time.time())}: "
            "it may be queued or running")


def _unlisted_message(spec: ModelSpec, since: float, until: float, lost: str, again: bool = False) -> str:
    """A submit without an answer whose task a finished-only listing (fal) did not show by the job's bound: what
    is known, how to find the task, and what an identical run does. Never that nothing was created."""
    find = (f"look on your {spec.provider} dashboard for a request of {spec.model_id} sent between {_clock(since)} and "
            f"{_clock(until)} (this machine's clock); `{_fetch_command(spec, 'REQUEST_ID')}` gets its result")
    if again:
        return (f"An identical {spec.title} job was submitted at {_clock(since)}, {lost}; {spec.provider} still "
                f"lists no finished request from it: it may never have been created, or still be queued. Nothing was "
                f"sent now. To find it, {find}. If there is none, run again to submit anew (you will not be asked "
                "again).")
    # `lost` ends at a semicolon: an echoed Authorization header in it is masked up to there, not beyond
    return (f"The {spec.title} submit was sent at {_clock(since)} and {lost}; {spec.provider} lists a request only "
            f"once it has finished, and by {_clock(time.time())} none from this submit had: it may still be queued or "
            f"running, and be charged. Nothing was submitted again. To find it, {find}. The journal keeps this job "
            "open: an identical run looks for it again first, and submits nothing without telling you.")


def _candidates_message(spec: ModelSpec, candidates: list[str], shared: bool = False) -> str:
    """Several listed tasks may be the lost submit's; or (`shared`) any may be another Sonify job's, whose submit was
    sent in the same seconds and has no answer recorded."""
    ids = ", ".join(candidates)
    fetch = "; ".join(f"`{_fetch_command(spec, task_id)}`" for task_id in candidates)
    tasks = f"{len(candidates)} task{'s' if len(candidates) > 1 else ''}"
    whose = ("this job's or another Sonify job's (one of its submits was sent in the same seconds and has no answer "
             "recorded)" if shared else "this job's (none recorded by another Sonify job)")
    return (f"The {spec.title} submit's answer was lost, and {spec.provider} lists {tasks} that may be {whose}: "
            f"{ids}. Nothing was submitted again. Get the result of the right one with {fetch} — the next identical "
            "run submits anew.")
