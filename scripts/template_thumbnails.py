"""Template card pictures: each example workflow's own picture, drawn from its run through the local emulator.

ComfyUI's template browser shows a square card (a custom node's thumbnail is `<workflow>.jpg`, contained in the
square), so each picture is SIZE x SIZE: a short label, the template's own input drawn the way it is used (a clip's
motion, a grid of frames, three shots, a face, a task id) and what it gives back (a waveform, takes, windows, a
spectrogram), and a line saying the sound is the emulator's. Drawn with numpy and readme_figure's pixel font.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from readme_figure import BACKGROUND, DIM, INK, WAVE, draw_text, paste, resize, spectrogram, waveform

SIZE = 512
MARGIN = 20
BADGE = 80  # the top band left empty: frontend 1.49 lays its "Node graph" badge over it
PICTURE = (152, 322)  # top and bottom of the picture band
SOUND = (336, 476)  # of the sound band
FAL = (176, 140, 255)  # the accent of a fal template (WaveSpeed's is readme_figure's WAVE)
LOCAL = (240, 180, 90)  # of a local (free) node's
FOOTER = "SOUND: THE LOCAL EMULATOR - SYNTHETIC, NOT A MODEL"


@dataclass
class Run:
    """What a template's picture is drawn from: its input frames (and rate), its result's sound, the result's
    info and extra fields, every take's sound, the sound file a Mux node put on, the model parameters."""

    frames: np.ndarray  # float [N, H, W, 3] in 0..1
    fps: float
    sound: np.ndarray  # float [C, T]
    rate: int
    info: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    takes: list[np.ndarray] = field(default_factory=list)
    audio_in: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the model parameters the run was given


@dataclass(frozen=True)
class Card:
    label: str  # big, at most 18 characters
    subtitle: str  # the model and provider, at most 40
    picture: Callable[[Run, int, int], np.ndarray]  # (run, height, width) -> image
    sound: Callable[[Run, int, int], np.ndarray]
    accent: tuple[int, int, int] = WAVE


def thumbnail(card: Card, run: Run) -> np.ndarray:
    """[SIZE, SIZE, 3] uint8."""
    canvas = np.empty((SIZE, SIZE, 3), np.uint8)
    canvas[:] = BACKGROUND
    inner = SIZE - 2 * MARGIN
    paste(canvas, draw_text(card.label, card.accent, scale=4), BADGE, MARGIN)
    paste(canvas, draw_text(card.subtitle, INK, scale=2), BADGE + 38, MARGIN)
    for (top, bottom), part in ((PICTURE, card.picture), (SOUND, card.sound)):
        image = part(run, bottom - top, inner)
        paste(canvas, image, top + (bottom - top - image.shape[0]) // 2, MARGIN + (inner - image.shape[1]) // 2)
    footer = draw_text(FOOTER, DIM)
    paste(canvas, footer, SIZE - MARGIN - footer.shape[0], MARGIN)
    return canvas


# --- pictures: the template's input, as the template uses it ---


def _fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    scale = min(height / image.shape[0], width / image.shape[1])
    return resize(image, max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))


def _pixels(frame: np.ndarray) -> np.ndarray:
    return (np.clip(frame, 0, 1) * 255).round().astype(np.uint8)


def _ball_path(frames: np.ndarray) -> list[tuple[float, float]]:
    """Per frame, the centre (row, column) of what is bright in it: the ball."""
    centres = []
    for frame in frames:
        rows, cols = np.nonzero(frame.mean(axis=-1) > 0.6)
        centres.append((rows.mean(), cols.mean()) if rows.size else (np.nan, np.nan))
    return centres


def motion(run: Run, height: int, width: int) -> np.ndarray:
    """The clip's motion in one picture: its last frame, with the path the ball took (a dot per frame) and the
    ball drawn again, dimmer, at each bounce, where the sound is loudest."""
    frames = run.frames
    picture = _pixels(frames[-1])
    path = _ball_path(frames)
    rows = np.array([r for r, _ in path])
    lows = [i for i in range(1, len(path) - 1) if rows[i] >= rows[i - 1] and rows[i] > rows[i + 1]]
    yy, xx = np.mgrid[0:picture.shape[0], 0:picture.shape[1]]
    for i in lows:
        ball = frames[i].mean(axis=-1) > 0.6
        picture[ball & (picture.mean(axis=-1) < 100)] = (110, 115, 125)
    for r, c in path:
        if not np.isnan(r):
            picture[(yy - r) ** 2 + (xx - c) ** 2 <= 2.5**2] = WAVE
    return _fit(picture, height, width)


def captioned(*keys: str) -> Callable[[Run, int, int], np.ndarray]:
    """The clip's middle frame, and under it the run's prompts (`keys` of Run.params, with their labels)."""

    def draw(run: Run, height: int, width: int) -> np.ndarray:
        lines = [draw_text(line, INK, scale=2) for label, key in (k.split("=") for k in keys)
                 for line in _wrapped(f"{label}: {run.params.get(key, '')}".upper(), width // 12, 2)]
        text_height = sum(line.shape[0] + 8 for line in lines)
        still = _fit(_pixels(run.frames[len(run.frames) // 2]), height - text_height - 4, width)
        panel = np.empty((still.shape[0] + 4 + text_height, width, 3), np.uint8)
        panel[:] = BACKGROUND
        paste(panel, still, 0, (width - still.shape[1]) // 2)
        top = still.shape[0] + 8
        for line in lines:
            paste(panel, line[:, :width], top, 0)
            top += line.shape[0] + 8
        return panel

    return draw


def _wrapped(text: str, columns: int, most: int) -> list[str]:
    """`text` in lines of at most `columns` characters, broken between words; at most `most` lines, the last
    ending in "..." if words were left out."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= columns:
            lines[-1] += " " + word
        else:
            lines.append(word[:columns])
    if len(lines) > most:
        lines = lines[:most]
        lines[-1] = lines[-1][:columns - 3].rstrip(" ,") + "..."
    return lines


def take_stills(run: Run, height: int, width: int) -> np.ndarray:
    """The clip once per take, the picked (third) one framed: four takes of one clip, one kept."""
    count = len(run.takes)
    tile_w = (width - 8 * (count - 1)) // count
    still = _pixels(run.frames[len(run.frames) // 2])
    tile = resize(still, round(tile_w * still.shape[0] / still.shape[1]), tile_w)
    panel = np.empty((tile.shape[0] + 8 + 28, width, 3), np.uint8)
    panel[:] = BACKGROUND
    for k in range(count):
        left = k * (tile_w + 8)
        paste(panel, tile if k == 2 else (tile * 0.45).astype(np.uint8), 4, left)
        if k == 2:
            panel[0:3, left:left + tile_w] = panel[tile.shape[0] + 5:tile.shape[0] + 8, left:left + tile_w] = WAVE
        number = draw_text(str(k + 1), INK if k == 2 else DIM, scale=3)
        paste(panel, number, tile.shape[0] + 12, left + (tile_w - number.shape[1]) // 2)
    return _fit(panel, height, width)


def frame_grid(run: Run, height: int, width: int) -> np.ndarray:
    """Nine frames, in order, as a 3 x 3 sheet: IMAGE frames go in, not a file."""
    n = len(run.frames)
    cell_w = (width - 8) // 3
    cell_h = min((height - 8) // 3, round(cell_w * run.frames.shape[1] / run.frames.shape[2]))
    sheet = np.empty((3 * cell_h + 8, 3 * cell_w + 8, 3), np.uint8)
    sheet[:] = BACKGROUND
    for k in range(9):
        frame = _pixels(run.frames[round(k * (n - 1) / 8)])
        row, col = divmod(k, 3)
        paste(sheet, resize(frame, cell_h, cell_w), row * (cell_h + 4), col * (cell_w + 4))
    return _fit(sheet, height, width)


def shots(run: Run, height: int, width: int) -> np.ndarray:
    """The middle frame of each third of a long clip, side by side: its three shots."""
    n = len(run.frames)
    stills = [_pixels(run.frames[round((k + 0.5) * n / 3)]) for k in range(3)]
    gap = np.empty((stills[0].shape[0], 6, 3), np.uint8)
    gap[:] = BACKGROUND
    return _fit(np.concatenate([stills[0], gap, stills[1], gap, stills[2]], axis=1), height, width)


def face(run: Run, height: int, width: int) -> np.ndarray:
    """The talking head at its mouth's widest."""
    mouth = run.frames[:, int(run.frames.shape[1] * 0.6):int(run.frames.shape[1] * 0.75)]
    widest = int(np.argmin(mouth.mean(axis=(1, 2, 3))))
    return _fit(_pixels(run.frames[widest]), height, width)


def task_id(run: Run, height: int, width: int) -> np.ndarray:
    """A task id (the run's own) with an arrow to the clip it brings back."""
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = BACKGROUND
    ident = str(run.info.get("task_id", "")).upper().replace("-", "")[:16]
    lines = [draw_text("TASK ID", DIM, scale=2), draw_text(ident[:8], INK, scale=3), draw_text(ident[8:], INK, scale=3)]
    top = (height - sum(line.shape[0] + 10 for line in lines)) // 2
    for line in lines:
        paste(panel, line, top, 0)
        top += line.shape[0] + 10
    clip = motion(run, height - 40, width // 2)
    left = width - clip.shape[1]
    paste(panel, clip, (height - clip.shape[0]) // 2, left)
    arrow_y, start, end = height // 2, width // 2 - 70, left - 14
    panel[arrow_y - 2:arrow_y + 2, start:end] = INK
    for k in range(12):
        panel[arrow_y - k:arrow_y + k + 1, end + 11 - k] = INK
    return panel


# --- sounds: what the template gives back ---


def _mono(sound: np.ndarray) -> np.ndarray:
    return sound.mean(axis=0) if sound.ndim == 2 else sound


def _scaled(sound: np.ndarray) -> np.ndarray:
    peak = float(np.abs(sound).max()) or 1.0
    return sound / peak


def wave(colour: tuple[int, int, int]) -> Callable[[Run, int, int], np.ndarray]:
    def draw(run: Run, height: int, width: int) -> np.ndarray:
        return waveform(_scaled(_mono(run.sound)), width, height, colour)

    return draw


def spectrum(run: Run, height: int, width: int) -> np.ndarray:
    return spectrogram(_mono(run.sound), run.rate, width, height)


def prompt_and_spectrum(run: Run, height: int, width: int) -> np.ndarray:
    """fal's ThinkSound gives back the prompt it used: it, above the spectrogram."""
    lines = [draw_text(line, FAL, scale=2)
             for line in _wrapped("PROMPT USED: " + str(run.extra.get("prompt", "")).upper(), width // 12, 2)]
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = BACKGROUND
    top = 0
    for line in lines:
        paste(panel, line[:, :width], top, 0)
        top += line.shape[0] + 8
    paste(panel, spectrogram(_mono(run.sound), run.rate, width, height - top), top, 0)
    return panel


def takes(run: Run, height: int, width: int) -> np.ndarray:
    """Every take's waveform, one under the other; the picked one (the third) bright."""
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = BACKGROUND
    lane = height // len(run.takes)
    label_width = 5 * 6 * 2 + 8
    for k, sound in enumerate(run.takes):
        picked = k == 2
        colour = WAVE if picked else DIM
        paste(panel, draw_text(f"{k + 1}", INK if picked else DIM, scale=2), k * lane + (lane - 14) // 2, 0)
        paste(panel, waveform(_scaled(_mono(sound)), width - label_width, lane - 4, colour), k * lane, label_width)
    return panel


def windows(run: Run, height: int, width: int) -> np.ndarray:
    """The joined sound of a long clip, with each window's span drawn under it: where one job ends and the next
    begins, joined by a crossfade."""
    spans = run.info.get("windows", [])
    seconds = len(_mono(run.sound)) / run.rate
    bar = 10 * len(spans) + 4
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = BACKGROUND
    paste(panel, waveform(_scaled(_mono(run.sound)), width, height - bar, WAVE), 0, 0)
    for k, span in enumerate(spans):
        left, right = (round(span[key] / seconds * (width - 1)) for key in ("start", "end"))
        top = height - bar + 4 + 10 * k
        panel[top:top + 6, left:right + 1] = INK if k % 2 == 0 else DIM
    return panel


def mix(run: Run, height: int, width: int) -> np.ndarray:
    """The audio file (dim) and what the clip carries after Mux Audio (bright)."""
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = BACKGROUND
    half = height // 2
    paste(panel, draw_text("AUDIO FILE", DIM), 0, 0)
    paste(panel, waveform(_scaled(_mono(run.audio_in)), width, half - 14, DIM), 10, 0)
    paste(panel, draw_text("ON THE CLIP", LOCAL), half, 0)
    paste(panel, waveform(_scaled(_mono(run.sound)), width, half - 14, LOCAL), half + 10, 0)
    return panel


def graded_takes(run: Run, height: int, width: int) -> np.ndarray:
    """Every take's waveform in the order of `audio` (flagged takes last), each with its loudness; the best one
    (Pick Take's `best`) bright, a flagged one named by its flag."""
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = BACKGROUND
    lane = height // len(run.takes)
    listed = sorted((t for t in run.info.get("takes", []) if t.get("sound")), key=lambda t: t["position"])
    label_width, level_width = 5 * 6 * 2 + 8, 11 * 6 * 2
    for k, (sound, take) in enumerate(zip(run.takes, listed)):
        best = take["take"] == run.info.get("best")
        colour = WAVE if best else DIM
        top = k * lane + (lane - 14) // 2
        paste(panel, draw_text(str(take["take"]), INK if best else DIM, scale=2), top, 0)
        paste(panel, waveform(_mono(sound), width - label_width - level_width, lane - 4, colour), k * lane, label_width)
        words = " ".join(take["sound"]["flags"]).upper() or (f"{take['sound']['lufs']:.0f} LUFS" if
                                                              take["sound"]["lufs"] is not None else "")
        paste(panel, draw_text(words[:11], INK if best else DIM, scale=2), top, width - level_width + 6)
    return panel


def loudness_set(run: Run, height: int, width: int) -> np.ndarray:
    """The best take as the model made it (dim) and set to the target (bright), on one scale: louder, its peaks
    under the ceiling."""
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = BACKGROUND
    half = height // 2
    scale = max(float(np.abs(run.audio_in).max()), float(np.abs(run.sound).max())) or 1.0
    before = f"AS GENERATED {run.info['sound']['lufs']:.1f} LUFS"
    paste(panel, draw_text(before, DIM), 0, 0)
    paste(panel, waveform(_mono(run.audio_in) / scale, width, half - 14, DIM), 10, 0)
    paste(panel, draw_text(f"MUX AUDIO: {run.extra['lufs']:.1f} LUFS", LOCAL), half, 0)
    paste(panel, waveform(_mono(run.sound) / scale, width, half - 14, LOCAL), half + 10, 0)
    return panel
