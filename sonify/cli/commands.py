"""`sonify …` (or `python -m sonify …`): run a model on a clip or a batch of clips, fetch a job's result, list
jobs, check the setup, start the emulator, or try the demo.

Commands are rows of COMMANDS, each with a function that adds its arguments and one that runs it. A row with
`per_model` gets one sub-command per catalog model, whose options (`--NAME VALUE`, with type, range and default
in `--help`) are generated from the catalog. What a command prints goes through output.Output (-q, -v, --json).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import importlib
import logging
import os
import shutil
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..catalog import BY_MODEL_ID as MODELS_BY_ID
from ..catalog import MODELS, PROVIDERS, VARIATIONS, ModelSpec, Param
from ..errors import Cancelled, ConfigurationError, JobFailed, JobTimedOut, ProviderError, SonifyError, ValidationError
from ..redact import redact
from ..version import VERSION
from .output import Output, add_options

EXIT = {ValidationError: 3, ConfigurationError: 3, ProviderError: 4, JobFailed: 5, JobTimedOut: 5, Cancelled: 130}


EXIT_SOME_FAILED = 6  # some clips of a batch (or some takes of a run) failed or were left at a spend cap; others kept


EXIT_DOCTOR = 1  # doctor found a problem


EXIT_OS = EXIT[ConfigurationError]  # a folder, file or port that cannot be used: the setup's to fix


PARAM_PREFIX = "param_"  # argparse dest of a model parameter's option


@dataclass(frozen=True)
class Command:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]  # adds the command's own arguments
    handler: Callable[[argparse.Namespace], int]  # returns the exit code
    per_model: bool = False  # one sub-command per model, with its parameters as options (args.model: the key)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, sub_parsers = build_parser()
    typo = _model_typo(argv)
    if typo is not None:
        sub_parsers[argv[0]].error(typo)
    missing = sub_parsers[argv[0]].get_default(NO_DEVTOOLS) if argv and argv[0] in sub_parsers else None
    if missing:
        print(f"error: {missing}", file=sys.stderr)  # before argparse, which knows none of its options
        return EXIT[ConfigurationError]
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("sonify").setLevel(Output.of(args).log_level)  # -v: Sonify's debug lines, not its libraries
    try:
        return COMMANDS[args.command].handler(args)
    except ModuleNotFoundError as exc:
        if exc.name not in CLI_EXTRAS:
            raise
        print(f"error: {EXTRAS_MISSING}", file=sys.stderr)
        return EXIT[ConfigurationError]
    except SonifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:  # this machine's files, folders and ports: no room, no permission, a busy --port
        print(f"error: {redact(os_error_text(exc))}", file=sys.stderr)
        return EXIT_OS
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT[Cancelled]


def command() -> None:
    """The `sonify` command and `python -m sonify`: exit with main's code. One that used Temporal ends with
    os._exit once its output is flushed: the SDK runtime's threads can abort the interpreter's teardown (SIGABRT
    instead of the code; temporalio/sdk-python#300, open)."""
    code = main()
    if "temporalio" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def os_error_text(exc: OSError) -> str:
    """One line for an OSError: its own message when Sonify wrote it, else what failed on which file."""
    if exc.strerror is None:
        return str(exc)
    where = f": {exc.filename}" if exc.filename is not None else ""
    return f"{exc.strerror}{where}"


def exit_code(exc: SonifyError) -> int:
    return next((code for kind, code in EXIT.items() if isinstance(exc, kind)), 1)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="sonify", description="Sound for video with hosted models (WaveSpeed, fal).",
        epilog="Exit codes: 0 done, 2 usage, 3 bad input or configuration (a folder, file or port that cannot be "
               "used too; a spend cap), 4 provider error, 5 job failed or timed out, 6 some clips of a batch or takes "
               "of a run failed or were left at a spend cap (the others' results are kept), 130 cancelled "
               "(doctor: 1 if a check failed).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub_parsers: dict[str, argparse.ArgumentParser] = {}
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        sub_parsers[name] = sub
        if command.per_model:
            _add_model_parsers(sub, name, command)
        else:
            command.arguments(sub)
    return parser, sub_parsers


def _add_model_parsers(parent: argparse.ArgumentParser, command_name: str, command: Command) -> None:
    models = parent.add_subparsers(dest="model", required=True, metavar="MODEL",
                                   title=f"models (`sonify {command_name} MODEL --help` lists its parameters)")
    for spec in MODELS.values():
        sub = models.add_parser(spec.key, help=spec.title, description=_model_description(spec),
                                epilog=f"example:\n  {_example(command_name, spec)}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        command.arguments(sub)
        if spec.audio_field:
            sub.add_argument("--audio", type=Path, required=True, metavar="PATH",
                             help="the voice: any audio file PyAV reads (wav, mp3, m4a, flac…), any rate and channels")
        group = sub.add_argument_group(f"{spec.title} parameters (the provider's names)")
        for param in spec.params:
            _add_param_option(group, param)
        group.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                           help="a parameter in the older form (--param seed=7 is --seed 7)")


def _model_description(spec: ModelSpec) -> str:
    facts = [spec.description, f"Price: {spec.price_text}."]
    if spec.max_seconds is not None:
        facts.append(f"Clips from {spec.min_seconds or 0:g} to {spec.max_seconds:g} s.")
    if spec.licence_note:
        facts.append(spec.licence_note)
    return textwrap.fill(" ".join(facts), width=100)


def _example(command_name: str, spec: ModelSpec) -> str:
    media = "--video clip.mp4" if command_name == "run" else "clips/*.mp4"
    voice = " --audio voice.wav" if spec.audio_field else ""
    required = "".join(f" --{p.name} 'rain on a tin roof'" for p in spec.params if p.required)
    return f"sonify {command_name} {spec.key} {media}{voice}{required} -o out/"


def _add_param_option(group: argparse._ArgumentGroup, param: Param) -> None:
    options: dict[str, Any] = {"dest": PARAM_PREFIX + param.name, "default": argparse.SUPPRESS,
                               "help": param.describe().replace("%", "%%")}
    if param.kind == "choice":
        options["choices"] = param.choices
    elif param.kind == "bool":
        options.update(type=_boolean, metavar="{true,false}")
    elif param.kind in ("int", "float"):
        options.update(type=_number(param.kind), metavar="N" if param.kind == "int" else "X")
    else:
        options["metavar"] = "TEXT"  # a missing required text is refused by the catalog's check (exit 3)
    group.add_argument(f"--{param.name}", **options)


def _number(kind: str) -> Callable[[str], int | float]:
    def convert(text: str) -> int | float:
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind == 'int' else ''}number, got {text!r}") from None

    convert.__name__ = kind  # argparse names the type in its message
    return convert


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _model_typo(argv: list[str]) -> str | None:
    """The usage error for a mistyped model (argparse would only list every choice), or None."""
    if len(argv) < 2 or argv[0] not in COMMANDS or not COMMANDS[argv[0]].per_model:
        return None
    word = argv[1]
    if word.startswith("-") or word in MODELS:
        return None
    return unknown_model(word)


def unknown_model(word: str) -> str:
    lowered = word.lower()
    close = [key for key in MODELS if key.startswith(lowered)] or difflib.get_close_matches(lowered, MODELS, n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"unknown model {word!r}; {hint}(models: {', '.join(MODELS)})"


def model_params(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters given on the command line (the catalog's defaults fill in the rest); `--NAME`
    wins over `--param NAME=`."""
    spec = MODELS[args.model]
    params = dict(_param_pair(spec, pair) for pair in args.param)
    params.update({name[len(PARAM_PREFIX):]: value for name, value in vars(args).items() if name.startswith(PARAM_PREFIX)})
    return params


def _param_pair(spec: ModelSpec, pair: str) -> tuple[str, Any]:
    name, sep, text = pair.partition("=")
    if not sep:
        raise ValidationError("--param", f"expected NAME=VALUE, got {pair!r}")
    try:
        param = spec.param(name)
    except KeyError:
        names = [p.name for p in spec.params]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValidationError(name, f"is not a parameter of {spec.title}; {hint}(parameters: {', '.join(names)})") from None
    try:
        if param.kind == "bool":
            return name, _boolean(text)
        if param.kind in ("int", "float"):
            return name, _number(param.kind)(text)
    except argparse.ArgumentTypeError as exc:
        raise ValidationError(name, str(exc)) from None
    return name, text


# --- run ---


RESULT_VIDEO = (".mp4", ".mov", ".mkv")  # `run -o FILE`: the clip with its new sound, picture and sound copied


# `run --audio-codec`: the sound of a .mov/.mkv result. aac: as the .mp4 has it (its packets copied); pcm, flac:
# the result's samples (with --loudness), lossless (32-bit float PCM; 24-bit FLAC, .mkv only)
AUDIO_CODECS = {"aac": None, "pcm": "pcm_f32le", "flac": "flac"}


RESULT_SOUND = (".wav", ".flac", ".m4a")  # `run -o FILE`: the sound alone


UNWRITABLE = (".webm", ".avi", ".m4v", ".mp3", ".aac", ".ogg", ".opus")  # media, but not written by `run -o`


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, type=Path, metavar="PATH", help="the clip (any file PyAV reads)")
    parser.add_argument("-o", "--output", type=Path, default=Path("."), metavar="OUT",
                        help=f"a folder for the result (default: .), or the file to write: {', '.join(RESULT_VIDEO)} "
                             f"(the clip with its new sound) or {', '.join(RESULT_SOUND)} (the sound alone)")
    add_options(parser, "print the result as one JSON object on stdout (path, task id, cost, seconds per stage, "
                        "seed, emulator or not, the job info), and nothing else there")
    low, high = VARIATIONS
    parser.add_argument("--variations", type=_number("int"), default=1, metavar="N",
                        help=f"takes to make at once ({low}-{high}, default 1), each its own job and price; a fixed seed "
                             "s gives s, s+1, ...; writes one file per take, its name ending in -take1, -take2, ...; "
                             "a take that fails is named on stderr (exit code 6) and the others are written")
    _loudness_options(parser)
    parser.add_argument("--audio-codec", choices=AUDIO_CODECS, default="aac",
                        help="the sound of a .mov or .mkv result (-o FILE): aac (default: as in the .mp4, copied), "
                             "pcm (32-bit float: the samples exactly) or flac (24-bit; .mkv only), for editors")


def _loudness_options(parser: argparse.ArgumentParser) -> None:
    from ..loudness_target import CEILING_RANGE, DEFAULT_CEILING, LUFS_RANGE, TARGETS

    uses = ", ".join(f"{lufs:g} for {purpose}" for lufs, purpose in TARGETS.values())
    parser.add_argument("--loudness", type=_loudness, default=None, metavar="LUFS",
                        help=f"bring each take's sound to this integrated loudness (ITU-R BS.1770-4), by one gain: "
                             f"{LUFS_RANGE[0]:g} to {LUFS_RANGE[1]:g} ({uses}), or as-generated (the default: the "
                             "model's samples untouched)")
    parser.add_argument("--true-peak", type=_number("float"), default=DEFAULT_CEILING, metavar="DBTP",
                        help=f"with --loudness: the highest the true peak may go ({CEILING_RANGE[0]:g} to "
                             f"{CEILING_RANGE[1]:g} dBTP, default {DEFAULT_CEILING:g}); the gain stops there")


def _loudness(text: str) -> float | None:
    """--loudness: a number of LUFS, or as-generated (None)."""
    if text.strip().lower().replace("-", " ") in ("as generated", "asgenerated"):
        return None
    return _number("float")(text.strip().lower().removesuffix("lufs").strip())


def loudness_goal(args: argparse.Namespace) -> Any:
    """--loudness and --true-peak as the engine's target (None: as generated), checked before anything is sent."""
    from ..loudness_target import CUSTOM, target

    if args.loudness is None:
        return None
    return target(CUSTOM, args.loudness, args.true_peak, names=("--loudness", "--loudness", "--true-peak"))


def _run(args: argparse.Namespace) -> int:
    from .. import media, pipeline
    from . import webhook_listener

    out = Output.of(args)
    spec = MODELS[args.model]
    params = model_params(args)
    if not args.video.is_file():
        raise ValidationError("--video", f"no such file: {args.video}")
    target = _result_file(args.output)
    codec = AUDIO_CODECS[args.audio_codec]
    if codec is not None:
        media.check_lossless(codec, target.suffix.lower() if target else "", name="--audio-codec")
    goal = loudness_goal(args)
    voice = _voice(args)
    with webhook_listener.serving(), _ctrl_c_cancels() as cancelled:
        result = pipeline.run(spec, params, media.VideoSource(path=str(args.video)),
                              out_dir=target.parent if target else args.output, audio=voice,
                              on_progress=out.progress(), is_cancelled=cancelled, variations=args.variations,
                              loudness=goal)
    out.job_info(result.info)
    if not result.takes:
        out.result(_write_result(result, target, codec) if target else result.video_path, result.info)
    for take in result.takes:  # one file (and --json record) per take, in the order of the takes (flagged last)
        named, number = target or take.video_path, take.info["take"]
        out.result(_write_result(take, named.with_stem(f"{named.stem}-take{number}"), codec), take.info, take=number,
                   position=take.info.get("position"))
    for failed in result.failed:  # named even with -q; their seeds are kept: the same run again pays only for these
        print(f"error: {pipeline.failed_text(failed)}", file=sys.stderr)
        if out.json:
            out.record({"path": None, **failed})
    return EXIT_SOME_FAILED if result.failed else 0


def _result_file(output: Path) -> Path | None:
    """`-o` as the file to write (it has a media suffix), or None: a folder. A media suffix the result cannot be
    written as unchanged is refused before anything is sent."""
    suffix = output.suffix.lower()
    if suffix in RESULT_VIDEO + RESULT_SOUND:
        return output
    if suffix in UNWRITABLE:
        raise ValidationError("-o", f"cannot write a {suffix} file; give a folder, or a file ending in "
                                    f"{', '.join(RESULT_VIDEO)} (the clip with its sound) or {', '.join(RESULT_SOUND)} "
                                    "(the sound alone)")
    return None


def _write_result(result: Any, target: Path, codec: str | None = None) -> Path:
    """The result (its sound; its video, if any, a .mp4 in target's folder) as `target`, written whole or not at
    all: a .mov/.mkv with the .mp4's packets copied, or (`codec`: lossless) its picture's packets and the result's
    samples; with its receipt (the .mp4 has it already)."""
    from .. import media, pipeline
    from ..pipeline import receipts

    made = result.video_path
    suffix = target.suffix.lower()
    if suffix == ".mp4":
        os.replace(made, target)
        return target
    tags = receipts.tags(result.info, target)
    if suffix in RESULT_SOUND:
        pipeline.write_atomically(target, lambda path: media.write_audio(result.audio, result.sample_rate, path,
                                                                         metadata=tags))
    elif codec is not None:
        pipeline.write_atomically(target, lambda path: media.mux(made, result.audio, result.sample_rate, path,
                                                                 codec=codec, metadata=tags))
    else:
        pipeline.write_atomically(target, lambda path: media.rewrap(made, path, tags))
    if made is not None:
        made.unlink()
    return target


def _voice(args: argparse.Namespace) -> Any:
    """`--audio PATH` (lipsync's voice) decoded at its own rate and channels, or None."""
    path = getattr(args, "audio", None)
    if path is None:
        return None
    from .. import media, pipeline

    if not path.is_file():
        raise ValidationError("--audio", f"no such file: {path}")
    samples, rate = media.decode_audio(path)
    return pipeline.AudioInput(samples, rate)


# --- batch ---


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
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
    _loudness_options(parser)


def _temporal_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temporal", type=_host_port, metavar="HOST:PORT",
                        help="run the clips on the Temporal workers of this service (`worker`), across machines; "
                             "--concurrency then holds across all of them")


def _host_port(text: str) -> str:
    """A Temporal address: HOST:PORT, the port 1 to 65535 (checked here, before anything runs)."""
    host, _, port = text.strip().rpartition(":")
    if not host or " " in host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT with a port from 1 to 65535, got {text!r}")
    return text.strip()


def _concurrency(text: str) -> int:
    value = _number("int")(text)
    if not 1 <= value <= 32:
        raise argparse.ArgumentTypeError(f"must be from 1 to 32, got {value}")
    return value


def _batch(args: argparse.Namespace) -> int:
    from .. import providers
    from ..pipeline import batch
    from . import webhook_listener

    out = Output.of(args)
    spec = MODELS[args.model]
    params = spec.validate(model_params(args))  # a mistake fails here, before any clip
    goal = loudness_goal(args)
    if goal is not None and args.temporal:
        raise ValidationError("--loudness", "is not yet done by a Temporal batch: leave it out, or run the batch "
                                            "without --temporal")
    if not args.temporal:  # so do a missing key (a Temporal batch's keys are the workers') and a bad account setting
        providers.pacer(providers.client(spec.provider))
    voice = _voice(args)
    engine = _temporal_batch(args, spec, voice) if args.temporal else batch.Batch
    items = batch.plan(spec, params, batch.expand_sources(args.sources), args.output, goal)
    args.output.mkdir(parents=True, exist_ok=True)
    if not out.verbose:
        logging.getLogger("sonify").setLevel(logging.WARNING)  # per-job chatter would break the bar
    with webhook_listener.serving(), _ctrl_c_cancels() as cancelled:
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


# --- worker ---


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temporal", type=_host_port, required=True, metavar="HOST:PORT",
                        help="the Temporal service's address")
    parser.add_argument("--allow", type=Path, action="append", required=True, metavar="DIR",
                        help="a folder the batches' clips and output folders are under (repeat for more); a clip or "
                             "output anywhere else (symbolic links followed) is refused before any request")


def _worker(args: argparse.Namespace) -> int:
    import asyncio

    from ..temporal.worker import serve
    from ..temporal.worker_folders import AllowedFolders

    folders = AllowedFolders.of(args.allow)

    def ready(served: list[str]) -> None:
        print(f"worker for {', '.join(served)} on Temporal at {args.temporal}, clips and results under "
              f"{', '.join(map(str, folders.folders))} (Ctrl-C stops it)", file=sys.stderr)

    try:
        asyncio.run(serve(args.temporal, folders, ready))
    except KeyboardInterrupt:
        return EXIT[Cancelled]
    return 0


# --- fetch, jobs ---


def _fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("provider", nargs="?", choices=PROVIDERS)
    parser.add_argument("task_id", nargs="?")
    parser.add_argument("--receipt", type=Path, metavar="FILE",
                        help="a file Sonify wrote (its receipt, in its metadata, names the provider, model and task), "
                             "or a batch's .sonify.json sidecar: in place of PROVIDER TASK_ID")
    parser.add_argument("--model", help="catalog key or provider model id; needed for fal tasks the journal does not know")
    parser.add_argument("--video", type=Path, help="the source clip to put the sound on (default: the journal's, if it exists)")
    parser.add_argument("-o", "--output", type=Path, default=Path("."), metavar="OUT",
                        help="folder for the result's files (default: .), or the one file to write, as for `run -o`")
    add_options(parser, "print the result as one JSON object on stdout (path: the video, else the sound; files: "
                        "every file written; task id, seconds, emulator or not, the job info), and nothing else there")


def _fetch(args: argparse.Namespace) -> int:
    """Writes the provider's result file, its sound as WAV and, when the source is known, the source
    with the new sound — or the one file `-o` names; prints their paths."""
    from .. import media, pipeline

    out = Output.of(args)
    provider, task_id, model = _fetched_task(args)
    target = _result_file(args.output)
    out_dir = target.parent if target else args.output
    if args.video is not None and not args.video.is_file():
        raise ValidationError("--video", f"no such file: {args.video}")
    source = media.VideoSource(path=str(args.video)) if args.video is not None else None
    with _ctrl_c_cancels() as cancelled:
        result = pipeline.fetch(provider, task_id, out_dir=out_dir, model=model, video=source,
                                on_progress=out.progress(), is_cancelled=cancelled)
    if target is not None:
        if result.video_path is None and target.suffix.lower() in RESULT_VIDEO:
            raise ValidationError("-o", f"task {result.info['task_id']}'s result is a sound and its source clip is "
                                        "not known: give the clip with --video, or a sound file to write")
        written = [_write_result(result, target)]
    else:
        written = _fetched_files(result, out_dir)
    out.job_info(result.info)
    if out.json:  # a fetch is free: no new cost
        out.result(result.video_path or written[0], result.info, reused=True, files=[str(path) for path in written])
    else:
        for path in written:
            print(path)
    return 0


def _fetched_task(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """(provider, task id, model) from PROVIDER TASK_ID [--model], or from --receipt FILE (its model unless --model)."""
    from ..pipeline import receipts

    if args.receipt is None:
        if args.provider is None or args.task_id is None:
            raise ValidationError("fetch", "give PROVIDER TASK_ID, or --receipt FILE (a file Sonify wrote)")
        return args.provider, args.task_id, args.model
    if args.provider is not None:
        raise ValidationError("--receipt", "names the provider and task itself: give it or PROVIDER TASK_ID, not both")
    if not args.receipt.is_file():
        raise ValidationError("--receipt", f"no such file: {args.receipt}")
    found = receipts.read(args.receipt)
    return found["provider"], found["task_id"], args.model or found.get("model")


def _fetched_files(result: Any, out_dir: Path) -> list[Path]:
    """The fetched result's sound as WAV, the video (when there is one) and, unless that video is the provider's
    own file, the provider's file."""
    from .. import media, pipeline
    from ..pipeline import receipts

    provider = result.info["provider"]
    name = pipeline.output_name(MODELS_BY_ID[(provider, result.info["model"])], result.info["task_id"])  # checked
    written = [out_dir / f"{name}.wav"]
    media.write_audio(result.audio, result.sample_rate, written[0], codec="pcm_s16le",
                      metadata=receipts.tags(result.info, written[0]))
    if result.video_path is not None:
        written.append(result.video_path)
    if result.video_path is None or result.info.get("source"):
        provider_file = Path(result.info["result_file"])
        written.append(out_dir / f"{name}-provider{provider_file.suffix}")
        shutil.copyfile(provider_file, written[-1])
    return written


def _jobs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--limit", type=int, default=30, help="how many (default: 30)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per job on stdout, newest first (every journal field but the request)")


def _jobs(args: argparse.Namespace) -> int:
    from .. import journal, settings

    folder = settings.state_dir()  # an unusable one is an error (exit 3) that says why
    rows = journal.guarded("listing jobs", lambda opened: opened.recent(args.limit), default=None)
    if rows is None:
        print(f"no usable job journal in {folder}", file=sys.stderr)
        return 1
    if args.json:
        for row in rows:
            Output.record(_job_record(row))
        return 0
    print(f"{'time':19}  {'provider':9}  {'model':30}  {'task id':36}  {'status':16}  {'cost':>7}  result")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created_at))
        cost = f"${row.cost_usd:.3f}" if row.cost_usd is not None else "-"
        print(f"{when:19}  {row.provider:9}  {row.model:30}  {row.task_id or '-':36}  {row.status:16}  {cost:>7}  "
              f"{row.result_path or '-'}")
    return 0


def _job_record(row: Any) -> dict[str, Any]:
    """A journal row for scripts: its fields (times in seconds since the epoch), less the submit as sent."""
    record = {name: value for name, value in dataclasses.asdict(row).items() if name not in ("request", "id")}
    record["status"] = str(row.status.value)
    return record


# --- spend ---


def _spend_arguments(parser: argparse.ArgumentParser) -> None:
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


def _spend(args: argparse.Namespace) -> int:
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


# --- doctor, emulator, demo ---


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor

    results = doctor.checks(Path.cwd())
    print("Sonify doctor (keys are never shown)")
    for check in results:
        print(check.line())
    problems = sum(1 for check in results if check.ok is False)
    print(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "all good")
    return EXIT_DOCTOR if problems else 0


def _emulator_arguments(parser: argparse.ArgumentParser) -> None:
    demo = _devtool_for_arguments("demo", parser)
    if demo is None:
        return
    DEMO_KEY, DEMO_FAL_KEY = demo.DEMO_KEY, demo.DEMO_FAL_KEY
    parser.add_argument("--port", type=_port, default=8787, help="API port (default: 8787; 0: any free port)")
    parser.add_argument("--key", default=DEMO_KEY, help=f"the WaveSpeed key it accepts (default: {DEMO_KEY})")
    parser.add_argument("--fal-key", default=DEMO_FAL_KEY, help=f"the fal key it accepts, id:secret (default: {DEMO_FAL_KEY})")
    parser.add_argument("--model-seconds", type=float, default=2.0, help="how long each job takes (default: 2)")
    parser.add_argument("--uplink-mbps", type=_positive_float, metavar="N",
                        help="read uploads no faster than N Mbit/s, like a slow uplink (default: no limit)")


def _positive_float(text: str) -> float:
    value = _number("float")(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _emulator(args: argparse.Namespace) -> int:
    """Runs until Ctrl-C, which ends it normally (exit 0)."""
    serve_forever = _devtool("emulator").serve_forever

    if args.fal_key.count(":") != 1:
        raise ValidationError("--fal-key", "must be key_id:key_secret, like a fal key")

    def settings(emu: Any) -> None:
        print(f"Sonify emulator (synthetic sound, not a real model): API {emu.url}, files {emu.files_url}")
        print("WaveSpeed models:")
        print(f"  export SONIFY_WAVESPEED_URL={emu.url} WAVESPEED_API_KEY={args.key}")
        print("fal models:")
        print(f"  export SONIFY_FAL_QUEUE_URL={emu.url} SONIFY_FAL_REST_URL={emu.url} SONIFY_FAL_API_URL={emu.url} "
              f"SONIFY_FAL_CDN_URL={emu.files_url} FAL_KEY={args.fal_key}")
        print("Ctrl-C stops it.", flush=True)

    try:
        serve_forever(args.port, on_ready=settings, api_keys=(args.key,), fal_keys=(args.fal_key,),
                      model_seconds=args.model_seconds, uplink_mbps=args.uplink_mbps)
    except OSError as exc:
        raise ConfigurationError(f"the emulator cannot listen on 127.0.0.1:{args.port} ({os_error_text(exc)}): another "
                                 "program may use that port — pick another with --port, or --port 0 for any free one") from None
    return 0


def _port(text: str) -> int:
    value = _number("int")(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    return value


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    if _devtool_for_arguments("demo", parser) is None:
        return
    parser.add_argument("-o", "--output", type=Path, default=Path("sonify-demo"), help="folder (default: sonify-demo)")
    add_options(parser, "print the result as one JSON object on stdout (as `run --json` does), and nothing else there")


def _demo(args: argparse.Namespace) -> int:
    run_demo = _devtool("demo").run_demo
    out = Output.of(args)

    def announce(url: str) -> None:
        out.note(f"emulator (synthetic sound, not a real model) at {url}")

    result = run_demo(args.output, on_progress=out.progress(), on_emulator=announce)
    out.job_info(result.info)
    out.result(result.video_path, result.info)
    return 0


# --- bench ---


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    plans = _devtool_for_arguments("bench.plans", parser)
    if plans is not None:
        plans.add_arguments(parser)


def _bench(args: argparse.Namespace) -> int:
    return _devtool("bench.runner").run(args)


# --- the dev tools: a sibling package, imported only by the commands above ---

DEVTOOLS = "sonify_devtools"


DEVTOOLS_MISSING = (f"this command needs Sonify's dev tools, the {DEVTOOLS} package beside sonify/, and this install "
                    "has the engine only: install Sonify with pip (`pip install 'sonify[cli]'`), or run it from the "
                    "pack's folder (a clone of its repository)")


CLI_EXTRAS = ("numpy", "av")  # what the command line needs beyond a ComfyUI install's requirements (ComfyUI has them)


EXTRAS_MISSING = ("this command needs PyAV and numpy, which a plain install leaves out (ComfyUI brings its own): "
                  "pip install 'sonify[cli]'")


NO_DEVTOOLS = "no_devtools"  # the default a command's parser gets when what its dev tools need is missing: why


def _devtool(name: str) -> ModuleType:
    """sonify_devtools.NAME (the emulator, the demo, the benchmark): it lives beside the engine, not in it,
    and is missing where only the engine is installed — then a ConfigurationError that says so (a message,
    not a traceback); so is PyAV or numpy, which it needs."""
    try:
        return importlib.import_module(f"{DEVTOOLS}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in CLI_EXTRAS:
            raise ConfigurationError(EXTRAS_MISSING) from None
        if exc.name is None or exc.name.split(".")[0] != DEVTOOLS:
            raise  # the dev tools are there, something they import is not: a real error
        raise ConfigurationError(DEVTOOLS_MISSING) from None


def _devtool_for_arguments(name: str, parser: argparse.ArgumentParser) -> ModuleType | None:
    """_devtool(name) while the parser is built (for every command, so every other command still works
    without the dev tools): if they cannot be loaded, None, and the command is marked so that main() says why."""
    try:
        return _devtool(name)
    except ConfigurationError as exc:
        parser.set_defaults(**{NO_DEVTOOLS: str(exc)})
        return None


COMMANDS: dict[str, Command] = {
    "run": Command("run a model on a clip", _run_arguments, _run, per_model=True),
    "batch": Command("run a model on many clips at once (resumable; a progress bar and a summary)",
                     _batch_arguments, _batch, per_model=True),
    "worker": Command("run batches' clips for a Temporal service (`batch --temporal`), on any number of machines",
                      _worker_arguments, _worker),
    "fetch": Command("get a job's result from its task id (see `jobs`), even after a crash", _fetch_arguments, _fetch),
    "jobs": Command("list the journal's jobs, newest first", _jobs_arguments, _jobs),
    "spend": Command("what the journal's jobs cost, by day, provider and model (measured where the provider tells, "
                     "else estimated), and today and this month against the caps", _spend_arguments, _spend),
    "doctor": Command("check keys (never shown), providers, PyAV, the state folder and ComfyUI",
                      lambda parser: None, _doctor),
    "emulator": Command("run the local provider emulator (no keys, no network, synthetic sound)",
                        _emulator_arguments, _emulator),
    "demo": Command("emulator + MMAudio on a generated clip → an MP4 with sound", _demo_arguments, _demo),
    "bench": Command("measure the time and memory Sonify adds around the model (on the emulator)",
                     _bench_arguments, _bench),
}


# --- shared by the commands that run jobs ---


@contextlib.contextmanager
def _ctrl_c_cancels() -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C cancels like ComfyUI's Cancel: the wait stops within a second, a fal job is
    cancelled remotely and the journal records it. A second Ctrl-C quits at once."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        print("\ncancelling… (Ctrl-C again to quit at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
