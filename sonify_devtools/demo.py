"""The whole path on this machine, with no key and no network: a generated clip, the emulator, the
MMAudio pipeline. Used by `python -m sonify demo` and by scripts/readme_figure.py."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

DEMO_KEY = "sonify-demo-key"
DEMO_FAL_KEY = "sonify-demo-id:sonify-demo-secret"
PROMPT = "a ball bouncing on a wooden floor"
FPS = Fraction(24)


def demo_frames() -> np.ndarray:
    """4 s at 24 fps, 320×240: a white ball that bounces once a second; its impacts make the loudest motion."""
    n, h, w = 96, 240, 320
    frames = np.full((n, h, w, 3), 0.1, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        phase = (i % 24) / 24
        y = 40 + 160 * (1 - (2 * phase - 1) ** 2)  # height above the floor: 40 px at each impact
        x = 40 + 240 * i / n
        frames[i][(yy - (h - y)) ** 2 + (xx - x) ** 2 < 18**2] = 1.0
    return frames


def run_demo(out_dir: Path, on_progress: Callable[[str, float | None], None] | None = None,
             on_emulator: Callable[[str], None] | None = None):
    """Write out_dir/demo-clip.mp4, run MMAudio v2 on it against a private emulator and return the
    pipeline's Result (its video_path: the clip with the synthetic sound). The process environment is
    pointed at the emulator (key, URL, a state folder in out_dir) for the run, then restored."""
    from sonify import media, pipeline
    from sonify.catalog import MMAUDIO_V2

    from .emulator import Emulator

    out_dir.mkdir(parents=True, exist_ok=True)
    clip = out_dir / "demo-clip.mp4"
    media.frames_to_mp4(demo_frames(), FPS, clip)
    with Emulator(api_keys=(DEMO_KEY,), model_seconds=1.0).start() as emu:
        if on_emulator is not None:
            on_emulator(emu.url)
        with _environment(WAVESPEED_API_KEY=DEMO_KEY, SONIFY_WAVESPEED_URL=emu.url,
                          SONIFY_STATE_DIR=str(out_dir / "state")):
            return pipeline.run(MMAUDIO_V2, {"prompt": PROMPT}, media.VideoSource(path=str(clip)), out_dir=out_dir,
                                on_progress=on_progress)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for a block, then put the previous values back."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
