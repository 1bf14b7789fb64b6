"""Draw the README's picture, docs/demo.png, from a real run: a strip of stills from the video above
the waveform and the spectrogram of the sound Sonify put on it, on one time axis.

    .venv/bin/python scripts/readme_figure.py                  # runs the demo (emulator + MMAudio v2)
    .venv/bin/python scripts/readme_figure.py --result out.mp4 --label "MMAUDIO V2 ON WAVESPEED"

With no --result it runs `python -m sonify demo`'s path (a generated clip, the local emulator, the
MMAudio pipeline), so the sound is the emulator's synthetic sound, and the picture says so. Drawn
with numpy only (a 5x7 pixel font included) and written as PNG by PyAV: no plotting dependency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sonify import media  # after the path is set: the script runs from anywhere
from sonify_devtools.emulator.synth import TITLE

WIDTH = 960
MARGIN = 16
STILLS = 12  # not a multiple of the demo's one bounce a second: the stills show the ball at several heights
WAVE_HEIGHT = 110
SPEC_HEIGHT = 150
MAX_HZ = 8000
BACKGROUND = (18, 20, 26)
INK = (225, 228, 235)
DIM = (120, 126, 140)
WAVE = (94, 208, 196)
# Spectrogram colours from quiet to loud (dark blue, purple, orange, pale yellow).
RAMP = np.array([(18, 20, 26), (40, 30, 90), (120, 40, 130), (210, 80, 70), (250, 170, 60), (252, 245, 190)], float)
EMULATOR_LABEL = ("MMAUDIO V2 THROUGH THE LOCAL EMULATOR: SYNTHETIC SOUND WHOSE LOUDNESS FOLLOWS THE MOTION "
                  "- NOT A REAL MODEL")
LEVELS = 24  # the spectrogram is quantised to this many colours: it keeps the PNG small

# 5x7 pixel font: each glyph is 7 rows of 5 bits, "#" set.
FONT_ROWS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#", "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.", "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####", "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####", "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.", "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#", "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#", "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.", "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#", "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.", "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.", "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.", "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..", "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.", "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####", "3": "####. ....# ....# .###. ....# ....# ####.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.", "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.", "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.", "9": ".###. #...# #...# .#### ....# ...#. .##..",
    " ": "..... ..... ..... ..... ..... ..... .....", "-": "..... ..... ..... ##### ..... ..... .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..", ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....", "/": "....# ....# ...#. ..#.. .#... #.... #....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.", ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....", "=": "..... ..... ##### ..... ##### ..... .....",
}
FONT = {char: np.array([[c == "#" for c in row] for row in rows.split()], bool) for char, rows in FONT_ROWS.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--result", type=Path, help="an existing result (a clip with Sonify's sound); default: run the demo")
    parser.add_argument("--label", help="what made the sound (default: read from the file)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "demo.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sonify-figure-") as tmp:
        result = args.result or _run_demo(Path(tmp))
        label = args.label or (_label(result) if args.result else EMULATOR_LABEL)
        picture = figure(result, label)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_png(picture, args.output)
    print(f"{args.output} ({args.output.stat().st_size // 1024} KB, {picture.shape[1]}x{picture.shape[0]})")
    return 0


def _run_demo(work: Path) -> Path:
    from sonify_devtools.demo import run_demo

    return run_demo(work).video_path


def _label(path: Path) -> str:
    with av.open(str(path)) as container:
        title = container.metadata.get("title", "")
    return EMULATOR_LABEL if title == TITLE else "SOUND MADE BY SONIFY"


# --- the figure ---


def figure(path: Path, label: str) -> np.ndarray:
    """[H, W, 3] uint8: title, stills, waveform, spectrogram, time axis."""
    frames, fps = media.decode_frames(path)
    audio, rate = media.decode_audio(path)
    seconds = len(frames) / float(fps)
    audio = media.fit_length(audio, rate, seconds).mean(axis=0)
    inner = WIDTH - 2 * MARGIN
    parts = [
        _text_block("SONIFY: A CLIP AND THE SOUND IT GOT", INK, scale=2),
        _text_block(label.upper(), INK),
        _text_block("VIDEO (GENERATED CLIP: A BALL BOUNCING ONCE A SECOND)" if label == EMULATOR_LABEL else "VIDEO", DIM),
        _stills(frames, inner),
        _text_block("WAVEFORM", DIM),
        waveform(audio, inner),
        _text_block(f"SPECTROGRAM 0 - {MAX_HZ // 1000} KHZ", DIM),
        spectrogram(audio, rate, inner),
        _time_axis(seconds, inner),
    ]
    body = np.concatenate([_pad(part, inner) for part in parts], axis=0)
    canvas = np.empty((body.shape[0] + 2 * MARGIN, WIDTH, 3), np.uint8)
    canvas[:] = BACKGROUND
    canvas[MARGIN:-MARGIN, MARGIN:-MARGIN] = body
    return canvas


def _stills(frames: np.ndarray, width: int) -> np.ndarray:
    """STILLS frames, each taken at the middle of its slot of the time axis, side by side."""
    slot = width // STILLS
    n, h, w, _ = frames.shape
    tile_h = round(h * (slot - 4) / w)
    tiles = []
    for k in range(STILLS):
        frame = frames[min(n - 1, int((k + 0.5) * n / STILLS))]
        tile = np.empty((tile_h, slot, 3), np.uint8)
        tile[:] = BACKGROUND
        tile[:, 2:slot - 2] = resize((frame * 255).round().astype(np.uint8), tile_h, slot - 4)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize (enough for a thumbnail of flat shapes)."""
    rows = (np.arange(height) * image.shape[0] / height).astype(int)
    cols = (np.arange(width) * image.shape[1] / width).astype(int)
    return image[rows][:, cols]


def waveform(audio: np.ndarray, width: int, height: int = WAVE_HEIGHT,
             colour: tuple[int, int, int] = WAVE) -> np.ndarray:
    """Per pixel column, a line from the lowest to the highest sample in its slice of time."""
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = BACKGROUND
    middle = height // 2
    panel[middle] = DIM
    for x, chunk in enumerate(np.array_split(audio, width)):
        if chunk.size == 0:
            continue
        top = middle - round(float(chunk.max()) * (middle - 2))
        bottom = middle - round(float(chunk.min()) * (middle - 2))
        panel[top:bottom + 1, x] = colour
    return panel


def spectrogram(audio: np.ndarray, rate: int, width: int, height: int = SPEC_HEIGHT) -> np.ndarray:
    """Magnitude STFT (Hann window, one frame per pixel column) in dB over a 60 dB range, low
    frequencies at the bottom, coloured by RAMP."""
    n_fft = 2048
    padded = np.pad(audio, (n_fft // 2, n_fft // 2))
    starts = np.linspace(0, len(audio) - 1, width).astype(int)
    window = np.hanning(n_fft)
    frames = np.stack([padded[s:s + n_fft] * window for s in starts])
    spectrum = np.abs(np.fft.rfft(frames, axis=1))[:, : int(MAX_HZ * n_fft / rate)]
    db = 20 * np.log10(spectrum + 1e-9)
    level = np.clip((db - (db.max() - 60)) / 60, 0, 1)
    rows = np.linspace(0, level.shape[1] - 1, height).astype(int)[::-1]
    level = np.round(level[:, rows].T * (LEVELS - 1)) / (LEVELS - 1)
    return _ramp_colour(level)


def _ramp_colour(level: np.ndarray) -> np.ndarray:
    position = level * (len(RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(RAMP) - 2)
    mix = (position - low)[..., None]
    return (RAMP[low] * (1 - mix) + RAMP[low + 1] * mix).round().astype(np.uint8)


def _time_axis(seconds: float, width: int) -> np.ndarray:
    panel = np.empty((22, width, 3), np.uint8)
    panel[:] = BACKGROUND
    panel[0] = DIM
    for second in range(int(seconds) + 1):
        x = min(width - 1, round(second / seconds * (width - 1)))
        panel[0:5, x] = INK
        text = draw_text(f"{second} S", DIM)
        left = min(max(0, x - text.shape[1] // 2), width - text.shape[1])
        paste(panel, text, 8, left)
    return panel


# --- text ---


def draw_text(text: str, colour: tuple[int, int, int], scale: int = 1) -> np.ndarray:
    """Text in the 5x7 font (unknown characters as spaces), on the background colour."""
    glyphs = [FONT.get(char, FONT[" "]) for char in text]
    mask = np.concatenate([np.pad(g, ((0, 0), (0, 1))) for g in glyphs], axis=1)
    mask = mask.repeat(scale, axis=0).repeat(scale, axis=1)
    image = np.empty((*mask.shape, 3), np.uint8)
    image[:] = BACKGROUND
    image[mask] = colour
    return image


def _text_block(text: str, colour: tuple[int, int, int], scale: int = 1) -> np.ndarray:
    """A line of text with space above and below."""
    line = draw_text(text, colour, scale)
    block = np.empty((line.shape[0] + 12, line.shape[1], 3), np.uint8)
    block[:] = BACKGROUND
    paste(block, line, 8, 0)
    return block


def paste(target: np.ndarray, image: np.ndarray, top: int, left: int) -> None:
    h, w = image.shape[:2]
    target[top:top + h, left:left + w] = image


def _pad(part: np.ndarray, width: int) -> np.ndarray:
    """Left-aligned on a row of the full inner width."""
    row = np.empty((part.shape[0], width, 3), np.uint8)
    row[:] = BACKGROUND
    row[:, : part.shape[1]] = part[:, :width]
    return row


def write_png(image: np.ndarray, path: Path) -> None:
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    packets = codec.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))
    packets += codec.encode(None)
    path.write_bytes(b"".join(bytes(p) for p in packets))


if __name__ == "__main__":
    sys.exit(main())
