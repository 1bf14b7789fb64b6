"""`sonify spend`: what the journal's jobs cost, by day, provider and model, against the caps."""

from __future__ import annotations

import argparse
import sys
import time

from .output import Output


def spend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=_day, metavar="YYYY-MM-DD",
                        help="from this day on (this machine's local days; default: the first of this month)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object on stdout: a row per day, provider and model (jobs, usd, and how many "
                             "were counted at a measured figure, at the estimate, or at nothing), the total, today and "
                             "this month, and each spend setting with where it comes from")


def _day(text: str) -> float:
    """YYYY-MM-DD as the start of that local day (time.time() seconds)."""
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%d"))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def spend_command(args: argparse.Namespace) -> int:
    from .. import settings as config
    from ..pipeline import spend

    folder = config.state_dir()  # an unusable one is an error (exit 3) that says why
    report = spend.report(args.since)
    if report is None:
        print(f"no usable job journal in {folder}", file=sys.stderr)
        return 1
    if args.json:
        Output.record(report.as_json())
    else:
        print("\n".join(report.lines()))
    return 0
