"""Where a sound's loudness is asked to go: the choices a node and the command line offer, checked before anything
is spent. Light (no numpy, no PyAV): the node definitions read it when ComfyUI starts. loudness.py does the work."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ValidationError

AS_GENERATED = "as generated"
CUSTOM = "custom"
# What each target is for (the tooltips and docs say it). A choice's text is saved in workflows: it stays as it is.
TARGETS = {
    "-14 LUFS": (-14.0, "streaming platforms (YouTube, Spotify, TikTok)"),
    "-16 LUFS": (-16.0, "podcasts and mobile"),
    "-23 LUFS": (-23.0, "broadcast (EBU R128)"),
}
CHOICES = (AS_GENERATED, *TARGETS, CUSTOM)
LUFS_RANGE = (-40.0, -5.0)  # a custom target
CEILING_RANGE = (-9.0, 0.0)  # dBTP
DEFAULT_LUFS = -14.0
DEFAULT_CEILING = -1.0  # the headroom a lossy encoder (AAC) needs not to clip
INPUTS = ("loudness", "loudness_lufs", "true_peak_dbtp")  # the nodes' input names


@dataclass(frozen=True)
class Target:
    """Where to put a sound: its integrated loudness (LUFS), its true peak no higher than `ceiling_dbtp`."""

    lufs: float
    ceiling_dbtp: float = DEFAULT_CEILING


def target(choice: str, custom_lufs: float = DEFAULT_LUFS, ceiling_dbtp: float = DEFAULT_CEILING,
           names: tuple[str, str, str] = INPUTS) -> Target | None:
    """The target the loudness inputs ask for (`names`: theirs, for the messages); None for `as generated`."""
    choice_name, lufs_name, ceiling_name = names
    if choice not in CHOICES:
        raise ValidationError(choice_name, f"must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == AS_GENERATED:
        return None
    lufs = TARGETS[choice][0] if choice in TARGETS else _in_range(lufs_name, custom_lufs, LUFS_RANGE, "LUFS")
    return Target(lufs, _in_range(ceiling_name, ceiling_dbtp, CEILING_RANGE, "dBTP"))


def _in_range(name: str, value: object, bounds: tuple[float, float], unit: str) -> float:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValidationError(name, f"must be from {low:g} to {high:g} {unit}, got {value!r}")
    return float(value)
