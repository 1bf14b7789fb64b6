"""ComfyUI input declarations generated from the model catalog (no second copy of a range)."""

from __future__ import annotations

from typing import Any

from ..sonify.catalog import MAX_FPS, MIN_FPS, PROVIDER_CHOICES, VARIATIONS, ModelSpec, Param

WIDGET = {"int": "INT", "float": "FLOAT", "bool": "BOOLEAN", "str": "STRING"}


def widget(p: Param) -> tuple[Any, dict[str, Any]]:
    options: dict[str, Any] = {"default": p.default, "tooltip": p.describe()}
    if p.kind in ("int", "float"):
        options.update(min=p.min, max=p.max, step=p.step or 1)
        if p.kind == "float":
            options["round"] = p.step or 0.01
    if p.kind == "str":
        options["multiline"] = p.multiline
    if p.kind == "choice":
        return list(p.choices), options
    return WIDGET[p.kind], options


def param_inputs(spec: ModelSpec) -> dict[str, Any]:
    return {p.name: widget(p) for p in spec.params}


def source_inputs(spec: ModelSpec) -> dict[str, Any]:
    """A VIDEO, or IMAGE frames + fps as video-generation nodes emit them: connect exactly one."""
    about = _clip_facts(spec)
    return {
        "video": ("VIDEO", {"tooltip": f"The clip to {_purpose(spec)}. Connect this or `images`, not both. {about}"}),
        "images": ("IMAGE", {"tooltip": f"Frames of the clip (e.g. from a video-generation node), with `fps`. "
                                        f"Connect this or `video`. {about}"}),
        "fps": ("FLOAT", {
            "default": 24.0, "min": MIN_FPS, "max": MAX_FPS, "step": 0.001,
            "tooltip": "Frame rate of `images` (29.97 is read as 30000/1001, 23.976 as 24000/1001). Ignored for "
                       f"`video`. Range: {MIN_FPS:g} to {MAX_FPS:g}. Default: 24.",
        }),
    }


def _purpose(spec: ModelSpec) -> str:
    return "add sound to" if spec.output == "audio" else "lip-sync (a face, speaking or not)"


def _clip_facts(spec: ModelSpec) -> str:
    """Length limits, what is uploaded (which decides upload time) and the parameters' notes on the clip."""
    facts = []
    if spec.max_seconds is not None:
        facts.append(f"{spec.title} takes clips from {spec.min_seconds or 0:g} to {spec.max_seconds:g} s.")
    if spec.sides is not None:
        facts.append(f"Width and height from {spec.sides[0]} to {spec.sides[1]} px.")
    if spec.video_suffixes:
        facts.append(f"A file must be {' or '.join(spec.video_suffixes)}.")
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


def variations_input(spec: ModelSpec) -> dict[str, Any]:
    """The number of takes, after every other input (a workflow saved without it keeps its widget values)."""
    low, high = VARIATIONS
    seeded = any(p.seed for p in spec.params)
    seeds = ("Seed -1 draws a random seed per take (each listed in `job`); a fixed seed s gives s, s+1, …. "
             if seeded else f"{spec.title} has no seed: each take is a new job with the same inputs. ")
    return {"variations": ("INT", {
        "default": 1, "min": low, "max": high, "step": 1,
        "tooltip": f"How many takes to make at once, each its own job (and price): `audio` is a batch of them, "
                   f"`video` carries the first; pick one with Pick Take. {seeds}Range: {low} to {high}. Default: 1.",
    })}


def provider_input(spec: ModelSpec) -> dict[str, Any]:
    """Where a model on both providers runs, after every other input (a workflow saved without it keeps its widget
    values, and runs on `auto`); none for a model on one provider."""
    if not spec.offers:
        return {}
    prices = "; ".join(f"{s.title}: {s.price_text}" for s in (spec, *(o.spec for o in spec.offers)))
    return {"provider": widget(Param(
        "provider", "choice", "auto",
        "Where the job runs. auto: the provider with a key; with both, the order SONIFY_PROVIDER_ORDER sets, else the "
        "cheaper for this clip. By name: only there. 'X, then Y': X, and Y only if X fails before any task exists "
        "there (unreachable, key refused, upload or submit failed with nothing created, no submit slot in time), so a "
        f"job is never paid twice. `job` says where it ran and why. Prices: {prices}",
        choices=PROVIDER_CHOICES))}
