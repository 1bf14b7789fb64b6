"""The example workflows' clip and voice (example_workflows/media/) in ComfyUI's input folder, so that a
template runs the first time it is opened: Load Video and Load Audio list that folder's own files only (not
its subfolders, nor any other folder ComfyUI knows).

Each file is a symbolic link to the pack's copy (nothing duplicated; an update of the pack updates it), or a
copy where links cannot be made (Windows without the right). A file of that name already there is the
user's and is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("sonify")

MEDIA = Path(__file__).resolve().parents[1] / "example_workflows" / "media"


def offer(input_dir: Path, media_dir: Path = MEDIA) -> list[str]:
    """Link (else copy) each example file into `input_dir`; the names newly placed there."""
    placed = []
    try:
        sources = sorted(media_dir.iterdir())
    except OSError as exc:  # an engine-only copy, a trimmed install: the pack loads without its examples' media
        log.warning("no example media to offer (%s)", exc.strerror or exc)
        return placed
    for source in sources:
        target = input_dir / source.name
        if target.exists() or target.is_symlink():
            continue
        try:
            os.symlink(source, target)
        except OSError:
            try:
                shutil.copyfile(source, target)
            except OSError as exc:
                log.warning("could not put the example file %s in %s: %s", source.name, input_dir, exc.strerror or exc)
                continue
        placed.append(source.name)
    return placed
