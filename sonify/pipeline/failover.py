"""A run where the model is on both providers: the provider chosen (offers.plan), and the next one tried only while no
task can exist yet at the one before — so a job is never paid for twice.

A run moves on when its error carries `no_task` (set by the remote job, remote_job.no_task_reason): the provider was
unreachable, refused the key, failed an upload, answered the submit with a 5xx or nothing and its own listing shows
no task from it, or its submit slot would not come within the queue bound. Any other error — above all one after a
task id was known (a failed, timed-out or lost task: resume, fetch or cancel it there) — ends the run where it is. The
journal keeps both attempts (the first's row says why it moved, Status.MOVED); the job info's `provider_choice` and
the last progress line say which provider ran and why the other did not.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from .. import media, offers, providers
from ..catalog import ModelSpec
from ..errors import ConfigurationError, SonifyError
from ..settings import Settings, current
from . import flow
from .flow import Result, known_job
from .messages import choice_text

log = logging.getLogger("sonify")


def run(spec: ModelSpec, params: dict[str, Any], video: media.VideoSource, *, provider: str = "auto",
        on_progress: Callable[[str, float | None], None] | None = None, **options: Any) -> Result:
    """pipeline.run of `spec` (shown names in `params`) on the provider `provider` picks (models.PROVIDER_CHOICES),
    moving to the next one only while no task exists (see the module docstring). `options`: pipeline.run's; its
    `settings` (default: settings.current() now) serve the choice and every attempt."""
    report = on_progress or (lambda text, fraction: None)
    settings = options["settings"] = options.get("settings") or current()
    chosen = offers.plan(spec, provider, params, lambda: clip_seconds(video), settings)
    if chosen.asked == "auto" and len(chosen.attempts) > 1 and options.get("variations", 1) == 1:
        chosen.attempts = known_first(chosen.attempts, video, options.get("audio"), settings)
    passed = list(chosen.passed)
    for index, attempt in enumerate(chosen.attempts):
        later = chosen.attempts[index + 1].spec.provider if index + 1 < len(chosen.attempts) else None
        try:
            result = flow.run(attempt.spec, attempt.params, video, on_progress=on_progress, fallback=later, **options)
        except SonifyError as exc:
            reason = getattr(exc, "no_task", None)
            if later is None or not reason:
                raise
            passed.append(offers.Passed(attempt.spec.provider, reason))
            log.info("%s: %s; moving to %s", attempt.spec.title, reason, later)
            report(f"{offers.title(attempt.spec.provider)}: {reason}; nothing was created there, so the job moves "
                   f"to {offers.title(later)}", None)
            continue
        if spec.offers:  # a model on one provider has no choice to tell
            choice = choice_info(chosen.asked, attempt, passed)
            for info in [result.info, *(take.info for take in result.takes)]:
                info["provider_choice"] = choice
            report(choice_text(choice), None)
        return result
    raise AssertionError("a plan has at least one attempt")  # pragma: no cover


def known_first(attempts: list[offers.Attempt], video: media.VideoSource, audio: flow.AudioInput | None,
                settings: Settings) -> list[offers.Attempt]:
    """auto's order, but a provider whose journal has this very job first: its stored result (no new cost) or its
    unfinished task (an earlier run's, perhaps after a failover: resumed there rather than paid for again here)."""
    for index, attempt in enumerate(attempts):
        endpoint = providers.client(attempt.spec.provider, settings).http.base_url
        try:
            row = known_job(attempt.spec, attempt.params, video, audio, endpoint, settings)
        except ConfigurationError:  # a state folder that cannot be used: the run says so its own way
            return attempts
        if row is None:
            continue
        what = "its stored result" if row.stored_result() is not None else f"its unfinished task {row.task_id}"
        first = dataclasses.replace(attempt, why=f"the journal has this job there: {what}")
        return [first, *attempts[:index], *attempts[index + 1:]]
    return attempts


def choice_info(asked: str, ran: offers.Attempt, passed: list[offers.Passed]) -> dict[str, Any]:
    """The job info's `provider_choice`: what was asked, which provider ran and why, and why each other did not."""
    return {"asked": asked, "ran": ran.spec.provider, "why": ran.why, "not_used": [p.as_dict() for p in passed]}


def clip_seconds(video: media.VideoSource) -> float:
    """The clip's length, for comparing prices before anything is prepared."""
    if video.frames is not None:
        return len(video.frames) / float(video.fps)
    return float(media.probe(video.path).duration)
