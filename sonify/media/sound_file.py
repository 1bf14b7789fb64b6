"""A sound kept in a file, not in memory: a long clip's joined sound.

It is written block by block as the windows are joined and read back block by block as it is muxed, so a run's
memory does not grow with the clip's length. Whoever wants the whole array (a node's AUDIO output) loads it. The
file is planar float32 (channel c's samples at c × length) in the system's temporary folder, and is removed once
nothing refers to it any more.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

SAMPLE = np.dtype("<f4")


READ_BLOCK = 1 << 16  # samples per channel read back at a time


class SoundFile:
    """float32 [channels, length] at `rate`, on disk."""

    def __init__(self, channels: int, length: int, rate: int) -> None:
        fd, name = tempfile.mkstemp(prefix="sonify-sound-", suffix=".f32")
        os.close(fd)
        self.path = Path(name)
        self.channels, self.length, self.rate = channels, length, rate
        self._remove = weakref.finalize(self, self.path.unlink, missing_ok=True)

    @classmethod
    def written(cls, blocks: Iterable[np.ndarray], length: int, rate: int) -> SoundFile:
        """The sound made of `blocks` ([C, n] each, in order, `length` samples in all), written as they come."""
        sound, passing = cls.writing(blocks, length, rate)
        for _ in passing:
            pass
        return sound

    @classmethod
    def writing(cls, blocks: Iterable[np.ndarray], length: int, rate: int) -> tuple[SoundFile, Iterator[np.ndarray]]:
        """The file the sound of `blocks` goes to, and the blocks themselves, each written to it as it passes on to
        whoever reads them (the first is read here: it gives the channels). The file is whole once all have passed;
        fewer or more than `length` samples in all is a ValueError at the end."""
        given = iter(blocks)
        first = next(given, None)
        if first is None:
            raise ValueError("no sound to write")
        sound = cls(first.shape[0], length, rate)
        return sound, sound._written_as_they_pass(itertools.chain((first,), given))

    def _written_as_they_pass(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        position = 0
        with open(self.path, "r+b") as out:
            out.truncate(self.channels * self.length * SAMPLE.itemsize)
            for block in blocks:
                for channel in range(self.channels):
                    out.seek((channel * self.length + position) * SAMPLE.itemsize)
                    out.write(np.ascontiguousarray(block[channel], SAMPLE).tobytes())
                position += block.shape[1]
                yield block
        if position != self.length:
            raise ValueError(f"the blocks hold {position} samples, not {self.length}")

    def blocks(self, size: int = READ_BLOCK) -> Iterator[np.ndarray]:
        """The sound as [C, n] blocks of at most `size` samples, in order."""
        with open(self.path, "rb") as source:
            for start in range(0, self.length, size):
                n = min(size, self.length - start)
                block = np.empty((self.channels, n), np.float32)
                for channel in range(self.channels):
                    source.seek((channel * self.length + start) * SAMPLE.itemsize)
                    block[channel] = np.frombuffer(source.read(n * SAMPLE.itemsize), SAMPLE)
                yield block

    def load(self) -> np.ndarray:
        """The whole sound, float32 [C, T]."""
        return np.fromfile(self.path, SAMPLE).astype(np.float32, copy=False).reshape(self.channels, self.length)
