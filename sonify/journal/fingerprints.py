"""What a job is, as a hash: files, arrays and the parameters sent, so an identical job is known again."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any

import numpy as np

CHUNK = 1 << 20


# --- hashing ---------------------------------------------------------------------------------

_file_hashes: dict[tuple, str] = {}


_file_hashes_lock = threading.Lock()


def hash_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks. Remembered per (path, size, mtime, inode) in
    this process, so a source used again is not read again."""
    st = os.stat(path)
    memo = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    with _file_hashes_lock:
        known = _file_hashes.get(memo)
    if known is not None:
        return known
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb") as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    with _file_hashes_lock:
        _file_hashes[memo] = digest.hexdigest()
    return _file_hashes[memo]


def hash_array(array: np.ndarray, *extra: Any) -> str:
    """sha256 of an array's bytes, dtype and shape, plus `extra` (an exact fps, a sample rate)."""
    data = np.ascontiguousarray(array)
    digest = hashlib.sha256(repr((str(data.dtype), data.shape, [str(e) for e in extra])).encode())
    digest.update(memoryview(data).cast("B"))
    return digest.hexdigest()


def digest_of(*parts: Any) -> str:
    """sha256 of the canonical JSON of `parts`."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(provider: str, endpoint: str, model_id: str, proxy: Any, params: dict[str, Any],
                media: dict[str, str]) -> str:
    """What the user asked for: provider and the endpoint that serves it (the real API, the emulator
    or a proxy never share results), model, proxy rule, the parameters sent and the content hashes
    of the media (not of encoder output, which may change between versions)."""
    return digest_of("job", 1, provider, endpoint, model_id, repr(proxy), params, media)
