"""The result onto the picture: decode, fit to the picture's exact length, mux, each file written whole or not at
all (the one atomic writer, `atomic.write_atomically`)."""

from __future__ import annotations

import hashlib
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from .. import media
from ..atomic import write_atomically
from ..catalog import ModelSpec
from ..loudness_target import Target
from ..media import sound_check
from . import receipts
from .types import (
    Delivery,
    JobInfo,
    StageTimer,
)


def deliver(spec: ModelSpec, delivery: Delivery, source: Path | None, seconds: Fraction, info: JobInfo,
            timer: StageTimer, out_dir: Path, loudness: Target | None = None) -> tuple[np.ndarray, Path | None]:
    """The result in the output folder: v2a sound fitted to the clip (`source`, `seconds` long), checked and
    brought to `loudness` (sound_check.finish), and put on its picture (frames: no file, the caller puts it on the
    frames) — the provider's own AAC copied when the sound is as it made it; lipsync's video as the provider made
    it."""
    final_video = out_dir / f"{output_name(spec, info.task_id or '')}.mp4"
    tags = receipts.tags(info.as_dict(), final_video)
    if spec.output != "audio":
        write_atomically(final_video, lambda path: media.copy_tagged(delivery.path, path, tags))
        return delivery.samples, final_video
    with timer("align"):
        samples = media.fit_length(delivery.samples, delivery.sample_rate, seconds)
    with timer("check"):
        made = delivery.samples.shape[1] / delivery.sample_rate
        samples, info.sound = sound_check.finish(samples, delivery.sample_rate, float(seconds), made, loudness)
    if source is None:
        return samples, None
    with timer("mux"):
        info.audio_copied = _mux_sound(source, delivery.path, samples, delivery.sample_rate, seconds, final_video,
                                       tags, copy=info.sound["loudness"] is None)
    return samples, final_video


def _mux_sound(source: Path, result_file: Path, samples: np.ndarray, rate: int, seconds: Fraction,
               target: Path, metadata: dict[str, str] | None = None, copy: bool = True) -> bool:
    """The source picture (copied) with the new sound: the provider's own AAC packets, copied and cut at
    the picture's end, when they reach that far (and `copy`: `samples` are the provider's sound as it made it);
    else `samples` (fitted to the picture) encoded as AAC, once. True if the sound was copied."""
    copied = False

    def write(path: Path) -> None:
        nonlocal copied
        copied = copy and media.copy_mux(source, result_file, path, seconds, metadata)
        if not copied:
            media.mux(source, samples, rate, path, metadata=metadata)

    write_atomically(target, write)
    return copied


PLAIN_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")  # a task id that is a file name as it is, on any file system


def output_name(spec: ModelSpec, task_id: str) -> str:
    """The stem of a job's files (the output folder, the result store), one per task: the whole task id
    when it is a plain lower-case id (WaveSpeed's hex, fal's UUIDs), else a readable part of it and a hash
    of all of it after a `~` (which no plain id has), so no two tasks share a file on any file system,
    case-insensitive ones included."""
    if PLAIN_ID.fullmatch(task_id):
        return f"sonify-{spec.key}-{task_id}"
    readable = re.sub(r"[^a-z0-9_.-]", "_", task_id.lower())[:40]
    return f"sonify-{spec.key}-{readable}~{hashlib.sha256(task_id.encode()).hexdigest()[:32]}"
