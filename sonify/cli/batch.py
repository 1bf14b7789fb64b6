"""`sonify batch MODEL`: many clips through a model at once, here or on a Temporal service's workers."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..catalog import MODELS, ModelSpec
from ..errors import Cancelled, ValidationError
from ..settings import Settings
from .cancel import ctrl_c_cancels
from .exits import EXIT, EXIT_SOME_FAILED
from .loudness_options import loudness_goal, loudness_options
from .output import Output, add_options
from .params import model_params, number_type, voice_input


def batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", type=Path, metavar="SOURCE",
                        help="clips, or folders (their .mp4/.mov/.mkv/.webm/.avi/.m4v files)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="folder for the results: <source name>.mp4 and <source name>.sonify.json (job info)")
    parser.add_argument("--concurrency", type=_concurrency, default=4, metavar="N",
                        help="jobs at the provider at once, 1 to 32 (default: 4; resumed jobs count too); the next "
                             "clips are uploaded meanwhile")
    add_options(parser, "print one JSON object per clip on stdout when the batch ends (source, outcome: done, "
                        "resumed, reused, failed or cancelled; path, task id, cost, seconds, seed, emulator or not, "
                        "error, job info), and nothing else there")
    _temporal_option(parser)
    loudness_options(parser)


def _temporal_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temporal", type=host_port, metavar="HOST:PORT",
                        help="run the clips on the Temporal workers of this service (`worker`), across machines; "
                             "--concurrency then holds across all of them")


def host_port(text: str) -> str:
    """A Temporal address: HOST:PORT, the port 1 to 65535 (checked here, before anything runs)."""
    host, _, port = text.strip().rpartition(":")
    if not host or " " in host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT with a port from 1 to 65535, got {text!r}")
    return text.strip()


def _concurrency(text: str) -> int:
    value = number_type("int")(text)
    if not 1 <= value <= 32:
        raise argparse.ArgumentTypeError(f"must be from 1 to 32, got {value}")
    return value


def batch_command(args: argparse.Namespace) -> int:
    from .. import providers, settings
    from ..pipeline import batch
    from . import webhook_listener

    out = Output.of(args)
    now = settings.current()  # every setting checked before anything else
    sources = batch.expand_sources(args.sources)
    spec, params = _batch_provider(out, MODELS[args.model], model_params(args), getattr(args, "provider", "auto"),
                                   sources[0], now, keys=not args.temporal)
    params = spec.validate(params)  # a mistake fails here, before any clip
    goal = loudness_goal(args)
    if goal is not None and args.temporal:
        raise ValidationError("--loudness", "is not yet done by a Temporal batch: leave it out, or run the batch "
                                            "without --temporal")
    if not args.temporal:  # so do a missing key (a Temporal batch's keys are the workers') and a bad account setting
        providers.pacer(providers.client(spec.provider, now), now)
    voice = voice_input(args)
    engine = _temporal_batch(args, spec, voice) if args.temporal else batch.Batch
    items = batch.plan(spec, params, sources, args.output, goal)
    args.output.mkdir(parents=True, exist_ok=True)
    if not out.verbose:
        logging.getLogger("sonify").setLevel(logging.WARNING)  # per-job chatter would break the bar
    with webhook_listener.serving(), ctrl_c_cancels() as cancelled:
        options = {"loudness": goal} if goal is not None else {}
        job = engine(spec, params, items, args.output, audio=voice, concurrency=args.concurrency,
                     is_cancelled=cancelled, **options)
        bar = batch.ProgressBar(job) if not out.quiet else None
        job.run(bar.draw if bar else lambda: None)
        if bar:
            bar.close()
    for line in batch.summary(job) if not out.quiet else batch.failures(job):
        print(line, file=sys.stderr)
    for item in items:
        _batch_result(out, item, args.output / f"{item.name}.mp4" if item.state in ("done", "skipped") else None)
    counts = job.counts()
    if counts["failed"] or counts["left"]:
        return EXIT_SOME_FAILED
    return EXIT[Cancelled] if counts["cancelled"] else 0


def _batch_provider(out: Output, spec: ModelSpec, params: dict[str, Any], provider: str, first: Path,
                    settings: Settings, keys: bool) -> tuple[ModelSpec, dict[str, Any]]:
    """A batch runs on one provider, picked once (as for a run: auto compares prices on the first clip); it does not
    move to the other one (each clip's run keeps its own journal, resume and reuse). `keys` False (--temporal: the
    keys are the workers'): auto picks among every provider of the model."""
    if not spec.offers:
        return spec, params
    from .. import media, offers
    from ..pipeline import failover
    from ..pipeline.messages import choice_text

    chosen = offers.plan(spec, provider, params, lambda: failover.clip_seconds(media.VideoSource(path=str(first))),
                         settings, keys=keys)
    attempt = chosen.attempts[0]
    out.note(f"batch {choice_text(failover.choice_info(provider, attempt, chosen.passed))}")
    return attempt.spec, attempt.params


def _batch_result(out: Output, item: Any, path: Path | None) -> None:
    """A clip's line on stdout: its result's path (none if it failed), or (--json) its record."""
    if item.info:
        out.job_info(item.info)
    if out.json:
        out.result(path, item.info, reused=item.outcome == "reused", source=str(item.source), outcome=item.outcome,
                   task_id=item.task_id, error=item.error or None)
    elif path is not None:
        print(path)


def _temporal_batch(args: argparse.Namespace, spec: ModelSpec, voice: Any) -> Callable[..., Any]:
    """The batch on Temporal's workers (imported only for --temporal: the default batch needs no Temporal)."""
    if voice is not None:
        raise ValidationError("--temporal", f"takes the video-to-audio models; {spec.key} needs a voice")
    from ..temporal.starter import TemporalBatch

    return lambda *given, **options: TemporalBatch(*given, address=args.temporal, **options)
