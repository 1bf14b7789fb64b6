"""`sonify fetch` (a job's result from its task id or a receipt, even after a crash) and `sonify jobs` (the
journal's jobs, newest first)."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..catalog import BY_MODEL_ID as MODELS_BY_ID
from ..catalog import PROVIDERS
from ..errors import ValidationError
from .cancel import ctrl_c_cancels
from .output import Output, add_options
from .results import RESULT_VIDEO, result_file, write_result


def fetch_arguments(parser: argparse.ArgumentParser) -> None:
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


def fetch_command(args: argparse.Namespace) -> int:
    """Writes the provider's result file, its sound as WAV and, when the source is known, the source
    with the new sound — or the one file `-o` names; prints their paths."""
    from .. import media, pipeline

    out = Output.of(args)
    provider, task_id, model = _fetched_task(args)
    target = result_file(args.output)
    out_dir = target.parent if target else args.output
    if args.video is not None and not args.video.is_file():
        raise ValidationError("--video", f"no such file: {args.video}")
    source = media.VideoSource(path=str(args.video)) if args.video is not None else None
    with ctrl_c_cancels() as cancelled:
        result = pipeline.fetch(provider, task_id, out_dir=out_dir, model=model, video=source,
                                on_progress=out.progress(), is_cancelled=cancelled)
    if target is not None:
        if result.video_path is None and target.suffix.lower() in RESULT_VIDEO:
            raise ValidationError("-o", f"task {result.info['task_id']}'s result is a sound and its source clip is "
                                        "not known: give the clip with --video, or a sound file to write")
        written = [write_result(result, target)]
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


def jobs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--limit", type=int, default=30, help="how many (default: 30)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per job on stdout, newest first (every journal field but the request)")


def jobs_command(args: argparse.Namespace) -> int:
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
