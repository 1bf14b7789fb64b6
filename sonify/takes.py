"""Variations: N takes of one video-to-audio run, each its own remote job, run at once.

A take differs from the others only by its seed: a fixed seed s gives s, s+1, …, s+N−1 (so the same run
again reuses every stored take); -1 draws N random seeds here, each recorded in the job info (the
provider's own -1 would leave the seed unknown). The drawn seeds are kept in the journal under the run's own
fingerprint (`run_key`) before anything is sent, until the run has delivered every take: a re-run of the same
inputs after a failed take, a crash or a Cancel draws the same seeds, so it reuses or resumes each take's job and
pays only for the takes that did not come. A model without a seed (Kling) gets N identical jobs: its sound differs
from job to job anyway. One take (the default) is exactly the run it always was.

A take that fails does not take the others with it: the run delivers the takes that came (`Result.takes`, the
node's AUDIO batch) and names each failed one — take number, seed, task id, the provider's message — in the job
info's `failed` (and its `takes` list, status and error).

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

from . import jobs
from .errors import Cancelled, SonifyError, ValidationError
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


def run_key(spec: ModelSpec, endpoint: str, checked: dict[str, Any], variations: int, media_hash: str) -> str:
    """The run's own fingerprint, as asked (seed -1, not the seeds drawn): what its drawn seeds are kept under."""
    return jobs.digest_of("takes", 1, spec.provider, endpoint, spec.model_id, repr(spec.proxy), checked, variations,
                          media_hash)


def take_params(spec: ModelSpec, checked: dict[str, Any], variations: int, run: str | None = None) -> list[dict[str, Any]]:
    """Each take's parameters (see the module docstring); seeds drawn for -1 are kept under `run` (run_key)."""
    seed = next((p for p in spec.params if p.seed), None)
    if variations == 1 or seed is None:
        return [dict(checked) for _ in range(variations)]
    first = checked[seed.name]
    if first < 0:
        def draw() -> list[int]:
            drawn: set[int] = set()
            while len(drawn) < variations:
                drawn.add(secrets.randbelow(INT32_MAX + 1))
            return sorted(drawn)

        def valid(kept: Any) -> bool:  # what the journal holds is checked like any input
            return (isinstance(kept, list) and len(set(kept)) == variations and
                    all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= INT32_MAX for s in kept))

        seeds = jobs.drawn_seeds(run, draw, valid) if run is not None else draw()
        return [{**checked, seed.name: s} for s in seeds]
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


def run_each(calls: list[Callable[[], T]]) -> list[T | SonifyError]:
    """Every call on its own thread (with this thread's context variables: ComfyUI's progress finds its node
    through one), all waited for: each one's result, or the SonifyError it raised, in order. A take that fails does
    not stop the others: what they cost is not wasted. A Cancel in any is raised for all, once all have ended (one
    message: what came of each take's remote job); an error that is not a SonifyError (a bug) is raised."""
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="sonify-take") as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        errors = [f.exception() for f in futures]
    for index, error in enumerate(errors):
        if error is not None:
            log.warning("take %d of %d: %s", index + 1, len(calls), error)
    cancelled = [(k, e) for k, e in enumerate(errors) if isinstance(e, Cancelled)]
    if cancelled:
        # (each cancel note names its task)
        notes = "; ".join(f"take {k + 1}: {str(e).removeprefix('Cancelled — ')}" for k, e in cancelled
                          if str(e) != "Cancelled")
        raise Cancelled(f"Cancelled — {notes}" if notes else "Cancelled",
                        task_id=next((e.task_id for _, e in cancelled if e.task_id), None)) from cancelled[0][1]
    unexpected = next((e for e in errors if e is not None and not isinstance(e, SonifyError)), None)
    if unexpected is not None:
        raise unexpected
    return [f.result() if e is None else e for f, e in zip(futures, errors)]


def failure(spec: ModelSpec, take: int, info: dict[str, Any], error: SonifyError,
            window: int | None = None) -> dict[str, Any]:
    """A take that failed, as the job info names it: its number, seed, task id (the failing window's, for a long
    clip), status and the error (the provider's message)."""
    return {"take": take + 1, "seed": seed_of(spec, info.get("params")), "task_id": error.task_id or info.get("task_id"),
            "status": info.get("status"), "cost_usd_estimate": info.get("cost_usd_estimate"), "error": str(error),
            **({"window": window + 1} if window is not None else {})}


def joined_info(spec: ModelSpec, infos: list[dict[str, Any]], seconds: dict[str, float],
                failed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The job info of N takes: the first delivered take's (it is the one on the returned video; its number is
    `take`), with the cost of all of them, the run's seconds, and each take's seed, task id, status and cost — a
    failed take's with its error, and listed in `failed` too."""
    failed = failed or []
    takes = [{"take": info["take"], "seed": seed_of(spec, info.get("params")), "task_id": info.get("task_id"),
              "status": info.get("status"), "cost_usd_estimate": info.get("cost_usd_estimate"),
              "cached": info.get("cached"), "seconds": info.get("seconds"),
              **({"windows": info["windows"]} if "windows" in info else {})} for info in infos]
    takes = sorted(takes + failed, key=lambda t: t["take"])
    return {**infos[0], "cost_usd_estimate": total_cost([t.get("cost_usd_estimate") for t in takes]),
            "cached": all(info.get("cached") for info in infos),  # stored, all of them: no new cost
            "variations": len(takes), "takes": takes, "seconds": seconds, **({"failed": failed} if failed else {})}


def done_text(info: dict[str, Any]) -> str:
    """The last progress line of a run of several jobs: how many, how long, what the new ones cost — and each take
    that failed."""
    delivered = [t for t in info.get("takes", [info]) if "error" not in t]
    jobs = [w for t in delivered for w in t.get("windows", [t])]
    if "variations" not in info:
        what = f"{len(jobs)} windows"
    elif info.get("failed"):
        what = f"{len(delivered)} of {info['variations']} takes"
    else:
        what = f"{info['variations']} takes"
    text = f"{what} done in {sum(info['seconds'].values()):.1f} s"
    if all(j["cached"] for j in jobs):
        text = f"{text} · the stored results of earlier jobs, no new cost"
    else:
        cost = total_cost([j["cost_usd_estimate"] for j in jobs if not j["cached"]])
        text = text if cost is None else f"{text} · est. ${cost:.3f}"
    return "\n".join([text, *(failed_text(f) for f in info.get("failed", []))])


def failed_text(failed: dict[str, Any]) -> str:
    """One failed take, for a message: "take 2 (seed 17, task ab12…) failed: <the provider's message>"."""
    where = f" window {failed['window']}" if "window" in failed else ""
    return (f"take {failed['take']}{where} (seed {failed['seed']}, task {failed['task_id'] or 'none'}) failed: "
            f"{failed['error']}")
