"""Workflows saved before the provider choice still load and run as they did: the per-provider ThinkSound nodes (now
deprecated, their saved workflows kept in tests/old_workflows) on their own provider, and a model node saved without
a `provider` value on auto — against the emulator, with both providers' keys set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pack import ROOT, load_pack, module, outputs
from test_example_workflows import check_widget_value, load, schema_of, sonify_schema

OLD = sorted((ROOT / "tests" / "old_workflows").glob("*.json"))
SAVED_WITHOUT_PROVIDER = ROOT / "example_workflows" / "MMAudio - Foley for a Clip.json"
MEDIA = ROOT / "example_workflows" / "media"


def model_node(workflow: dict) -> dict:
    return next(n for n in workflow["nodes"] if n["type"] in load_pack().NODE_CLASS_MAPPINGS)


def widget_inputs(node: dict) -> dict:
    """The node's widget values by name, as ComfyUI hands them to its FUNCTION (the frontend's own combo after a
    seed is not an input)."""
    schema = sonify_schema(load_pack().NODE_CLASS_MAPPINGS[node["type"]])
    values = dict(zip((w.name for w in schema.widgets), node["widgets_values"]))
    values.pop("control_after_generate", None)
    return values


@pytest.mark.parametrize("path", OLD, ids=lambda p: p.name)
def test_an_old_per_provider_workflow_loads_as_saved(path: Path) -> None:
    workflow = load(path)
    node = model_node(workflow)
    assert node["type"] in module("nodes").DEPRECATED
    schema = schema_of(node["type"])
    saved_before = ["variations", "loudness", "loudness_lufs", "true_peak_dbtp"]  # inputs appended since: absent from the saved node, their defaults kept
    assert [i["name"] for i in node["inputs"]] == [i.name for i in schema.inputs if i.name not in saved_before]
    assert len(node["widgets_values"]) == len(schema.widgets) - len(saved_before)
    for widget, value in zip(schema.widgets, node["widgets_values"]):
        check_widget_value(f"{path.name}: {widget.name}", widget, value)
    assert [(o["name"], o["type"]) for o in node["outputs"]] == list(schema.outputs)


@pytest.mark.parametrize("path", [*OLD, SAVED_WITHOUT_PROVIDER], ids=lambda p: p.name)
def test_an_old_workflow_runs_where_it_ran(path: Path, emulator, wavespeed_env, fal_env) -> None:
    node = model_node(load(path))
    cls = load_pack().NODE_CLASS_MAPPINGS[node["type"]]
    inputs = widget_inputs(node)
    assert "provider" not in inputs  # saved before there was one
    clip = MEDIA / "sonify_example_clip.mp4"
    job = json.loads(outputs(getattr(cls(), cls.FUNCTION))(video=module("nodes.comfy").FileVideo(str(clip)),
                                                             **inputs)[-1])
    provider = {"SonifyThinkSoundWaveSpeed": "wavespeed", "SonifyThinkSoundFal": "fal"}.get(node["type"], "wavespeed")
    assert job["provider"] == provider and job["status"] == "completed"  # its own; auto keeps the node's on a tie
    assert emulator.submits() == 1
    if node["type"] == "SonifyMMAudioV2":
        assert job["provider_choice"]["asked"] == "auto"


@pytest.mark.parametrize("provider", ["wavespeed", "fal"])
def test_the_thinksound_node_that_replaces_them_runs_on_the_provider_its_template_names(provider, emulator,
                                                                                       wavespeed_env, fal_env) -> None:
    name = {"wavespeed": "ThinkSound on WaveSpeed", "fal": "ThinkSound on fal"}[provider]
    node = model_node(load(ROOT / "example_workflows" / f"{name}.json"))
    assert node["type"] == "SonifyThinkSound"
    cls = load_pack().NODE_CLASS_MAPPINGS["SonifyThinkSound"]
    inputs = widget_inputs(node)
    assert inputs["provider"] == provider
    _, _, prompt, job = outputs(getattr(cls(), cls.FUNCTION))(
        video=module("nodes.comfy").FileVideo(str(MEDIA / "sonify_example_clip.mp4")), **inputs)
    info = json.loads(job)
    assert info["provider"] == provider and info["provider_choice"] == {
        "asked": provider, "ran": provider, "why": "chosen", "not_used": []}
    assert emulator.submits() == 1 and (prompt != "") == (provider == "fal")  # WaveSpeed's answer has no prompt
