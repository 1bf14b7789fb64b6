"""Sonify for ComfyUI: sound for video with hosted models (MMAudio, ThinkSound, Kling, sync lipsync).

On a ComfyUI with the node schema of comfy_api.latest (0.8, 0.33, …) the nodes are schema nodes, given through
comfy_entrypoint; ComfyUI reads NODE_CLASS_MAPPINGS first, so it is set only on a host without that schema (and
outside ComfyUI, where the tests load the pack)."""

from .nodes import v3

WEB_DIRECTORY = "./web"  # the frontend extension: keys in the Settings dialog, the player, the price on older hosts

if v3.host_has_schema():
    from .nodes import comfy_entrypoint

    __all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
else:
    from .nodes import classic_mappings

    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = classic_mappings()
    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
