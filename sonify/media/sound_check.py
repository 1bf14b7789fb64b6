"""Every take checked before anyone hears it, and several takes put in order.

A take is measured as the model made it (fitted to the picture): integrated loudness and true peak (loudness.py),
its silent share, its clipped samples, and the length of the sound the model made against the picture's. It is
flagged, by name, when it is

- silent: most of it (more than SILENT_MOST) below the silence level (SONIFY_SILENCE_DBFS, default -60 dBFS),
  measured short-term: the mean square over the SHORT_TERM seconds around each STEP, a full-scale square wave
  being 0 dBFS;
- clipped: more than CLIPPED_MOST of its samples at full scale (|x| >= CLIP_LEVEL);
- cut short: its sound ends more than SHORT_BY seconds before the picture does (the rest is padded with silence).

Takes are ordered flagged last, each group in take order; the best take is the first of them.

A long clip's joined sound, kept in its file (sound_file.py), is checked block by block (`finish_file`), with the
same numbers as a whole array's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import settings
from ..loudness_target import Target
from . import loudness
from .sound_file import SoundFile

SHORT_TERM = 3.0  # s: EBU R128's short-term window


STEP = 0.1  # s


SILENT_MOST = 0.5  # silent share above which a take is flagged silent


CLIP_LEVEL = 0.999  # -0.01 dBFS


CLIPPED_MOST = 1e-4  # share of the samples at full scale above which a take is flagged clipped (1 in 10,000)


SHORT_BY = 0.1  # s


SILENT, CLIPPED, CUT_SHORT = "silent", "clipped", "cut short"


@dataclass(frozen=True)
class Check:
    """One take's sound, measured; `flags`: what is wrong with it (SILENT, CLIPPED, CUT_SHORT)."""

    lufs: float | None
    true_peak_dbtp: float | None
    silent_share: float
    silence_dbfs: float
    clipped_samples: int  # of every channel's samples
    sound_seconds: float  # of sound the model made
    picture_seconds: float
    flags: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"lufs": _rounded(self.lufs), "true_peak_dbtp": _rounded(self.true_peak_dbtp),
                "silent_share": round(self.silent_share, 3), "silence_dbfs": self.silence_dbfs,
                "clipped_samples": self.clipped_samples, "sound_seconds": round(self.sound_seconds, 3),
                "picture_seconds": round(self.picture_seconds, 3), "flags": list(self.flags)}


def check(samples: np.ndarray, rate: int, picture_seconds: float, sound_seconds: float | None = None,
          level: loudness.Level | None = None) -> Check:
    """`samples` (float32 [C, T], fitted to the picture) checked. `sound_seconds`: how much sound the model made
    (default: up to the last sample that is not zero — what Pick Take, which has only the sound, can tell);
    `level`: its loudness and true peak, when measured already."""
    samples = np.asarray(samples, np.float32)
    if sound_seconds is None:
        sound_seconds = _last_sound(samples) / rate
    level = level or loudness.measure(samples, rate)
    return _checked(lambda: iter((samples,)), samples.shape, rate, picture_seconds, sound_seconds, level)


def check_file(sound: SoundFile, picture_seconds: float, sound_seconds: float, level: loudness.Level) -> Check:
    """check() of a sound kept in its file (`level`: loudness.measure_file's), read block by block."""
    return _checked(sound.blocks, (sound.channels, sound.length), sound.rate, picture_seconds, sound_seconds, level)


def _checked(blocks: Callable[[], Iterable[np.ndarray]], shape: tuple[int, int], rate: int, picture_seconds: float,
             sound_seconds: float, level: loudness.Level) -> Check:
    """The check of the [C, T] (`shape`) sound that `blocks()` gives, [C, n] at a time, in order."""
    threshold = settings.current().silence_dbfs  # read here: a check is made by runs and by Pick Take alike
    made = min(shape[1], round(sound_seconds * rate))
    share = silent_share(blocks(), made, rate, threshold) if made else 1.0
    clipped = sum(int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL)) for block in blocks())
    flags = tuple(flag for flag, wrong in ((SILENT, share > SILENT_MOST),
                                           (CLIPPED, clipped > CLIPPED_MOST * shape[0] * shape[1]),
                                           (CUT_SHORT, picture_seconds - sound_seconds > SHORT_BY)) if wrong)
    return Check(level.lufs, level.true_peak_dbtp, share, threshold, clipped, sound_seconds, picture_seconds, flags)


def best(takes: Sequence[np.ndarray], rate: int) -> int:
    """Pick Take's `best`: the index of the first take nothing flags, each judged on its sound alone (a take as long
    as the batch's; its sound up to its last sample that is not zero), or 0 when every take is flagged."""
    unmeasured = loudness.Level(None, None)  # the flags need no loudness
    for k, samples in enumerate(takes):
        if not check(samples, rate, samples.shape[-1] / rate, level=unmeasured).flags:
            return k
    return 0


def silent_share(blocks: Iterable[np.ndarray], length: int, rate: int, threshold_dbfs: float) -> float:
    """The share of STEP-long steps of the first `length` samples of `blocks` ([C, n] each, in order) whose
    short-term level — the mean square of every channel over SHORT_TERM seconds centred on the step, or as much of
    it as the sound has — is below `threshold_dbfs`. Read block by block, keeping only the running sum of the
    squares at the windows' edges: the same sums, added in the same order, as over the whole sound at once."""
    hop, half = max(1, round(STEP * rate)), round(SHORT_TERM * rate / 2)
    centres = np.arange(hop // 2, length, hop) if length > hop // 2 else np.array([length // 2])
    starts, ends = np.clip(centres - half, 0, length), np.clip(centres + half, 0, length)
    edges = np.unique(np.concatenate([starts, ends]))
    power = np.zeros(edges.size)  # the running sum at each edge
    done, total = 0, 0.0
    for block in blocks:
        block = block[:, :length - done]
        running = np.cumsum(np.concatenate([[total], np.mean(np.square(block, dtype=np.float64), axis=0)]))
        first, last = np.searchsorted(edges, done), np.searchsorted(edges, done + block.shape[1], side="right")
        power[first:last] = running[edges[first:last] - done]
        done, total = done + block.shape[1], running[-1]
        if done == length:
            break
    at_start, at_end = power[np.searchsorted(edges, starts)], power[np.searchsorted(edges, ends)]
    mean_square = (at_end - at_start) / np.maximum(ends - starts, 1)
    return float(np.mean(mean_square < 10 ** (threshold_dbfs / 10)))


def _last_sound(samples: np.ndarray) -> int:
    """The length up to the last sample that is not zero in some channel."""
    sounding = np.flatnonzero(np.any(samples != 0, axis=0))
    return int(sounding[-1]) + 1 if sounding.size else 0


def finish(samples: np.ndarray, rate: int, picture_seconds: float, sound_seconds: float,
           goal: Target | None) -> tuple[np.ndarray, dict[str, Any]]:
    """A take fitted to its picture, checked, then brought to `goal` (None: as generated, the samples untouched);
    a silent take is left as it is. Returns its samples and its job info's `sound`: the check, and under
    "loudness" what normalising did (None: nothing)."""
    level = loudness.measure(samples, rate)
    checked = check(samples, rate, picture_seconds, sound_seconds, level)
    applied = None
    if goal is not None and SILENT not in checked.flags:
        samples, applied = loudness.normalise(samples, rate, goal, level)
    return samples, _sound_info(checked, applied)


def finish_file(sound: SoundFile, picture_seconds: float, sound_seconds: float,
                goal: Target | None) -> tuple[SoundFile, dict[str, Any]]:
    """finish() of a sound kept in its file (a long clip's joined sound), read block by block, never whole: the
    same measures and the same gain; set to `goal`, it is a new file."""
    level = loudness.measure_file(sound)
    checked = check_file(sound, picture_seconds, sound_seconds, level)
    applied = None
    if goal is not None and SILENT not in checked.flags:
        sound, applied = loudness.normalise_file(sound, goal, level)
    return sound, _sound_info(checked, applied)


def _sound_info(checked: Check, applied: loudness.Applied | None) -> dict[str, Any]:
    return {**checked.as_dict(), "loudness": applied.as_dict() if applied is not None else None}


def order(flags: Sequence[Sequence[str]]) -> list[int]:
    """The takes' indices (by each take's flags), flagged takes last, each group in take order."""
    return sorted(range(len(flags)), key=lambda k: (bool(flags[k]), k))


def reasons(sound: dict[str, Any]) -> list[str]:
    """Each flag of a take (its job info's `sound`) with its measure: "silent: 96% below -60 dBFS"."""
    said = {SILENT: f"{SILENT}: {sound['silent_share']:.0%} below {sound['silence_dbfs']:g} dBFS",
            CLIPPED: f"{CLIPPED}: {sound['clipped_samples']} samples at full scale",
            CUT_SHORT: f"{CUT_SHORT}: {sound['sound_seconds']:.2f} s of sound for {sound['picture_seconds']:.2f} s of "
                       "picture"}
    return [said[flag] for flag in sound["flags"]]


def why(position: int, sound: dict[str, Any], best: bool) -> str:
    """Why a take stands at `position` (from 1) of the ordered takes."""
    if best:
        return f"{_ordinal(position)}: the best take: the first with nothing flagged"
    if not sound["flags"]:
        return f"{_ordinal(position)}: nothing flagged; takes stay in take order"
    return f"{_ordinal(position)}: {'; '.join(reasons(sound))} — flagged takes come last"


def text(sound: dict[str, Any]) -> str:
    """One take's measures, from its job info's `sound`: "-23.1 LUFS · peak -3.2 dBTP · silent 0% · clipped 0 ·
    8.00 s of 8.00 s", the loudness set after it, and its flags."""
    lufs = f"{sound['lufs']:.1f} LUFS" if sound["lufs"] is not None else "no loudness"
    peak = f"peak {sound['true_peak_dbtp']:.1f} dBTP" if sound["true_peak_dbtp"] is not None else "no peak"
    words = [lufs, peak, f"silent {sound['silent_share']:.0%}", f"clipped {sound['clipped_samples']}",
             f"{sound['sound_seconds']:.2f} s of {sound['picture_seconds']:.2f} s"]
    line = " · ".join(words)
    if sound.get("loudness"):
        line += " " + _applied_text(sound["loudness"])
    if sound["flags"]:
        line += f" — FLAGGED {', '.join(sound['flags'])}"
    return line


def _applied_text(applied: dict[str, Any]) -> str:
    now = f"{applied['lufs']:.1f} LUFS" if applied["lufs"] is not None else "no loudness"
    held = f", held by the {applied['ceiling_dbtp']:g} dBTP ceiling" if applied["held_by_ceiling"] else ""
    return f"→ {now} ({applied['gain_db']:+.1f} dB{held})"


def lines(info: dict[str, Any]) -> list[str]:
    """The after-run lines about the sound: one take's measures, or each take's in the order of `audio`."""
    takes = [t for t in info.get("takes", []) if t.get("sound")]
    if not takes:
        return [f"sound: {text(info['sound'])}"] if info.get("sound") else []
    ranked = sorted(takes, key=lambda t: t["position"])
    return [f"{t['position']}. take {t['take']}: {text(t['sound'])}" for t in ranked]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 2)
