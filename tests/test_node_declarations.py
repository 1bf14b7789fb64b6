"""The nodes as data (nodes/declaration.py), as the pack builds them without ComfyUI: their ids, inputs and outputs
in the order saved workflows rely on, the schema flags, the price badge's rule and widgets; and the pack gives
them to ComfyUI as schema nodes (comfy_entrypoint) only where the host has the schema. How the frontend reads the
badge's JSONata is tested with the reference engine in tests/js/price.test.mjs."""

from __future__ import annotations

import pytest
from pack import load_pack, module

from sonify.catalog import MODELS

NODES = {node.node_id: node for node in load_pack().nodes.NODES}
MODEL_NODES = load_pack().nodes.MODEL_NODES
LOUDNESS = ["loudness", "loudness_lufs", "true_peak_dbtp"]
# The contract with saved workflows: node ids, and each node's inputs and outputs in order.
LIPSYNC_OUT = ["video", "images", "audio", "fps", "job"]
CONTRACT = {
    "SonifyMMAudioV2": (["prompt", "negative_prompt", "duration", "num_inference_steps", "guidance_scale",
                         "mask_away_clip", "seed", "video", "images", "fps", "variations", *LOUDNESS, "provider"],
                        ["audio", "video", "job"]),
    "SonifyThinkSoundWaveSpeed": (["prompt", "seed", "video", "images", "fps", "variations", *LOUDNESS],
                                  ["audio", "video", "job"]),
    "SonifyThinkSoundFal": (["prompt", "seed", "num_inference_steps", "cfg_scale", "video", "images", "fps",
                             "variations", *LOUDNESS], ["audio", "video", "prompt", "job"]),
    "SonifyKlingVideoToAudio": (["sound_effect_prompt", "bgm_prompt", "asmr_mode", "video", "images", "fps",
                                 "variations", *LOUDNESS, "provider"], ["audio", "video", "job"]),
    "SonifyThinkSound": (["prompt", "seed", "num_inference_steps", "cfg_scale", "video", "images", "fps",
                          "variations", *LOUDNESS, "provider"], ["audio", "video", "prompt", "job"]),
    "SonifySyncLipsync": (["audio", "sync_mode", "video", "images", "fps", "provider"], LIPSYNC_OUT),
    "SonifySyncLipsync2": (["audio", "sync_mode", "video", "images", "fps"], LIPSYNC_OUT),
    "SonifySyncLipsync2Pro": (["audio", "sync_mode", "video", "images", "fps"], LIPSYNC_OUT),
    "SonifySync3": (["audio", "sync_mode", "video", "images", "fps", "provider"], LIPSYNC_OUT),
    "SonifyKlingLipsync": (["audio", "video", "images", "fps"], LIPSYNC_OUT),
    "SonifyLatentSync": (["audio", "guidance_scale", "seed", "loop_mode", "video", "images", "fps", "provider"],
                         LIPSYNC_OUT),
    "SonifyHunyuanFoley": (["prompt", "negative_prompt", "guidance_scale", "num_inference_steps", "seed", "video",
                            "images", "fps", "variations", *LOUDNESS, "provider"], ["audio", "video", "job"]),
    "SonifyMuxAudio": (["video", "audio", "mode", "audio_gain_db", "video_gain_db", *LOUDNESS], ["video"]),
    "SonifyFetchResult": (["provider", "model", "task_id", "video"], ["audio", "video", "job"]),
    "SonifyPickAudio": (["audio", "index", "best"], ["audio"]),
}


def test_ids_inputs_and_outputs_keep_the_contract():
    assert {node_id: ([i.name for i in n.inputs], [o.name for o in n.outputs]) for node_id, n in NODES.items()} \
        == CONTRACT


@pytest.mark.parametrize("node_id", sorted(CONTRACT))
def test_the_classic_rendering_is_the_declaration(node_id):
    node, cls = NODES[node_id], load_pack().NODE_CLASS_MAPPINGS[node_id]
    declared = cls.INPUT_TYPES()
    assert [*declared["required"], *declared.get("optional", {})] == [i.name for i in node.inputs]
    assert cls.RETURN_NAMES == tuple(o.name for o in node.outputs)
    assert cls.RETURN_TYPES == tuple(o.type for o in node.outputs)
    assert load_pack().NODE_DISPLAY_NAME_MAPPINGS[node_id] == node.display_name


@pytest.mark.parametrize("node_id", sorted(CONTRACT))
def test_model_nodes_are_paid_api_nodes_with_a_price_badge_and_never_share_a_result(node_id):
    node = NODES[node_id]
    model = node_id in MODEL_NODES
    assert node.api_node is model and node.not_idempotent is model and (node.price_badge is not None) is model
    assert node.remote is (model or node_id == "SonifyFetchResult")
    # under its provider, or "WaveSpeed or fal" for a node with a provider choice
    assert node.category == (f"Sonify/{MODEL_NODES[node_id].node_title.rpartition(' · ')[2]}" if model
                             else "Sonify/utility")
    if model:
        widgets = {i.name: i.type for i in node.inputs if i.type in ("INT", "FLOAT", "BOOLEAN", "COMBO", "STRING")}
        assert set(node.price_badge.widgets) <= set(widgets)  # ComfyUI refuses a badge on an unknown widget
        price = MODELS[MODEL_NODES[node_id].key].price
        if price.per == "second":
            assert price.seconds_param in node.price_badge.widgets and str(price.usd) in node.price_badge.expr
        if price.usd is None and not price.note.startswith("$"):
            assert node.price_badge.widgets == () and "price not published" in node.price_badge.expr


def test_seed_minus_one_runs_again_on_every_queue_and_a_fixed_seed_keeps_the_cache():
    for node_id in ("SonifyMMAudioV2", "SonifyThinkSoundWaveSpeed", "SonifyThinkSoundFal"):
        fingerprint = NODES[node_id].fingerprint
        assert fingerprint(prompt="rain", seed=-1) != fingerprint(prompt="rain", seed=-1)
        assert fingerprint(prompt="rain", seed=7) == fingerprint(prompt="rain", seed=7) != fingerprint(seed=8)
    assert NODES["SonifyKlingVideoToAudio"].fingerprint is None and NODES["SonifySyncLipsync"].fingerprint is None


def test_without_comfyuis_schema_the_pack_gives_classic_classes_and_no_entry_point():
    pack = load_pack()
    assert module("nodes.v3").host_has_schema() is False
    assert set(pack.NODE_CLASS_MAPPINGS) == set(CONTRACT)
    assert not hasattr(pack, "comfy_entrypoint")  # ComfyUI reads NODE_CLASS_MAPPINGS first: only one of the two


def test_the_prompt_boxes_say_what_goes_in_them():
    prompt = NODES["SonifyMMAudioV2"].input("prompt")
    assert prompt.multiline and prompt.placeholder.startswith("What the sound should be")
    assert all(i.placeholder for n in NODES.values() for i in n.inputs if i.type == "STRING" and i.multiline)
