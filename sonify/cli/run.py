"""`sonify run MODEL`: one clip through a model, the result written to a folder or as the file `-o` names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..catalog import MODELS, VARIATIONS
from ..errors import ValidationError
from .cancel import ctrl_c_cancels
from .exits import EXIT_SOME_FAILED
from .loudness_options import loudness_goal, loudness_options
from .output import Output, add_options
from .params import model_params, number_type, voice_input
from .results import RESULT_SOUND, RESULT_VIDEO, result_file, write_result

# `run --audio-codec`: the sound of a .mov/.mkv result. aac: as the .mp4 has it (its packets copied); pcm, flac:
# the result's samples (with --loudness), lossless (32-bit float PCM; 24-bit FLAC, .mkv only)
AUDIO_CODECS = {"aac": None, "pcm": "pcm_f32le", "flac": "flac"}


def run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, type=Path, metavar="PATH", help="the clip (any file PyAV reads)")
    parser.add_argument("-o", "--output", type=Path, default=Path("."), metavar="OUT",
                        help=f"a folder for the result (default: .), or the file to write: {', '.join(RESULT_VIDEO)} "
                             f"(the clip with its new sound) or {', '.join(RESULT_SOUND)} (the sound alone)")
    add_options(parser, "print the result as one JSON object on stdout (path, task id, cost, seconds per stage, "
                        "seed, emulator or not, the job info), and nothing else there")
    low, high = VARIATIONS
    parser.add_argument("--variations", type=number_type("int"), default=1, metavar="N",
                        help=f"takes to make at once ({low}-{high}, default 1), each its own job and price; a fixed seed "
                             "s gives s, s+1, ...; writes one file per take, its name ending in -take1, -take2, ...; "
                             "a take that fails is named on stderr (exit code 6) and the others are written")
    loudness_options(parser)
    parser.add_argument("--audio-codec", choices=AUDIO_CODECS, default="aac",
                        help="the sound of a .mov or .mkv result (-o FILE): aac (default: as in the .mp4, copied), "
                             "pcm (32-bit float: the samples exactly) or flac (24-bit; .mkv only), for editors")


def run_command(args: argparse.Namespace) -> int:
    from .. import media, pipeline
    from ..pipeline import failover
    from . import webhook_listener

    out = Output.of(args)
    spec = MODELS[args.model]
    params = model_params(args)
    if not args.video.is_file():
        raise ValidationError("--video", f"no such file: {args.video}")
    target = result_file(args.output)
    codec = AUDIO_CODECS[args.audio_codec]
    if codec is not None:
        media.check_lossless(codec, target.suffix.lower() if target else "", name="--audio-codec")
    goal = loudness_goal(args)
    voice = voice_input(args)
    with webhook_listener.serving(), ctrl_c_cancels() as cancelled:
        result = failover.run(spec, params, media.VideoSource(path=str(args.video)),
                              provider=getattr(args, "provider", "auto"),
                              out_dir=target.parent if target else args.output, audio=voice,
                              on_progress=out.progress(), is_cancelled=cancelled, variations=args.variations,
                              loudness=goal)
    out.job_info(result.info)
    if not result.takes:
        out.result(write_result(result, target, codec) if target else result.video_path, result.info)
    for take in result.takes:  # one file (and --json record) per take, in the order of the takes (flagged last)
        named, number = target or take.video_path, take.info["take"]
        out.result(write_result(take, named.with_stem(f"{named.stem}-take{number}"), codec), take.info, take=number,
                   position=take.info.get("position"))
    for failed in result.failed:  # named even with -q; their seeds are kept: the same run again pays only for these
        print(f"error: {pipeline.failed_text(failed)}", file=sys.stderr)
        if out.json:
            out.record({"path": None, **failed})
    return EXIT_SOME_FAILED if result.failed else 0
