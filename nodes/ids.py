"""Each model node's id and the catalog entry it runs: a contract with saved workflows (add, never rename)."""

from __future__ import annotations

from ..sonify import catalog
from ..sonify.catalog import ModelSpec

MODEL_NODES: dict[str, ModelSpec] = {
    "SonifyMMAudioV2": catalog.MMAUDIO_V2,
    "SonifyThinkSoundWaveSpeed": catalog.THINKSOUND_WAVESPEED,
    "SonifyThinkSoundFal": catalog.THINKSOUND_FAL,
    "SonifyKlingVideoToAudio": catalog.KLING_V2A,
    "SonifyThinkSound": catalog.THINKSOUND,
    "SonifySyncLipsync": catalog.SYNC_LIPSYNC,
    "SonifySyncLipsync2": catalog.SYNC_LIPSYNC_2,
    "SonifySyncLipsync2Pro": catalog.SYNC_LIPSYNC_2_PRO,
    "SonifySync3": catalog.SYNC_3,
    "SonifyKlingLipsync": catalog.KLING_LIPSYNC,
    "SonifyLatentSync": catalog.LATENTSYNC,
    "SonifyHunyuanFoley": catalog.HUNYUAN_FOLEY,
}

# Node ids kept for saved workflows (they load and run as before) whose model a newer node offers with a provider
# choice: marked deprecated (hidden from the node search), and their description says which node to use.
DEPRECATED = {"SonifyThinkSoundWaveSpeed": "SonifyThinkSound", "SonifyThinkSoundFal": "SonifyThinkSound"}


def node_id(spec: ModelSpec) -> str:
    return next(node for node, shown in MODEL_NODES.items() if shown is spec)
