"""`--loudness` and `--true-peak`, shared by `run` and `batch`: where each take's sound is brought."""

from __future__ import annotations

import argparse
from typing import Any

from .params import number_type


def loudness_options(parser: argparse.ArgumentParser) -> None:
    from ..loudness_target import CEILING_RANGE, DEFAULT_CEILING, LUFS_RANGE, TARGETS

    uses = ", ".join(f"{lufs:g} for {purpose}" for lufs, purpose in TARGETS.values())
    parser.add_argument("--loudness", type=_loudness, default=None, metavar="LUFS",
                        help=f"bring each take's sound to this integrated loudness (ITU-R BS.1770-4), by one gain: "
                             f"{LUFS_RANGE[0]:g} to {LUFS_RANGE[1]:g} ({uses}), or as-generated (the default: the "
                             "model's samples untouched)")
    parser.add_argument("--true-peak", type=number_type("float"), default=DEFAULT_CEILING, metavar="DBTP",
                        help=f"with --loudness: the highest the true peak may go ({CEILING_RANGE[0]:g} to "
                             f"{CEILING_RANGE[1]:g} dBTP, default {DEFAULT_CEILING:g}); the gain stops there")


def _loudness(text: str) -> float | None:
    """--loudness: a number of LUFS, or as-generated (None)."""
    if text.strip().lower().replace("-", " ") in ("as generated", "asgenerated"):
        return None
    return number_type("float")(text.strip().lower().removesuffix("lufs").strip())


def loudness_goal(args: argparse.Namespace) -> Any:
    """--loudness and --true-peak as the engine's target (None: as generated), checked before anything is sent."""
    from ..loudness_target import CUSTOM, target

    if args.loudness is None:
        return None
    return target(CUSTOM, args.loudness, args.true_peak, names=("--loudness", "--loudness", "--true-peak"))
