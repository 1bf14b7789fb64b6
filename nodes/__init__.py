"""ComfyUI adapters: every node declared as data from the model catalog (declaration.py), rendered as ComfyUI's node
schema where the host has it (v3.py: comfy_entrypoint), else as classic classes (v1.py: NODE_CLASS_MAPPINGS)."""

import logging

from ..sonify import catalog
from ..sonify.errors import ConfigurationError
from . import comfy, v1, v3
from .fetch_result import declare_fetch_result
from .lipsync import declare_lipsync
from .mux_audio import MUX_AUDIO
from .pick_audio import PICK_AUDIO
from .video_to_audio import NODE_IDS, declare_video_to_audio

# The model nodes (and, for the pack's own price badge, GET /sonify/prices): node id -> catalog entry.
MODEL_NODES = {NODE_IDS[key]: catalog.MODELS[key] for key in NODE_IDS}
MODEL_NODES["SonifySyncLipsync"] = catalog.SYNC_LIPSYNC

NODES = [
    *(declare_video_to_audio(node_id, spec) for node_id, spec in MODEL_NODES.items() if spec.output == "audio"),
    declare_lipsync("SonifySyncLipsync", catalog.SYNC_LIPSYNC),
    MUX_AUDIO,
    declare_fetch_result(),
    PICK_AUDIO,
]


async def comfy_entrypoint():  # -> comfy_api.latest.ComfyExtension (imported only inside ComfyUI)
    """ComfyUI's entry point for a pack of schema nodes."""
    return v3.extension(NODES)


def classic_mappings() -> tuple[dict[str, type], dict[str, str]]:
    """NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS of the classic classes."""
    return {n.node_id: v1.render(n) for n in NODES}, {n.node_id: n.display_name for n in NODES}


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
