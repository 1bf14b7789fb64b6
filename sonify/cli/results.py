"""`-o FILE` for `run` and `fetch`: which files a result can be written as, and writing it whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..atomic import write_atomically
from ..errors import ValidationError

RESULT_VIDEO = (".mp4", ".mov", ".mkv")  # `run -o FILE`: the clip with its new sound, picture and sound copied


RESULT_SOUND = (".wav", ".flac", ".m4a")  # `run -o FILE`: the sound alone


UNWRITABLE = (".webm", ".avi", ".m4v", ".mp3", ".aac", ".ogg", ".opus")  # media, but not written by `run -o`


def result_file(output: Path) -> Path | None:
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


def write_result(result: Any, target: Path, codec: str | None = None) -> Path:
    """The result (its sound; its video, if any, a .mp4 in target's folder) as `target`, written whole or not at
    all: a .mov/.mkv with the .mp4's packets copied, or (`codec`: lossless) its picture's packets and the result's
    samples; with its receipt (the .mp4 has it already)."""
    from .. import media
    from ..pipeline import receipts

    made = result.video_path
    suffix = target.suffix.lower()
    if suffix == ".mp4":
        os.replace(made, target)
        return target
    tags = receipts.tags(result.info, target)
    if suffix in RESULT_SOUND:
        write_atomically(target, lambda path: media.write_audio(result.audio, result.sample_rate, path,
                                                                         metadata=tags))
    elif codec is not None:
        write_atomically(target, lambda path: media.mux(made, result.audio, result.sample_rate, path,
                                                                 codec=codec, metadata=tags))
    else:
        write_atomically(target, lambda path: media.rewrap(made, path, tags))
    if made is not None:
        made.unlink()
    return target
