"""A node declaration as a class of ComfyUI's node schema (comfy_api.latest: IO.ComfyNode, define_schema, an async
execute), on a host that has it: ComfyUI 0.33 draws the price badge itself; 0.8 has no PriceBadge (the
description keeps the price, and the pack's own badge, web/price.js, draws it)."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
from typing import Any

from .declaration import Input, Node, Output
from .run import in_worker


def host_has_schema() -> bool:
    """True inside a ComfyUI whose comfy_api has the `latest` node schema (looked up, not imported)."""
    try:
        return importlib.util.find_spec("comfy_api.latest") is not None
    except (ImportError, ValueError):  # no comfy_api package; or a module without a spec
        return False


def _input(io: Any, i: Input) -> Any:
    kind = {"VIDEO": io.Video, "IMAGE": io.Image, "AUDIO": io.Audio, "INT": io.Int, "FLOAT": io.Float,
            "STRING": io.String, "BOOLEAN": io.Boolean, "COMBO": io.Combo}[i.type]
    options = i.options()
    if i.type == "COMBO":
        options["options"] = list(i.choices)
    return kind.Input(i.name, optional=i.optional, **options)


def _output(io: Any, o: Output) -> Any:
    kind = {"VIDEO": io.Video, "IMAGE": io.Image, "AUDIO": io.Audio, "STRING": io.String, "FLOAT": io.Float}[o.type]
    return kind.Output(o.name, tooltip=o.tooltip)


def schema(io: Any, node: Node) -> Any:
    """The node's io.Schema, with the fields this host's Schema has (0.8's lacks price_badge and search_aliases)."""
    fields = {
        "node_id": node.node_id,
        "display_name": node.display_name,
        "category": node.category,
        "description": node.description,
        "inputs": [_input(io, i) for i in node.inputs],
        "outputs": [_output(io, o) for o in node.outputs],
        "hidden": [io.Hidden.unique_id] if node.remote else [],
        "is_api_node": node.api_node and hasattr(io, "PriceBadge"),
        "not_idempotent": node.not_idempotent,
        "search_aliases": list(node.search_aliases),
    }
    if node.price_badge is not None and hasattr(io, "PriceBadge"):
        fields["price_badge"] = io.PriceBadge(expr=node.price_badge.expr,
                                              depends_on=io.PriceBadgeDepends(widgets=list(node.price_badge.widgets)))
    known = {f.name for f in dataclasses.fields(io.Schema)}
    return io.Schema(**{name: value for name, value in fields.items() if name in known})


def render(io: Any, node: Node) -> type:
    """The io.ComfyNode subclass of `node`. A remote node's body runs in a worker thread (run.in_worker), so the
    graph goes on while it waits and Cancel reaches it; a local one in a thread too, off the host's event loop."""

    class SonifyNode(io.ComfyNode):
        @classmethod
        def define_schema(cls) -> Any:
            return schema(io, node)

        @classmethod
        async def execute(cls, **inputs: Any) -> Any:
            if node.remote:
                answer = await in_worker(node.body, {**inputs, "unique_id": cls.hidden.unique_id})
            else:
                answer = await asyncio.to_thread(node.body, **inputs)
            if isinstance(answer, dict):
                return io.NodeOutput(*answer["result"], ui=answer["ui"])
            return io.NodeOutput(*answer)

        if node.fingerprint is not None:
            @classmethod
            def fingerprint_inputs(cls, **inputs: Any) -> Any:
                return node.fingerprint(**inputs)

    SonifyNode.__name__ = SonifyNode.__qualname__ = node.node_id
    return SonifyNode


def extension(nodes: list[Node]) -> Any:
    """The pack as a ComfyExtension (what comfy_entrypoint answers): its nodes as schema classes."""
    from comfy_api.latest import IO, ComfyExtension

    classes = [render(IO, node) for node in nodes]

    class Sonify(ComfyExtension):
        async def get_node_list(self) -> list[type]:
            return classes

    return Sonify()
