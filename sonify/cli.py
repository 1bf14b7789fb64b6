"""python -m sonify …: run a model on a file, start the emulator, or try the demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import Cancelled, ConfigurationError, JobFailed, JobTimedOut, ProviderError, SonifyError, ValidationError
from .models import MODELS, ModelSpec

EXIT = {ValidationError: 3, ConfigurationError: 3, ProviderError: 4, JobFailed: 5, JobTimedOut: 5, Cancelled: 130}
DEMO_KEY = "sonify-demo-key"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sonify", description="Sound for video with hosted models.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a model on a video file")
    run.add_argument("model", choices=sorted(MODELS))
    run.add_argument("--video", required=True, type=Path)
    run.add_argument("-o", "--output", type=Path, default=Path("."), help="folder for the result (default: .)")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a model parameter")

    emulator = commands.add_parser("emulator", help="run the local provider emulator (no keys, no network)")
    emulator.add_argument("--port", type=int, default=8787)
    emulator.add_argument("--key", default=DEMO_KEY, help="the API key the emulator accepts")
    emulator.add_argument("--model-seconds", type=float, default=2.0, help="how long each job takes")

    demo = commands.add_parser("demo", help="emulator + MMAudio on a generated clip → an MP4 with sound")
    demo.add_argument("-o", "--output", type=Path, default=Path("sonify-demo"))

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "run":
            return _run(MODELS[args.model], args.video, args.output, _parse_params(MODELS[args.model], args.param))
        if args.command == "emulator":
            return _emulator(args.port, args.key, args.model_seconds)
        return _demo(args.output)
    except SonifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return next((code for kind, code in EXIT.items() if isinstance(exc, kind)), 1)
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


def _parse_params(spec: ModelSpec, pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ValidationError("--param", f"expected NAME=VALUE, got {pair!r}")
        try:
            kind = spec.param(name).kind
        except KeyError:
            raise ValidationError(name, f"is not a parameter of {spec.title}") from None
        params[name] = _convert(name, kind, text)
    return params


def _convert(name: str, kind: str, text: str) -> Any:
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ValidationError(name, f"must be a number, got {text!r}") from None
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValidationError(name, f"must be true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    return text


def _run(spec: ModelSpec, video: Path, out_dir: Path, params: dict[str, Any]) -> int:
    from . import media, pipeline

    if not video.is_file():
        raise ValidationError("--video", f"no such file: {video}")
    shown: list[str] = [""]

    def show(text: str, fraction: float | None) -> None:
        if text != shown[0]:
            shown[0] = text
            print(f"  {text}", file=sys.stderr)

    result = pipeline.run(spec, params, media.VideoSource(path=str(video)), out_dir=out_dir, on_progress=show)
    print(json.dumps(result.info, indent=2), file=sys.stderr)
    print(result.video_path)
    return 0


def _emulator(port: int, key: str, model_seconds: float) -> int:
    from .emulator import Emulator

    with Emulator(api_keys=(key,), model_seconds=model_seconds).start(port) as emu:
        print(f"Sonify emulator (synthetic sound, not a real model) at {emu.url}", file=sys.stderr)
        print(f"  export SONIFY_WAVESPEED_URL={emu.url} WAVESPEED_API_KEY={key}", file=sys.stderr)
        emu.wait()
    return 0


def _demo(out_dir: Path) -> int:
    """The whole path on this machine: a generated clip, the emulator, the MMAudio pipeline."""
    import numpy as np

    from . import media
    from .emulator import Emulator
    from .models import MMAUDIO_V2

    out_dir.mkdir(parents=True, exist_ok=True)
    clip = out_dir / "demo-clip.mp4"
    media.frames_to_mp4(_demo_frames(np), Fraction(24), clip)
    with Emulator(api_keys=(DEMO_KEY,), model_seconds=1.0).start() as emu:
        os.environ.update(WAVESPEED_API_KEY=DEMO_KEY, SONIFY_WAVESPEED_URL=emu.url,
                          SONIFY_STATE_DIR=str(out_dir / "state"))
        print(f"emulator (synthetic sound, not a real model) at {emu.url}", file=sys.stderr)
        code = _run(MMAUDIO_V2, clip, out_dir, {"prompt": "a ball bouncing on a wooden floor"})
    return code


def _demo_frames(np: Any) -> Any:
    """4 s at 24 fps, 320×240: a white ball that bounces; its impacts make the loudest motion."""
    n, h, w = 96, 240, 320
    frames = np.full((n, h, w, 3), 0.1, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        phase = (i % 24) / 24
        y = 40 + 160 * (1 - (2 * phase - 1) ** 2)  # a bounce a second, floor at the bottom
        x = 40 + 240 * i / n
        frames[i][(yy - (h - y)) ** 2 + (xx - x) ** 2 < 18**2] = 1.0
    return frames
