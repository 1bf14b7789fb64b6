"""python -m sonify …: run a model on a file, fetch a job's result, list jobs, start the emulator,
or try the demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import Cancelled, ConfigurationError, JobFailed, JobTimedOut, ProviderError, SonifyError, ValidationError
from .models import BY_MODEL_ID as MODELS_BY_ID
from .models import MODELS, ModelSpec

PROVIDERS = ("wavespeed", "fal")
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

    fetch = commands.add_parser("fetch", help="get a job's result from its task id (see `jobs`), even after a crash")
    fetch.add_argument("provider", choices=PROVIDERS)
    fetch.add_argument("task_id")
    fetch.add_argument("--model", help="catalog key or provider model id; needed for fal tasks the journal does not know")
    fetch.add_argument("--video", type=Path, help="the source clip to put the sound on (default: the journal's, if it exists)")
    fetch.add_argument("-o", "--output", type=Path, default=Path("."), help="folder for the result (default: .)")

    jobs = commands.add_parser("jobs", help="list the journal's jobs, newest first")
    jobs.add_argument("-n", "--limit", type=int, default=30, help="how many (default: 30)")

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
        if args.command == "fetch":
            return _fetch(args.provider, args.task_id, args.model, args.video, args.output)
        if args.command == "jobs":
            return _jobs(args.limit)
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
    with _ctrl_c_cancels() as cancelled:
        result = pipeline.run(spec, params, media.VideoSource(path=str(video)), out_dir=out_dir,
                              on_progress=_printer(), is_cancelled=cancelled)
    print(json.dumps(result.info, indent=2), file=sys.stderr)
    print(result.video_path)
    return 0


def _fetch(provider: str, task_id: str, model: str | None, video: Path | None, out_dir: Path) -> int:
    """Writes the provider's result file, its sound as WAV and, when the source is known, the source
    with the new sound; prints their paths."""
    from . import media, pipeline

    if video is not None and not video.is_file():
        raise ValidationError("--video", f"no such file: {video}")
    source = media.VideoSource(path=str(video)) if video is not None else None
    with _ctrl_c_cancels() as cancelled:
        result = pipeline.fetch(provider, task_id, out_dir=out_dir, model=model, video=source,
                                on_progress=_printer(), is_cancelled=cancelled)
    name = pipeline.output_name(MODELS_BY_ID[(provider, result.info["model"])], task_id)
    written = [out_dir / f"{name}.wav"]
    media.write_wav(result.audio, result.sample_rate, written[0])
    if result.video_path is not None:
        written.append(result.video_path)
    if result.video_path is None or result.info.get("source"):  # else the video is the provider's own file
        provider_file = Path(result.info["result_file"])
        written.append(out_dir / f"{name}-provider{provider_file.suffix}")
        shutil.copyfile(provider_file, written[-1])
    print(json.dumps(result.info, indent=2), file=sys.stderr)
    for path in written:
        print(path)
    return 0


def _jobs(limit: int) -> int:
    from . import config, jobs

    rows = jobs.guarded("listing jobs", lambda journal: journal.recent(limit), default=None)
    if rows is None:
        print(f"no usable job journal in {config.state_dir()}", file=sys.stderr)
        return 1
    print(f"{'time':19}  {'provider':9}  {'model':30}  {'task id':36}  {'status':16}  {'cost':>7}  result")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created_at))
        cost = f"${row.cost_usd:.3f}" if row.cost_usd is not None else "-"
        print(f"{when:19}  {row.provider:9}  {row.model:30}  {row.task_id or '-':36}  {row.status:16}  {cost:>7}  "
              f"{row.result_path or '-'}")
    return 0


def _printer() -> Callable[[str, float | None], None]:
    """Progress lines on stderr, each printed once."""
    shown: list[str] = [""]

    def show(text: str, fraction: float | None) -> None:
        if text != shown[0]:
            shown[0] = text
            print(f"  {text}", file=sys.stderr)

    return show


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
        print("cancelling… (Ctrl-C again to quit at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


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
