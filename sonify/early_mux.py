"""A result's sound put on the source picture while the result is still being verified.

Once a job's result is downloaded, two things read it: the check that decodes its sound (remote_job's verify: the
job counts as delivered only if it passes) and the mux that copies its AAC packets onto the source's picture
(media.copy_mux). Neither needs the other, so the mux starts in a thread the moment the file is down, into a
hidden file beside the output, and the delivery takes that file (a rename) once the check has passed. A sound
that cannot be copied (not AAC, or too short: it needs the fitted samples) leaves nothing, and the delivery muxes
as before; so does a result that fails its check, whose early file is removed.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from fractions import Fraction
from pathlib import Path

from . import config, media

log = logging.getLogger("sonify")


class EarlyMux:
    """The source picture `source` (`seconds` long) with the result's AAC sound, made into a hidden file in
    `folder` from start(result) on."""

    def __init__(self, source: Path, seconds: Fraction, folder: Path) -> None:
        self.source, self.seconds = source, seconds
        self.path = folder / f".sonify-early-{uuid.uuid4().hex[:12]}.mp4"
        self.copied = False
        self.emulator = False  # the result is the emulator's (its title tag): the file says so too
        self._thread: threading.Thread | None = None

    def start(self, result: Path) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._mux, args=(result,), name="sonify-early-mux", daemon=True)
            self._thread.start()

    def take(self, target: Path) -> bool:
        """The early file moved to `target` if it was made (True); else False and nothing done."""
        if self._thread is None:
            return False
        self._thread.join()
        if not self.copied:
            return False
        os.replace(self.path, target)
        return True

    def discard(self) -> None:
        """Remove the early file, if one was made and not taken."""
        if self._thread is not None:
            self._thread.join()
        self.path.unlink(missing_ok=True)

    def _mux(self, result: Path) -> None:
        try:
            self.emulator = config.emulator is not None or media.title(result) == config.EMULATOR_TITLE
            label = {"title": config.EMULATOR_TITLE} if self.emulator else None
            self.copied = media.copy_mux(self.source, result, self.path, self.seconds, label)
        except Exception as exc:  # noqa: BLE001 - the delivery muxes after the check, as without this
            log.debug("no early mux of %s (%s)", result.name, exc)
            self.path.unlink(missing_ok=True)
