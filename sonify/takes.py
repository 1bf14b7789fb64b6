"""Variations: N takes of one video-to-audio run, each its own remote job, run at once.

A take differs from the others only by its seed: a fixed seed s gives s, s+1, …, s+N−1 (so the same run
again reuses every stored take); -1 draws N random seeds here, each recorded in the job info (the
provider's own -1 would leave the seed unknown). A model without a seed (Kling) gets N identical jobs:
its sound differs from job to job anyway. One take (the default) is exactly the run it always was.

This module knows the takes' parameters, their shared progress and their joint
outcome; the pipeline runs each one as it runs a single job.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import Cancelled, ValidationError
from .models import INT32_MAX, VARIATIONS, ModelSpec

log = logging.getLogger("sonify")
T = TypeVar("T")


def check_count(spec: ModelSpec, variations: Any) -> int:
    """The number of takes, checked before anything is spent: 1–8, and only for sound (lipsync has one)."""
    low, high = VARIATIONS
    if isinstance(variations, bool) or not isinstance(variations, int) or not low <= variations <= high:
        raise ValidationError("variations", f"must be a whole number from {low} to {high}, got {variations!r}")
    if variations > 1 and spec.output != "audio":
        raise ValidationError("variations", f"{spec.title} makes one take per run; got {variations}")
    return variations


def take_params(spec: ModelSpec, checked: dict[str, Any], variations: int) -> list[dict[str, Any]]:
    """Each take's parameters (see the module docstring)."""
    seed = next((p for p in spec.params if p.seed), None)
    if variations == 1 or seed is None:
        return [dict(checked) for _ in range(variations)]
    first = checked[seed.name]
    if first < 0:
        drawn: set[int] = set()
        while len(drawn) < variations:
            drawn.add(secrets.randbelow(INT32_MAX + 1))
        return [{**checked, seed.name: s} for s in sorted(drawn)]
    if first + variations - 1 > INT32_MAX:
        raise ValidationError(seed.name, f"with {variations} variations (seeds {first} and up) must be at most "
                                         f"{INT32_MAX - variations + 1}, got {first}")
    return [{**checked, seed.name: first + k} for k in range(variations)]


def seed_of(spec: ModelSpec, params: dict[str, Any] | None) -> int | None:
    seed = next((p for p in spec.params if p.seed), None)
    return (params or {}).get(seed.name) if seed is not None else None


def total_cost(costs: list[float | None]) -> float | None:
    """What the takes are estimated at together; unknown if any one is."""
    return None if any(c is None for c in costs) else round(sum(costs), 6)


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


class Progress:
    """The jobs' progress as one: the text of the latest, after its label, and the mean fraction."""

    def __init__(self, report: Callable[[str, float | None], None], labels: list[str]) -> None:
        self.report, self.labels = report, labels
        self.fractions = [0.0] * len(labels)
        self.lock = threading.Lock()

    def of(self, index: int) -> Callable[[str, float | None], None]:
        def on_progress(text: str, fraction: float | None) -> None:
            with self.lock:
                if fraction is not None:
                    self.fractions[index] = fraction
                mean = sum(self.fractions) / len(self.fractions) if fraction is not None else None
            self.report(f"{self.labels[index]}: {text}", mean)

        return on_progress


def run_at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Every call on its own thread (with this thread's context variables: ComfyUI's progress finds its node
    through one), all waited for: their results in order, or, once all have ended, the first error (a
    Cancel first). A take that fails does not stop the others: what they cost is not wasted."""
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="sonify-take") as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if not failed:
        return [f.result() for f in futures]
    for index, error in enumerate(errors):
        if error is not None:
            log.warning("take %d of %d: %s", index + 1, len(calls), error)
    cancelled = [(k, e) for k, e in enumerate(errors) if isinstance(e, Cancelled)]
    if not cancelled:
        raise failed[0]
    # One message for all: what came of each take's remote job (each cancel note names its task).
    notes = "; ".join(f"take {k + 1}: {str(e).removeprefix('Cancelled — ')}" for k, e in cancelled if str(e) != "Cancelled")
    raise Cancelled(f"Cancelled — {notes}" if notes else "Cancelled",
                    task_id=next((e.task_id for _, e in cancelled if e.task_id), None)) from cancelled[0][1]


def joined_info(spec: ModelSpec, infos: list[dict[str, Any]], seconds: dict[str, float]) -> dict[str, Any]:
    """The job info of N takes: the first take's (it is the one on the returned video), with the cost of all
    of them, the run's seconds, and each take's seed, task id, status and cost."""
    takes = [{"take": k + 1, "seed": seed_of(spec, info.get("params")), "task_id": info.get("task_id"),
              "status": info.get("status"), "cost_usd_estimate": info.get("cost_usd_estimate"),
              "cached": info.get("cached"), "seconds": info.get("seconds"),
              **({"windows": info["windows"]} if "windows" in info else {})} for k, info in enumerate(infos)]
    return {**infos[0], "cost_usd_estimate": total_cost([info.get("cost_usd_estimate") for info in infos]),
            "cached": all(info.get("cached") for info in infos),  # stored, all of them: no new cost
            "variations": len(infos), "takes": takes, "seconds": seconds}


def done_text(info: dict[str, Any]) -> str:
    """The last progress line of a run of several jobs: how many, how long, what the new ones cost."""
    jobs = [w for t in info.get("takes", [info]) for w in t.get("windows", [t])]
    what = f"{info['variations']} takes" if "variations" in info else f"{len(jobs)} windows"
    text = f"{what} done in {sum(info['seconds'].values()):.1f} s"
    if all(j["cached"] for j in jobs):
        return f"{text} · the stored results of earlier jobs, no new cost"
    cost = total_cost([j["cost_usd_estimate"] for j in jobs if not j["cached"]])
    return text if cost is None else f"{text} · est. ${cost:.3f}"
