"""The one atomic writer: every file Sonify leaves for others to read (a result, a sidecar, `-o FILE`, the key file,
a download in the result store, an example's copy) appears whole or not at all. (The journal is SQLite's to write;
scratch files in a run's own temporary folder need no such care.)

The bytes go to a partial file beside the target, which is then renamed over it: a reader of an earlier version
never sees a torn file, and a failure at any point (an error, a Cancel, a full disk) leaves the target as it was
and removes the partial. The partial is created here, exclusively, under a name of its own (so concurrent writers
of one target never share it, and each leaves a whole file), never as an existing file or a link planted under
that name; the rename replaces a link at the target itself, never what it points to.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ConfigurationError

PRIVATE = 0o600  # a file only its owner may read (the key file, a download), from the moment it exists
SHARED = 0o666  # as any new file: the umask decides
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # not on Windows


@contextlib.contextmanager
def atomically(target: Path, *, mode: int = SHARED, sync: bool = False) -> Iterator[BinaryIO]:
    """The partial file for `target`, open for writing (its path is `Path(file.name)`): renamed over `target`
    when the block ends without an error, removed when it does not. `mode`: the new file's permission bits
    (before the umask). `sync`: its bytes flushed to the disk before the rename (the file left open by the block).
    Errors come out as they are."""
    partial = target.with_name(f".{target.stem}-{uuid.uuid4().hex[:12]}{target.suffix}")
    out = open(partial, "xb", opener=lambda path, flags: os.open(path, flags | NOFOLLOW, mode))  # noqa: SIM115
    try:  # from here on the partial is this writer's own (a name taken by another is refused above, not removed)
        with out:
            yield out
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_atomically(target: Path, write: Callable[[Path], Any], *, mode: int = SHARED) -> None:
    """`write(path)` makes the file at `path` (a writer that opens a file by its name, as PyAV does: the partial
    keeps `target`'s suffix, which picks the container), then it becomes `target` (see `atomically`). An OSError
    (a full disk, a read-only folder) is a ConfigurationError naming `target`."""
    try:
        with atomically(target, mode=mode) as out:
            out.close()  # the writer opens it itself (on Windows, a file open here could not be renamed)
            write(Path(out.name))
    except OSError as exc:
        raise ConfigurationError(f"cannot write {target} ({exc.strerror or exc})") from None
