"""Sonify for ComfyUI: sound for video with hosted models (MMAudio, ThinkSound, Kling, sync lipsync)."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"  # the frontend extension: keys in the Settings dialog, the price on each model node

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
