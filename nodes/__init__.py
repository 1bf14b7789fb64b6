"""ComfyUI adapters: thin classes generated from the model catalog."""

import logging

from ..sonify import catalog
from ..sonify.errors import ConfigurationError
from . import comfy
from .fetch_result import SonifyFetchResult
from .lipsync import make_lipsync_node
from .mux_audio import SonifyMuxAudio
from .pick_audio import SonifyPickAudio
from .video_to_audio import make_video_to_audio_node

_VIDEO_TO_AUDIO = {
    "SonifyMMAudioV2": catalog.MMAUDIO_V2,
    "SonifyThinkSoundWaveSpeed": catalog.THINKSOUND_WAVESPEED,
    "SonifyThinkSoundFal": catalog.THINKSOUND_FAL,
    "SonifyKlingVideoToAudio": catalog.KLING_V2A,
    "SonifyThinkSound": catalog.THINKSOUND,
}
# Node ids kept for saved workflows (they load and run as before) whose model a newer node offers with a provider
# choice: hidden from the node search, and their description says which to use.
DEPRECATED = {"SonifyThinkSoundWaveSpeed": "SonifyThinkSound", "SonifyThinkSoundFal": "SonifyThinkSound"}

_LIPSYNC = {
    "SonifySyncLipsync": catalog.SYNC_LIPSYNC,
    "SonifySyncLipsync2": catalog.SYNC_LIPSYNC_2,
    "SonifySyncLipsync2Pro": catalog.SYNC_LIPSYNC_2_PRO,
    "SonifySync3": catalog.SYNC_3,
    "SonifyKlingLipsync": catalog.KLING_LIPSYNC,
    "SonifyLatentSync": catalog.LATENTSYNC,
}

NODE_CLASS_MAPPINGS = {node_id: make_video_to_audio_node(spec) for node_id, spec in _VIDEO_TO_AUDIO.items()}
NODE_CLASS_MAPPINGS.update({node_id: make_lipsync_node(spec) for node_id, spec in _LIPSYNC.items()})
NODE_CLASS_MAPPINGS["SonifyMuxAudio"] = SonifyMuxAudio
NODE_CLASS_MAPPINGS["SonifyFetchResult"] = SonifyFetchResult
NODE_CLASS_MAPPINGS["SonifyPickAudio"] = SonifyPickAudio
for _old, _new in DEPRECATED.items():
    _node = NODE_CLASS_MAPPINGS[_old]
    _node.DEPRECATED = True
    _node.DESCRIPTION = f"Deprecated: use {_VIDEO_TO_AUDIO[_new].node_title}, which runs on either provider. {_node.DESCRIPTION}"

NODE_DISPLAY_NAME_MAPPINGS = {node_id: spec.node_title for node_id, spec in {**_VIDEO_TO_AUDIO, **_LIPSYNC}.items()}
NODE_DISPLAY_NAME_MAPPINGS["SonifyMuxAudio"] = "Mux Audio onto Video · Sonify"
NODE_DISPLAY_NAME_MAPPINGS["SonifyFetchResult"] = "Fetch Result by Task ID · Sonify"
NODE_DISPLAY_NAME_MAPPINGS["SonifyPickAudio"] = "Pick Take · Sonify"

# The model nodes whose price the badge shows (GET /sonify/prices).
MODEL_NODES = {**_VIDEO_TO_AUDIO, **_LIPSYNC}


def _routes() -> list:
    from . import routes  # aiohttp: ComfyUI's own server library, loaded only inside ComfyUI

    return routes.routes(MODEL_NODES)


if (_inputs := comfy.input_dir()) is not None:
    from .example_media import offer

    offer(_inputs)

if comfy.add_routes(_routes):
    from . import emulator_mode

    if emulator_mode.from_environment():
        try:
            emulator_mode.start()
        except ConfigurationError as exc:  # the nodes still load; their runs say the emulator did not start
            logging.getLogger("sonify").warning("%s=1: %s", emulator_mode.ENV, exc)

comfy.add_webhook_route()
