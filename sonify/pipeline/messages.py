"""Everything a user reads about a run: its progress text, the cost beside it, a cancel's note, and when it is
done, one done line (done_line) and one summary (done_text, and the node's summary)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

from .. import offers
from ..catalog import ModelSpec
from ..errors import (
    SonifyError,
)
from ..media import sound_check, windows
from ..providers.base import (
    QUEUED,
    RUNNING,
    CancelOutcome,
    TaskState,
    recovery_hint,
)
from . import spend
from .several import failed_text, seed_of, total_cost
from .types import (
    JobInfo,
    ProgressFn,
)


def cancel_note(provider: str, task_id: str, outcome: CancelOutcome) -> str:
    """What the user is told of the remote cancel (and the journal row's error says)."""
    if outcome == CancelOutcome.ACCEPTED:
        return f"{provider} accepted the cancel of task {task_id}"
    if outcome == CancelOutcome.FINISHED:
        return f"task {task_id} had already finished at {provider}, so it was not cancelled; its result is kept"
    return f"the cancel did not reach {provider}: task {task_id} may run on (and be charged)"


def attach_task(exc: SonifyError, spec: ModelSpec, info: JobInfo) -> None:
    """Once a task exists, every error names it and says how to fetch its result later."""
    if not info.task_id:
        return
    exc.task_id = exc.task_id or info.task_id
    if "python -m sonify fetch" not in str(exc):
        exc.args = (f"{exc} — {recovery_hint(spec.provider, info.task_id)}",)


# --- what the user reads while a job runs ---

def with_cost(text: str, cost: float | None) -> str:
    return text if cost is None else f"{text} · est. ${cost:.3f}"


def state_reporter(report: ProgressFn, cost: float | None, info: JobInfo) -> Callable[[TaskState, float], None]:
    def on_state(state: TaskState, elapsed: float) -> None:
        info.status = state.raw_status or state.status
        if state.status == QUEUED:
            where = f" (position {state.queue_position + 1})" if state.queue_position is not None else ""
            text = f"queued{where} {elapsed:.0f} s"
        elif state.status == RUNNING:
            text = f"processing {elapsed:.0f} s"
        else:
            text = state.status
        # The wait has no known end: approach 0.9 asymptotically (about half-way after 30 s).
        report(with_cost(text, cost), 0.1 + 0.8 * (1 - math.exp(-elapsed / 45)))

    return on_state


def label(take: int, takes: int, window: int, windows: int) -> str:
    """What a job's progress text starts with: "take 2 of 4", "window 3 of 5", or both."""
    words = ([f"take {take + 1} of {takes}"] if takes > 1 else []) + ([f"window {window + 1} of {windows}"]
                                                                       if windows > 1 else [])
    return " · ".join(words)


def what(takes: int, windows: int) -> str:
    """The run's jobs, named for a message: "4 takes", "3 windows", "6 jobs (2 takes × 3 windows)"."""
    if windows == 1:
        return f"{takes} takes"
    if takes == 1:
        return f"{windows} windows"
    return f"{takes * windows} jobs ({takes} takes × {windows} windows)"


def joined_info(spec: ModelSpec, infos: list[dict[str, Any]], seconds: dict[str, float],
                failed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The job info of N takes, `infos` in the order of `audio` (flagged takes last): the first one's (it is the
    one on the returned video; its number is `take`), with the cost of all of them, the run's seconds, the best
    take's number (`best`: the first with nothing flagged, None if every take is), and each take's seed, task id,
    status, cost, its sound's measures, its place in `audio` and why — a failed take's with its error, and listed in
    `failed` too."""
    failed = failed or []
    kept = ("sound", "position", "why", "windows")
    takes = [{"take": info["take"], "seed": seed_of(spec, info.get("params")), "task_id": info.get("task_id"),
              "status": info.get("status"), "cost_usd_estimate": info.get("cost_usd_estimate"),
              "cost_usd_measured": info.get("cost_usd_measured"), "cached": info.get("cached"),
              "seconds": info.get("seconds"),
              **{name: info[name] for name in kept if name in info}} for info in infos]
    best = next((info["take"] for info in infos if info.get("sound") and not info["sound"]["flags"]), None)
    takes = sorted(takes + failed, key=lambda t: t["take"])
    first = {name: value for name, value in infos[0].items() if name not in ("position", "why")}
    return {**first, "cost_usd_estimate": total_cost([t.get("cost_usd_estimate") for t in takes]),
            "cost_usd_measured": total_cost([t.get("cost_usd_measured") for t in takes]), "cost_measure": None,
            "cached": all(info.get("cached") for info in infos),  # stored, all of them: no new cost
            "variations": len(takes), "takes": takes, "best": best, "seconds": seconds,
            **({"failed": failed} if failed else {})}


EMULATOR_MARK = "emulator (synthetic sound)"  # before what the user reads of a sound the emulator made


def done_text(info: dict[str, Any], details: Iterable[str] = ()) -> str:
    """What a run says when it is done, from its job info (one job's, or the joined info of several): the done line
    (done_line), then `details`, each take's sound and each take that failed. The run's last progress text; the
    node's summary (summary) adds its details."""
    failed = [failed_text(f) for f in info.get("failed", [])]
    return "\n".join([done_line(info), *details, *sound_check.lines(info), *failed])


def done_line(info: dict[str, Any]) -> str:
    """The first line after a run, the same in the command's progress and on the node: how many jobs when several,
    how long and where the time went (stages of 0.05 s or more), and what the new jobs cost (measured where the
    provider told what was used, else the estimate; a stored result costs nothing) — marked when the emulator made
    the sound."""
    delivered = [t for t in info.get("takes", [info]) if "error" not in t]
    jobs = [w for t in delivered for w in t.get("windows", [t])]
    if "variations" in info:
        count = f"{len(delivered)} of {info['variations']} takes " if info.get("failed") else f"{info['variations']} takes "
    else:
        count = f"{len(jobs)} windows " if len(jobs) > 1 else ""
    seconds = info.get("seconds") or {}
    stages = ", ".join(f"{stage} {s:.1f} s" for stage, s in seconds.items() if s >= 0.05)
    text = f"{count}done in {sum(seconds.values()):.1f} s" + (f" ({stages})" if stages else "")
    new = [j for j in jobs if not j.get("cached")]
    if not new:
        cost = "the stored result, no new cost" if len(jobs) == 1 else "the stored results of earlier jobs, no new cost"
    elif jobs[0] is info:  # one job: its cost with what it was measured by
        cost = spend.cost_text(info)
    else:
        cost = spend.cost_text({"cost_usd_measured": total_cost([j.get("cost_usd_measured") for j in new]),
                                "cost_usd_estimate": total_cost([j.get("cost_usd_estimate") for j in new])})
    return f"{EMULATOR_MARK} · {text} · {cost}" if info.get("emulator") else f"{text} · {cost}"


def summary(info: dict[str, Any], prompt: str | None = None) -> str:
    """What the node says after a run: done_text with the task, what was spent today against the daily cap, where
    it ran and why (a model on both providers), and the prompt the provider wrote (`prompt`, fal's ThinkSound)."""
    details = [f"task {info.get('task_id')}", spend.today_text()]
    if info.get("provider_choice"):
        details.append(choice_text(info["provider_choice"]))
    if prompt:
        details.append(f"prompt: {prompt}")
    return done_text(info, details)


def choice_text(choice: dict[str, Any]) -> str:
    """One line for the summary: "on fal (cheaper for this clip) · WaveSpeed: no key"."""
    others = "".join(f" · {offers.title(p['provider'])} not used: {p['why']}" for p in choice.get("not_used", []))
    return f"on {offers.title(choice['ran'])} ({choice['why']}){others}"


def take_info(infos: list[JobInfo], spans: list[windows.Span], fps: Fraction, seconds: Fraction) -> dict[str, Any]:
    """A long clip's take: the first window's info, for the whole clip (its length, the windows' summed
    cost) with each window's span, cuts, task id, status, cost and seconds."""
    listed = []
    for number, (info, span) in enumerate(zip(infos, spans), 1):
        start, end = span.seconds(fps)
        listed.append({"window": number, "start": round(float(start), 6), "end": round(float(end), 6),
                       "cut_before": span.cut_before, "cut_after": span.cut_after, "task_id": info.task_id,
                       "status": info.status, "cost_usd_estimate": info.cost_usd_estimate,
                       "cost_usd_measured": info.cost_usd_measured, "cached": info.cached, "seconds": info.seconds})
    costs = [info.cost_usd_estimate for info in infos]
    measured = [info.cost_usd_measured for info in infos]
    first = infos[0].as_dict()
    return {**first, "video_seconds": round(float(seconds), 6), "audio_copied": False,
            "cost_usd_estimate": None if None in costs else round(sum(costs), 6),
            "cost_usd_measured": None if None in measured else round(sum(measured), 6), "cost_measure": None,
            "cached": all(info.cached for info in infos), "windows": listed}
