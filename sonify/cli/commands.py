"""`sonify …` (or `python -m sonify …`): run a model on a clip or a batch of clips, fetch a job's result, list
jobs, check the setup, start the emulator, or try the demo.

Commands are rows of COMMANDS, each with a function that adds its arguments and one that runs it. A row with
`per_model` gets one sub-command per catalog model, whose options (`--NAME VALUE`, with type, range and default
in `--help`) are generated from the catalog. What a command prints goes through output.Output (-q, -v, --json).
This module is the parser, the dispatch and the table; each command lives in its own module (run, batch,
worker, fetch for fetch and jobs, spend, dev for doctor, emulator, demo and bench), the exit codes in exits.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..catalog import MODELS, PROVIDER_CHOICES, ModelSpec
from ..errors import Cancelled, ConfigurationError, SonifyError
from ..redact import redact
from ..version import VERSION
from . import batch, dev, fetch, run, spend, worker
from .dev import CLI_EXTRAS, EXTRAS_MISSING, NO_DEVTOOLS
from .exits import EXIT, EXIT_OS, exit_code, os_error_text
from .output import Output
from .params import add_param_option


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
    # Ctrl-C is a KeyboardInterrupt in every command, even where the process started with SIGINT ignored (a script's
    # `sonify emulator &` or `sonify worker ... &`): Python leaves an ignored SIGINT ignored, and asyncio handles
    # Ctrl-C only over Python's own handler. The commands that run jobs put theirs over it (cancel.py).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
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
    finally:
        signal.signal(signal.SIGINT, previous)


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
        group = sub.add_argument_group(f"{spec.name} parameters" if spec.offers else
                                       f"{spec.title} parameters (the provider's names)")
        for param in spec.params:
            add_param_option(group, param)
        if spec.offers:
            providers = ", ".join(f"{s.title}: {s.price_text}" for s in (spec, *(o.spec for o in spec.offers)))
            sub.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto", metavar="PROVIDER",
                             help=f"where it runs: {', '.join(PROVIDER_CHOICES)} (default: auto, the provider with a "
                                  "key; with both, SONIFY_PROVIDER_ORDER's order, else the cheaper for the clip; 'X, "
                                  "then Y' moves to Y only if X fails before any task exists there). The parameters "
                                  f"keep these names on either. Prices: {providers}".replace("%", "%%"))
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


COMMANDS: dict[str, Command] = {
    "run": Command("run a model on a clip", run.run_arguments, run.run_command, per_model=True),
    "batch": Command("run a model on many clips at once (resumable; a progress bar and a summary)",
                     batch.batch_arguments, batch.batch_command, per_model=True),
    "worker": Command("run batches' clips for a Temporal service (`batch --temporal`), on any number of machines",
                      worker.worker_arguments, worker.worker_command),
    "fetch": Command("get a job's result from its task id (see `jobs`), even after a crash",
                     fetch.fetch_arguments, fetch.fetch_command),
    "jobs": Command("list the journal's jobs, newest first", fetch.jobs_arguments, fetch.jobs_command),
    "spend": Command("what the journal's jobs cost, by day, provider and model (measured where the provider tells, "
                     "else estimated), and today and this month against the caps",
                     spend.spend_arguments, spend.spend_command),
    "doctor": Command("check keys (never shown), providers, PyAV, the state folder and ComfyUI",
                      lambda parser: None, dev.doctor_command),
    "emulator": Command("run the local provider emulator (no keys, no network, synthetic sound)",
                        dev.emulator_arguments, dev.emulator_command),
    "demo": Command("emulator + MMAudio on a generated clip → an MP4 with sound",
                    dev.demo_arguments, dev.demo_command),
    "bench": Command("measure the time and memory Sonify adds around the model (on the emulator)",
                     dev.bench_arguments, dev.bench_command),
}
