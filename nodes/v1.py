"""A node declaration as a classic ComfyUI class (INPUT_TYPES, RETURN_TYPES, FUNCTION): for a host without the node
schema of comfy_api.latest (ComfyUI before mid-2025), and for the tests, which load the pack without ComfyUI."""

from __future__ import annotations

from typing import Any

from .declaration import Input, Node
from .run import node_function


def input_type(i: Input) -> tuple[Any, dict[str, Any]]:
    """(type, options) as a classic node declares an input: a combo by its list of choices."""
    return (list(i.choices) if i.type == "COMBO" else i.type), i.options()


def render(node: Node, coroutine: bool | None = None) -> type:
    """The class; a remote node's FUNCTION a coroutine if `coroutine` (default: if the host runs them)."""

    def input_types(cls: type) -> dict[str, Any]:
        declared: dict[str, Any] = {"required": {i.name: input_type(i) for i in node.inputs if not i.optional}}
        optional = {i.name: input_type(i) for i in node.inputs if i.optional}
        if optional:
            declared["optional"] = optional
        if node.remote:
            declared["hidden"] = {"unique_id": "UNIQUE_ID"}
        return declared

    def run_local(self: Any, **inputs: Any) -> Any:
        return node.body(**inputs)

    attributes: dict[str, Any] = {
        "DESCRIPTION": node.description,
        "CATEGORY": node.category,
        "FUNCTION": "run",
        "RETURN_TYPES": tuple(o.type for o in node.outputs),
        "RETURN_NAMES": tuple(o.name for o in node.outputs),
        "OUTPUT_TOOLTIPS": tuple(o.tooltip for o in node.outputs),
        "INPUT_TYPES": classmethod(input_types),
        "run": node_function(node.body, coroutine) if node.remote else run_local,
    }
    if node.not_idempotent:
        attributes["NOT_IDEMPOTENT"] = True
    if node.fingerprint is not None:
        fingerprint = node.fingerprint
        attributes["IS_CHANGED"] = classmethod(lambda cls, **inputs: fingerprint(**inputs))
    return type(node.node_id, (), attributes)
