"""The folders a Temporal worker takes clips from and writes results into: `sonify worker --allow DIR`.

A clip's workflow input is whatever its starter wrote. Anyone who can start a workflow on the task queue could
otherwise name any video the worker can read (uploaded and paid for with the worker's key) or an output name
that climbs out of the output folder (the result and its sidecar written anywhere the worker can write). So a
worker takes a clip only from under a folder it was started with, writes only into an output folder under one of
them, and only under a plain file name — every path resolved, symbolic links followed, before any request.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError, ValidationError

NAME_BYTES = 200  # a result's stem: room for ".sonify.json" and a temporary prefix within a file name's 255 bytes


SUFFIXES = (".mp4", ".sonify.json")  # the files a clip's result is (batch.keep)


@dataclass(frozen=True)
class AllowedFolders:
    """Resolved folders; a path counts as inside one when it is the folder or below it."""

    folders: tuple[Path, ...]

    @classmethod
    def of(cls, folders: Iterable[Path | str]) -> AllowedFolders:
        """The `--allow` folders, each an existing folder (resolved), else ConfigurationError naming it."""
        resolved = []
        for folder in folders:
            path = Path(folder).expanduser().resolve()
            if not path.is_dir():
                raise ConfigurationError(f"--allow {folder}: no such folder")
            resolved.append(path)
        return cls(tuple(resolved))

    def clip(self, source: str) -> Path:
        """The clip's real path: a file under an allowed folder (ValidationError "source" otherwise)."""
        path = Path(source).resolve()
        if not self._inside(path):
            raise ValidationError("source", f"{source} is not under a folder this worker was started with (--allow)"
                                  + (f"; it links to {path}" if path != Path(source) else ""))
        if not path.is_file():
            raise ValidationError("source", f"no such file: {source}")
        return path

    def output(self, out_dir: str, name: str) -> Path:
        """The output folder's real path, under an allowed folder ("out_dir"), with `name` a plain file name whose
        result files stay in it, no link leading elsewhere ("name")."""
        folder = Path(out_dir).resolve()
        if not self._inside(folder):
            raise ValidationError("out_dir", f"{out_dir} is not under a folder this worker was started with (--allow)"
                                  + (f"; it links to {folder}" if folder != Path(out_dir) else ""))
        if (not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name
                or any(ord(c) < 32 for c in name) or len(name.encode("utf-8", "surrogatepass")) > NAME_BYTES):
            raise ValidationError("name", f"must be a plain file name of at most {NAME_BYTES} bytes, without a "
                                          f"folder or a control character, got {name[:80]!r}")
        for suffix in SUFFIXES:
            if (folder / f"{name}{suffix}").resolve().parent != folder:
                raise ValidationError("name", f"{name}{suffix} in {out_dir} is a link that leads out of the folder")
        return folder

    def _inside(self, path: Path) -> bool:
        return any(path == folder or folder in path.parents for folder in self.folders)
