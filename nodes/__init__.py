"""ComfyUI adapters: thin classes generated from the model catalog."""

from ..sonify import models
from .video_to_audio import make_video_to_audio_node

_VIDEO_TO_AUDIO = {
    "SonifyMMAudioV2": models.MMAUDIO_V2,
}

NODE_CLASS_MAPPINGS = {node_id: make_video_to_audio_node(spec) for node_id, spec in _VIDEO_TO_AUDIO.items()}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: spec.title for node_id, spec in _VIDEO_TO_AUDIO.items()}
