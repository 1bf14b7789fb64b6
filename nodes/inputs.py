"""ComfyUI input declarations generated from the model catalog (no second copy of a range)."""

from __future__ import annotations

from typing import Any

from ..sonify.models import ModelSpec, Param

WIDGET = {"int": "INT", "float": "FLOAT", "bool": "BOOLEAN", "str": "STRING"}


def widget(p: Param) -> tuple[Any, dict[str, Any]]:
    tooltip = p.help + (f" Range: {p.range_text()}." if p.kind in ("int", "float") else "") + f" Default: {p.default!r}."
    options: dict[str, Any] = {"default": p.default, "tooltip": tooltip}
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


def source_inputs() -> dict[str, Any]:
    """A VIDEO, or IMAGE frames + fps as video-generation nodes emit them: connect exactly one."""
    return {
        "video": ("VIDEO", {"tooltip": "The clip to add sound to. Connect this or `images`, not both."}),
        "images": ("IMAGE", {"tooltip": "Frames of the clip (e.g. from a video-generation node), with `fps`. Connect this or `video`."}),
        "fps": ("FLOAT", {
            "default": 24.0, "min": 0.001, "max": 240.0, "step": 0.001,
            "tooltip": "Frame rate of `images` (29.97 is read as 30000/1001). Ignored for `video`.",
        }),
    }
