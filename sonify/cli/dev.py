"""`sonify doctor`, `emulator`, `demo` and `bench`, and the loader of the dev tools the last three need (the
sonify_devtools package beside the engine, missing where only the engine is installed)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ConfigurationError, ValidationError
from .exits import EXIT_DOCTOR, os_error_text
from .output import Output, add_options
from .params import number_type


def doctor_command(args: argparse.Namespace) -> int:
    from . import doctor

    results = doctor.checks(Path.cwd())
    print("Sonify doctor (keys are never shown)")
    for check in results:
        print(check.line())
    problems = sum(1 for check in results if check.ok is False)
    print(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "all good")
    return EXIT_DOCTOR if problems else 0


def emulator_arguments(parser: argparse.ArgumentParser) -> None:
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
    value = number_type("float")(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def emulator_command(args: argparse.Namespace) -> int:
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
    value = number_type("int")(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {value}")
    return value


def demo_arguments(parser: argparse.ArgumentParser) -> None:
    if _devtool_for_arguments("demo", parser) is None:
        return
    parser.add_argument("-o", "--output", type=Path, default=Path("sonify-demo"), help="folder (default: sonify-demo)")
    add_options(parser, "print the result as one JSON object on stdout (as `run --json` does), and nothing else there")


def demo_command(args: argparse.Namespace) -> int:
    run_demo = _devtool("demo").run_demo
    out = Output.of(args)

    def announce(url: str) -> None:
        out.note(f"emulator (synthetic sound, not a real model) at {url}")

    result = run_demo(args.output, on_progress=out.progress(), on_emulator=announce)
    out.job_info(result.info)
    out.result(result.video_path, result.info)
    return 0


def bench_arguments(parser: argparse.ArgumentParser) -> None:
    plans = _devtool_for_arguments("bench.plans", parser)
    if plans is not None:
        plans.add_arguments(parser)


def bench_command(args: argparse.Namespace) -> int:
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
