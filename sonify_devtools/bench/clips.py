"""Generated benchmark clips: a moving, textured picture with a little grain (so that it compresses
like footage, not like a flat test card) and a bright block that jumps (so the emulator's motion-driven
sound has onsets). Written frame by frame: a 30 s 1080p clip costs little memory. Kept in the work
folder and reused by later runs."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .plans import SIZES, ClipSpec

SOURCE_OPTIONS = {"preset": "ultrafast", "crf": "18"}  # a generous source
CAMERA_PRESET = "veryfast"  # with a ClipSpec's bitrate: B-frames and CABAC, like a camera's or a phone's file
GRAIN = 16  # grain amplitude, out of 255


def clip(spec: ClipSpec, folder: Path) -> Path:
    """The clip's file in `folder`, written if it is not there yet."""
    path = folder / f"bench-{spec.name}.mp4"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.mp4")
        _write(partial, spec)
        partial.replace(path)
    return path


def variant(source: Path, index: int, folder: Path) -> Path:
    """A copy of `source` with the same picture packets and a different title tag: another file (another
    content hash, so no upload or result is shared) at no encoding cost."""
    path = folder / f"{source.stem}-v{index:02d}.mp4"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as src, av.open(str(path), "w", format="mp4") as dst:
        dst.metadata["title"] = f"Sonify benchmark variant {index}"
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        for packet in src.demux(vin):
            if packet.dts is not None and packet.size:
                packet.stream = vout
                dst.mux(packet)
    return path


def _write(path: Path, spec: ClipSpec) -> None:
    width, height = SIZES[spec.size]
    rate = Fraction(spec.fps)
    with av.open(str(path), "w", format="mp4") as container:
        options = {"preset": CAMERA_PRESET, "b": spec.bitrate} if spec.bitrate else dict(SOURCE_OPTIONS)
        stream = container.add_stream("libx264", rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = 1 / rate
        stream.thread_type = "AUTO"
        for i, picture in enumerate(_pictures(spec.frames, width, height)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _pictures(n: int, width: int, height: int) -> Iterator[np.ndarray]:
    """[H, W, 3] uint8 frames: two drifting sine gratings, shifting grain, a block jumping twice a second."""
    grain = np.random.default_rng(7).integers(0, GRAIN, size=(height + 64, width + 64), dtype=np.uint8)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    side = max(8, height // 6)
    for i in range(n):
        t = np.float32(i / max(n, 1))
        level = 0.5 + 0.25 * np.sin(2 * np.pi * (3 * x + 2 * y + t)) + 0.15 * np.sin(2 * np.pi * (11 * x - 7 * y - 2 * t))
        gray = (level * 200).astype(np.uint8) + grain[(2 * i) % 64 :][:height, (3 * i) % 64 :][:, :width]
        picture = np.stack([gray, np.roll(gray, width // 7, axis=1), np.roll(gray, height // 5, axis=0)], axis=-1)
        left = int((0.1 + 0.8 * ((i * 7) % n) / n) * (width - side))
        top = (height - side) // 2
        picture[top : top + side, left : left + side] = 255 if (i // 12) % 2 else 20
        yield picture
