"""Input declarations built from the model catalog (no second copy of a range)."""

from __future__ import annotations

from ..sonify.catalog import MAX_FPS, MIN_FPS, VARIATIONS, ModelSpec, Param
from ..sonify.loudness_target import (
    AS_GENERATED,
    CEILING_RANGE,
    CHOICES,
    CUSTOM,
    DEFAULT_CEILING,
    DEFAULT_LUFS,
    LUFS_RANGE,
    TARGETS,
)
from .declaration import Input

WIDGET = {"int": "INT", "float": "FLOAT", "bool": "BOOLEAN", "str": "STRING", "choice": "COMBO"}


def category(spec: ModelSpec) -> str:
    """A model node's place in the node library: under its provider (the title's last part, "… · WaveSpeed"), as
    core files its partner nodes, so that the provider shows where a long title is cut."""
    return f"Sonify/{spec.title.rpartition(' · ')[2]}"


def widget(p: Param) -> Input:
    numbers = {}
    if p.kind in ("int", "float"):
        numbers = {"min": p.min, "max": p.max, "step": p.step or 1}
        if p.kind == "float":
            numbers["round"] = p.step or 0.01
    text = {}
    if p.kind == "str":
        # The tooltip of a text box shows only on its label; the box itself says what goes in it.
        text = {"multiline": p.multiline, "placeholder": p.help.rstrip(".") if p.multiline else None}
    return Input(p.name, WIDGET[p.kind], p.describe(), default=p.default, choices=p.choices, **numbers, **text)


def param_inputs(spec: ModelSpec) -> tuple[Input, ...]:
    return tuple(widget(p) for p in spec.params)


def source_inputs(spec: ModelSpec) -> tuple[Input, ...]:
    """A VIDEO, or IMAGE frames + fps as video-generation nodes emit them: connect exactly one."""
    about = _clip_facts(spec)
    return (
        Input("video", "VIDEO", f"The clip to {_purpose(spec)}. Connect this or `images`, not both. {about}",
              optional=True),
        Input("images", "IMAGE", f"Frames of the clip (e.g. from a video-generation node), with `fps`. "
                                 f"Connect this or `video`. {about}", optional=True),
        Input("fps", "FLOAT", "Frame rate of `images` (29.97 is read as 30000/1001, 23.976 as 24000/1001). Ignored "
                              f"for `video`. Range: {MIN_FPS:g} to {MAX_FPS:g}. Default: 24.",
              optional=True, default=24.0, min=MIN_FPS, max=MAX_FPS, step=0.001),
    )


def _purpose(spec: ModelSpec) -> str:
    return "add sound to" if spec.output == "audio" else "lip-sync (a face, speaking or not)"


def _clip_facts(spec: ModelSpec) -> str:
    """Length limits, what is uploaded (which decides upload time) and the parameters' notes on the clip."""
    facts = []
    if spec.max_seconds is not None:
        facts.append(f"{spec.title} takes clips from {spec.min_seconds or 0:g} to {spec.max_seconds:g} s.")
    if spec.window is not None:
        size = spec.window.preferred or spec.window.longest
        facts.append(f"A clip longer than {spec.window.longest:g} s is done in overlapping windows of up to {size:g} s "
                     "(each its own job and price), joined by crossfades, at shot cuts where it can.")
    if spec.proxy is None:
        facts.append("Uploaded at full resolution (the model returns the frames it gets).")
    else:
        facts.append(f"Sonify uploads a small copy (short side {spec.proxy.short_side} px, at most "
                     f"{spec.proxy.max_fps} fps, no sound) unless the file already fits; your picture is kept as is.")
    facts += [p.source_note for p in spec.params if p.source_note]
    return " ".join(facts)


def variations_input(spec: ModelSpec) -> Input:
    """The number of takes, after every other input (a workflow saved without it keeps its widget values)."""
    low, high = VARIATIONS
    seeded = any(p.seed for p in spec.params)
    seeds = ("Seed -1 draws a random seed per take (each listed in `job`); a fixed seed s gives s, s+1, …. "
             if seeded else f"{spec.title} has no seed: each take is a new job with the same inputs. ")
    return Input("variations", "INT", f"How many takes to make at once, each its own job (and price): `audio` is a "
                                      f"batch of them, `video` carries the first; pick one with Pick Take. {seeds}"
                                      f"Range: {low} to {high}. Default: 1.",
                 optional=True, default=1, min=low, max=high, step=1)


def loudness_inputs(what: str = "each take's sound (a long clip's once its windows are joined)") -> tuple[Input, ...]:
    """Loudness to a target, after every other input (a workflow saved without them keeps its widget values)."""
    low, high = LUFS_RANGE
    floor, ceiling = CEILING_RANGE
    uses = "; ".join(f"{choice}: {purpose}" for choice, (_, purpose) in TARGETS.items())
    return (
        Input("loudness", "COMBO", f"Where to put {what}: its integrated loudness (ITU-R BS.1770-4), set by one "
                                   f"gain. {AS_GENERATED}: the model's samples untouched; {uses}; {CUSTOM}: "
                                   f"`loudness_lufs`. A silent take is left as it is. Default: {AS_GENERATED}.",
              optional=True, default=AS_GENERATED, choices=tuple(CHOICES)),
        Input("loudness_lufs", "FLOAT", f"The target when `loudness` is {CUSTOM}, in LUFS. Range: {low:g} to "
                                        f"{high:g}. Default: {DEFAULT_LUFS:g}.",
              optional=True, default=DEFAULT_LUFS, min=low, max=high, step=0.5, round=0.1),
        Input("true_peak_dbtp", "FLOAT", "The highest the true peak may go once the loudness is set, in dBTP: where "
                                         "reaching the target would put a peak above it, the gain stops there and "
                                         f"the sound stays quieter. Range: {floor:g} to {ceiling:g}. Default: "
                                         f"{DEFAULT_CEILING:g} (the headroom AAC needs).",
              optional=True, default=DEFAULT_CEILING, min=floor, max=ceiling, step=0.1, round=0.1),
    )
