"""A node as data: what ComfyUI is told of it (id, names, inputs, outputs, price badge, caching) and the body that
runs it. Built from the model catalog; nodes/v3.py renders a declaration as a class of ComfyUI's node schema
(comfy_api.latest) on a host that has it, nodes/v1.py as a classic class elsewhere (a host older than the schema,
and the tests, which run without ComfyUI). Nothing here imports ComfyUI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The value types whose inputs are widgets (the rest are sockets: VIDEO, IMAGE, AUDIO).
WIDGETS = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


@dataclass(frozen=True)
class Input:
    """One input, named as saved workflows name it. Unset options (None) are not declared."""

    name: str
    type: str  # VIDEO, IMAGE, AUDIO, or a widget type (WIDGETS)
    tooltip: str
    optional: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    round: float | None = None
    multiline: bool | None = None
    placeholder: str | None = None
    choices: tuple[str, ...] = ()  # COMBO

    def options(self) -> dict[str, Any]:
        """The input's options as ComfyUI lists them in /object_info (COMBO's choices aside)."""
        names = ("default", "min", "max", "step", "round", "multiline", "placeholder", "tooltip")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass(frozen=True)
class Output:
    name: str
    type: str  # AUDIO, VIDEO, IMAGE, STRING, FLOAT
    tooltip: str


@dataclass(frozen=True)
class PriceBadge:
    """The price the frontend draws in the node's header (ComfyUI 0.33 and later): a JSONata expression over the
    values of `widgets` (as `widgets.<name>`), giving {"type": "text", "text": …}."""

    expr: str
    widgets: tuple[str, ...]


@dataclass(frozen=True)
class Node:
    """One node. `body(**inputs)` runs it and answers its outputs, or {"ui": …, "result": outputs}. A remote node's
    body waits on a provider: it is called as body(is_cancelled, **inputs, unique_id=…) in a worker thread, so
    the graph goes on meanwhile and Cancel reaches it."""

    node_id: str
    display_name: str
    category: str
    description: str
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    body: Callable[..., Any]
    remote: bool = False
    # Calls a paid hosted model: the frontend marks it as such (and draws price_badge only for such a node).
    api_node: bool = False
    price_badge: PriceBadge | None = None
    # Each node in a graph is its own job, even with the same inputs as another (never one result for both).
    not_idempotent: bool = False
    # fingerprint(**inputs): ComfyUI runs the node again when this answer changes (seed -1: every queue).
    fingerprint: Callable[..., Any] | None = None
    search_aliases: tuple[str, ...] = ()

    def input(self, name: str) -> Input:
        return next(i for i in self.inputs if i.name == name)
