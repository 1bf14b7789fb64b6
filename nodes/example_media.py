"""The example workflows' clip and voice (example_workflows/media/) in ComfyUI's input folder, so that a
template runs the first time it is opened: Load Video and Load Audio list that folder's own files only (not
its subfolders, nor any other folder ComfyUI knows).

Each file is a copy, not a link: ComfyUI 0.33's Load Video and Load Audio resolve links and refuse a file whose
real path is outside the input folder ("Invalid video file"). A link this pack made there before is replaced by
a copy. A file of that name already there, or a link to anywhere else, is the user's and is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..sonify.atomic import atomically

log = logging.getLogger("sonify")

MEDIA = Path(__file__).resolve().parents[1] / "example_workflows" / "media"


def offer(input_dir: Path, media_dir: Path = MEDIA) -> list[str]:
    """Copy each example file into `input_dir` where it is missing (or is an old link of this pack's); the
    names newly placed there."""
    placed = []
    try:
        sources = sorted(media_dir.iterdir())
    except OSError as exc:  # an engine-only copy, a trimmed install: the pack loads without its examples' media
        log.warning("no example media to offer (%s)", exc.strerror or exc)
        return placed
    for source in sources:
        target = input_dir / source.name
        if target.is_symlink() and not _is_pack_link(target):
            continue
        if target.exists() and not target.is_symlink():
            continue
        try:
            _copy(source, target)
        except OSError as exc:
            log.warning("could not put the example file %s in %s: %s", source.name, input_dir, exc.strerror or exc)
            continue
        placed.append(source.name)
    return placed


def _is_pack_link(link: Path) -> bool:
    """A link this pack made: to a file of the same name in a Sonify checkout's example_workflows/media (this
    one, or one since moved or deleted, so the link may dangle)."""
    pointed = Path(os.readlink(link))
    return pointed.name == link.name and pointed.parent.parts[-2:] == ("example_workflows", "media")


def _copy(source: Path, target: Path) -> None:
    """A copy that appears whole or not at all (Load Video lists the folder at any moment), replacing a link."""
    with atomically(target) as out, open(source, "rb") as data:
        shutil.copyfileobj(data, out)
