"""Every node, as ComfyUI sees it: a description, a display name that says model and provider, a
tooltip on every input (with its range and default) and on every output."""

from __future__ import annotations

import pytest
from pack import load_pack

from sonify.catalog import GAIN_DB, MAX_FPS, MIN_FPS, MODELS, PROVIDERS, VARIATIONS, Param

PROVIDER_NAMES = {"wavespeed": "WaveSpeed", "fal": "fal"}
NODES = load_pack().NODE_CLASS_MAPPINGS
CATALOG_NODES = {
    "SonifyMMAudioV2": "mmaudio-v2", "SonifyThinkSoundWaveSpeed": "thinksound-wavespeed",
    "SonifyThinkSoundFal": "thinksound-fal", "SonifyKlingVideoToAudio": "kling-video-to-audio",
    "SonifySyncLipsync": "sync-lipsync", "SonifyThinkSound": "thinksound", "SonifySyncLipsync2": "sync-lipsync-2",
    "SonifySyncLipsync2Pro": "sync-lipsync-2-pro", "SonifySync3": "sync-3", "SonifyKlingLipsync": "kling-lipsync",
    "SonifyLatentSync": "latentsync", "SonifyHunyuanFoley": "hunyuan-foley",
}


def inputs(node_id: str) -> dict[str, tuple]:
    declared = NODES[node_id].INPUT_TYPES()
    return {**declared.get("required", {}), **declared.get("optional", {})}


def number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def test_every_node_is_covered():
    assert set(CATALOG_NODES) | {"SonifyMuxAudio", "SonifyFetchResult", "SonifyPickAudio"} == set(NODES)


@pytest.mark.parametrize("node_id", sorted(n for n, key in CATALOG_NODES.items() if MODELS[key].output == "audio"))
def test_variations_then_loudness_are_the_last_inputs_optional_with_defaults_that_change_nothing(node_id):
    declared = NODES[node_id].INPUT_TYPES()
    appended = ["variations", "loudness", "loudness_lufs", "true_peak_dbtp"]  # in the order they came
    if MODELS[CATALOG_NODES[node_id]].offers:
        appended.append("provider")
    assert list(declared["optional"])[-len(appended):] == appended and not set(appended) & set(declared["required"])
    choices, options = declared["optional"]["loudness"]
    assert choices == ["as generated", "-14 LUFS", "-16 LUFS", "-23 LUFS", "custom"]
    assert options["default"] == "as generated"
    assert declared["optional"]["true_peak_dbtp"][1]["default"] == -1.0
    kind, options = declared["optional"]["variations"]
    assert kind == "INT" and (options["default"], options["min"], options["max"]) == (1, *VARIATIONS) == (1, 1, 8)
    assert "Pick Take" in options["tooltip"]
    assert "variations" not in inputs("SonifySyncLipsync")


@pytest.mark.parametrize("node_id", sorted(NODES))
def test_description_and_display_name(node_id):
    cls = NODES[node_id]
    names = load_pack().NODE_DISPLAY_NAME_MAPPINGS
    assert len(cls.DESCRIPTION) > 40
    assert node_id.startswith("Sonify") and cls.CATEGORY.startswith("Sonify/")
    if node_id in CATALOG_NODES:
        spec = MODELS[CATALOG_NODES[node_id]]
        model, _, provider = names[node_id].partition(" · ")
        here = " or ".join(PROVIDER_NAMES[s.provider] for s in (spec, *(o.spec for o in spec.offers)))
        assert names[node_id] == spec.node_title and model == spec.name and provider == here
        assert f"Price: {spec.price_text}." in cls.DESCRIPTION
        assert spec.licence_note in cls.DESCRIPTION
    else:
        assert names[node_id].endswith(" · Sonify")
        assert "costs nothing" in cls.DESCRIPTION


@pytest.mark.parametrize("node_id", sorted(NODES))
def test_every_input_has_a_tooltip_with_range_and_default(node_id):
    for name, (kind, *rest) in inputs(node_id).items():
        options = rest[0] if rest else {}
        tooltip = options.get("tooltip", "")
        assert len(tooltip) > 15, f"{node_id}.{name} has no tooltip"
        if kind in ("INT", "FLOAT"):
            assert number_text(options["min"]) in tooltip and number_text(options["max"]) in tooltip, (name, tooltip)
        if "default" in options and name != "task_id":
            assert "Default" in tooltip or "Required" in tooltip, (node_id, name, tooltip)


@pytest.mark.parametrize("node_id", sorted(CATALOG_NODES))
def test_catalog_parameters_carry_the_catalogs_words(node_id):
    spec = MODELS[CATALOG_NODES[node_id]]
    declared = inputs(node_id)
    for param in spec.params:
        kind, options = declared[param.name]
        assert options["tooltip"] == param.describe()
        assert options["default"] == param.default
        assert_range(param, kind, options)
    if spec.max_seconds is not None:
        assert f"from {spec.min_seconds:g} to {spec.max_seconds:g} s" in declared["video"][1]["tooltip"]


def assert_range(param: Param, kind, options: dict) -> None:
    if param.kind in ("int", "float"):
        assert (options["min"], options["max"]) == (param.min, param.max)
        assert f"Range: {param.range_text()}." in options["tooltip"]
    elif param.kind == "choice":
        assert list(kind) == list(param.choices)


@pytest.mark.parametrize("node_id", sorted(NODES))
def test_every_output_has_a_tooltip(node_id):
    cls = NODES[node_id]
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
    assert all(len(tip) > 5 for tip in cls.OUTPUT_TOOLTIPS)


@pytest.mark.parametrize("node_id", sorted(CATALOG_NODES))
def test_a_model_on_both_providers_takes_the_provider_last_and_auto_by_default(node_id):
    """Appended after every other input: a workflow saved before it keeps its widget values and runs on auto."""
    spec = MODELS[CATALOG_NODES[node_id]]
    declared = NODES[node_id].INPUT_TYPES()
    if not spec.offers:
        assert "provider" not in inputs(node_id)
        return
    assert list(declared["optional"])[-1] == "provider" and "provider" not in declared["required"]
    kind, options = declared["optional"]["provider"]
    assert kind == ["auto", "wavespeed", "fal", "wavespeed, then fal", "fal, then wavespeed"]
    assert options["default"] == "auto" and "never paid twice" in options["tooltip"]
    for offered in (spec, *(o.spec for o in spec.offers)):
        assert f"{offered.title}: {offered.price_text}" in options["tooltip"]


def test_the_per_provider_thinksound_nodes_are_deprecated_for_the_one_with_a_provider_choice():
    for node_id in ("SonifyThinkSoundWaveSpeed", "SonifyThinkSoundFal"):
        assert NODES[node_id].DEPRECATED is True
        assert NODES[node_id].DESCRIPTION.startswith("Deprecated: use ThinkSound · fal or WaveSpeed")
    assert not getattr(NODES["SonifyThinkSound"], "DEPRECATED", False)


def test_cost_is_explained_where_a_parameter_changes_it():
    mmaudio = inputs("SonifyMMAudioV2")
    assert "Cost grows" in mmaudio["duration"][1]["tooltip"]
    assert "price follows the clip's length" in mmaudio["video"][1]["tooltip"]
    assert "no cost" in mmaudio["seed"][1]["tooltip"]
    assert "dearer" in inputs("SonifyThinkSoundFal")["num_inference_steps"][1]["tooltip"]


def test_outputs_and_ranges_come_from_the_catalog():
    fal = NODES["SonifyThinkSoundFal"]
    assert fal.RETURN_NAMES == ("audio", "video", *MODELS["thinksound-fal"].extra_outputs, "job")
    assert fal.OUTPUT_TOOLTIPS[2] == "The prompt the provider used."
    assert NODES["SonifyMMAudioV2"].RETURN_NAMES == ("audio", "video", "job")
    fps = inputs("SonifyMMAudioV2")["fps"][1]
    assert (fps["min"], fps["max"]) == (MIN_FPS, MAX_FPS) == (1, 240)
    for name in ("audio_gain_db", "video_gain_db"):
        gain = inputs("SonifyMuxAudio")[name][1]
        assert (gain["min"], gain["max"]) == GAIN_DB == (-60.0, 24.0)
        assert "(-60 to 24)" in gain["tooltip"]
    kind, options = inputs("SonifyFetchResult")["provider"]
    assert kind == list(PROVIDERS) == ["wavespeed", "fal"] and options["default"] in PROVIDERS
