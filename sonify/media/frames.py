"""IMAGE frames as the engine takes them: every value checked and the content fingerprinted in one
pass, a cache-sized block at a time, with no copy of the tensor.

A 10 s 1080p clip of float frames is 7.5 GB: sha256 over it took 5 s and the old NaN check made a 1.9 GB
mask. xxh3-128 reads it at memory speed; 128 bits keep an accidental collision out of reach, which is
all the result cache needs (the frames are the user's own, not an adversary's).
"""

from __future__ import annotations

import hashlib
import logging
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import ValidationError

log = logging.getLogger("sonify")


BLOCK_BYTES = 1 << 18  # rows per step: about 256 KiB, so the checks read what the hash just brought into cache


TOLERANCE = 1e-3  # float frames may stray this far outside 0..1 (rounding in the node that made them)


def fingerprint(frames: np.ndarray, fps: Fraction) -> str:
    """The frames' content hash (dtype, shape, exact fps and every byte); raises ValidationError("images")
    on a NaN, an infinity or a value outside 0..1."""
    digest = _hasher()
    digest.update(repr(("frames", 1, digest.name, str(frames.dtype), frames.shape, str(fps))).encode())
    check = frames.dtype != np.uint8
    lo, hi = np.float64(np.inf), np.float64(-np.inf)
    for frame in frames:
        rows = frame.reshape(frame.shape[0], -1)  # a view (one frame's copy only if the tensor is strided)
        step = max(1, BLOCK_BYTES // max(1, rows.strides[0]))
        for start in range(0, rows.shape[0], step):
            block = np.ascontiguousarray(rows[start:start + step])
            digest.update(memoryview(block).cast("B"))
            if check:  # np.minimum, not min(): a NaN must win
                lo, hi = np.minimum(lo, block.min()), np.maximum(hi, block.max())
    if check:
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValidationError("images", "contains NaN or infinite pixel values")
        if lo < -TOLERANCE or hi > 1 + TOLERANCE:
            raise ValidationError("images", "pixel values must be in 0..1")
    return digest.hexdigest()


def _hasher() -> Any:
    """xxh3-128 (requirements.txt); on an install that lacks it (a pack updated without its requirements),
    blake2b-128 — as sure, about 5 times slower — so the node still works."""
    try:
        import xxhash
    except ImportError:
        log.warning("the xxhash package is missing (pip install -r requirements.txt): frames are hashed more slowly")
        return hashlib.blake2b(digest_size=16)
    return xxhash.xxh3_128()
