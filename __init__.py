"""Sonify for ComfyUI: sound for video with hosted models (MMAudio, ThinkSound, Kling, sync lipsync)."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
