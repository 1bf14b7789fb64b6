"""example_workflows/*.json: ComfyUI UI-format workflows that load in ComfyUI v0.8.0 as saved.

Sonify nodes are checked against the pack's own INPUT_TYPES / RETURN_TYPES (loaded as ComfyUI loads
the pack); ComfyUI core nodes against the table below, written from ComfyUI v0.8.0's source
(comfy_extras/nodes_video.py, comfy_extras/nodes_audio.py, nodes.py) and from what its frontend
(1.35) saves for them. ComfyUI itself is not needed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pack import ROOT, load_pack, module

WORKFLOW_DIR = ROOT / "example_workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))

# The frontend adds this combo after an INT widget named seed / noise_seed (or one declaring
# control_after_generate) and saves its value in widgets_values right after the seed's value.
CONTROL_AFTER_GENERATE = ("fixed", "increment", "decrement", "randomize")
SEED_NAMES = ("seed", "noise_seed")
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
VIDEO_FILES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v")
AUDIO_FILES = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus")


@dataclass(frozen=True)
class Widget:
    """One entry of widgets_values. kind: INT, FLOAT, STRING, BOOLEAN, COMBO, FILE (a combo listing the
    input folder, so any file name with one of `choices` as extension), or UI (frontend-only: a preview
    or upload button, saved as null or one of `choices`, and left out when trailing)."""

    name: str
    kind: str
    choices: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Input:
    name: str
    type: str  # the slot type the frontend saves: a socket type, or the widget's type (COMBO for combos)
    widget: bool
    required: bool


@dataclass(frozen=True)
class Schema:
    inputs: tuple[Input, ...]
    widgets: tuple[Widget, ...]
    outputs: tuple[tuple[str, str], ...]  # (name, type)


def _core(inputs: list[tuple[str, str]], widgets: list[Widget], outputs: list[tuple[str, str]],
          optional: tuple[str, ...] = ()) -> Schema:
    kinds = {w.name: w.kind for w in widgets}
    return Schema(
        inputs=tuple(Input(name, typ, name in kinds, name not in optional and name not in kinds) for name, typ in inputs),
        widgets=tuple(widgets), outputs=tuple(outputs))


# ComfyUI v0.8.0 core nodes used by the examples: input names and slot types in declaration order
# (frontend-only widgets last, as the frontend appends them), widgets in widgets_values order, outputs.
CORE: dict[str, Schema] = {
    # comfy_extras/nodes_video.py
    "LoadVideo": _core(
        [("file", "COMBO"), ("upload", "IMAGEUPLOAD")],
        [Widget("file", "FILE", VIDEO_FILES), Widget("upload", "UI", ("image",))],
        [("VIDEO", "VIDEO")]),
    "SaveVideo": _core(
        [("video", "VIDEO"), ("filename_prefix", "STRING"), ("format", "COMBO"), ("codec", "COMBO")],
        [Widget("filename_prefix", "STRING"), Widget("format", "COMBO", ("auto", "mp4")),
         Widget("codec", "COMBO", ("auto", "h264"))],
        []),
    "GetVideoComponents": _core(
        [("video", "VIDEO")], [], [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")]),
    "CreateVideo": _core(
        [("images", "IMAGE"), ("fps", "FLOAT"), ("audio", "AUDIO")],
        [Widget("fps", "FLOAT", min=1.0, max=120.0)], [("VIDEO", "VIDEO")], optional=("audio",)),
    # comfy_extras/nodes_audio.py (the frontend adds an audioUI player, and an upload button to LoadAudio)
    "LoadAudio": _core(
        [("audio", "COMBO"), ("audioUI", "AUDIO_UI"), ("upload", "AUDIOUPLOAD")],
        [Widget("audio", "FILE", AUDIO_FILES + VIDEO_FILES), Widget("audioUI", "UI"), Widget("upload", "UI")],
        [("AUDIO", "AUDIO")]),
    "PreviewAudio": _core([("audio", "AUDIO"), ("audioUI", "AUDIO_UI")], [Widget("audioUI", "UI")], []),
    "SaveAudio": _core(
        [("audio", "AUDIO"), ("filename_prefix", "STRING"), ("audioUI", "AUDIO_UI")],
        [Widget("filename_prefix", "STRING"), Widget("audioUI", "UI")], []),
    # nodes.py
    "PreviewImage": _core([("images", "IMAGE")], [], []),
    # the frontend's own (it sends ComfyUI nothing of it): a note, its text as its one widget value
    "MarkdownNote": _core([], [Widget("text", "STRING")], []),
}
FRONTEND_ONLY = {"MarkdownNote"}
OUTPUT_NODES = {"SaveVideo", "PreviewAudio", "SaveAudio", "PreviewImage"}
# Widgets appended after a release: workflows saved before them lack their values (the frontend keeps defaults).
OPTIONAL_WIDGETS = {"variations", "loudness", "loudness_lufs", "true_peak_dbtp", "best"}


def sonify_schema(cls: type) -> Schema:
    """What ComfyUI's frontend makes of a classic node: inputs required then optional, in order."""
    declared = cls.INPUT_TYPES()
    inputs, widgets = [], []
    for section in ("required", "optional"):
        for name, decl in declared.get(section, {}).items():
            typ, opts = decl[0], (decl[1] if len(decl) > 1 else {})
            if isinstance(typ, (list, tuple)):
                inputs.append(Input(name, "COMBO", True, False))
                widgets.append(Widget(name, "COMBO", tuple(typ)))
            elif typ in WIDGET_TYPES and not opts.get("forceInput"):
                inputs.append(Input(name, typ, True, False))
                widgets.append(Widget(name, typ, min=opts.get("min"), max=opts.get("max")))
                if typ == "INT" and (opts.get("control_after_generate") or name in SEED_NAMES):
                    widgets.append(Widget("control_after_generate", "COMBO", CONTROL_AFTER_GENERATE))
            else:
                inputs.append(Input(name, typ, False, section == "required"))
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    return Schema(tuple(inputs), tuple(widgets), tuple(zip(names, cls.RETURN_TYPES)))


def sonify_nodes() -> dict[str, type]:
    return dict(load_pack().NODE_CLASS_MAPPINGS)


def schema_of(node_type: str) -> Schema:
    nodes = sonify_nodes()
    if node_type in nodes:
        return sonify_schema(nodes[node_type])
    assert node_type in CORE, f"node type {node_type!r} is neither a Sonify node nor a core node in the table"
    return CORE[node_type]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def check_widget_value(where: str, widget: Widget, value: Any) -> None:
    kind = widget.kind
    if kind == "UI":
        assert value is None or value in widget.choices, f"{where}: frontend widget value {value!r}"
    elif kind == "FILE":
        assert isinstance(value, str) and value.lower().endswith(widget.choices), f"{where}: file name {value!r}"
        assert "/" not in value and "\\" not in value and value.strip() == value, f"{where}: {value!r}"
    elif kind == "COMBO":
        assert value in widget.choices, f"{where}: {value!r} is not one of {widget.choices}"
    elif kind == "STRING":
        assert isinstance(value, str), f"{where}: {value!r} is not a string"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), f"{where}: {value!r} is not a bool"
    elif kind in ("INT", "FLOAT"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is not a number"
        assert math.isfinite(value), f"{where}: {value!r}"
        if kind == "INT":
            assert isinstance(value, int), f"{where}: {value!r} is not an integer"
        assert widget.min is None or value >= widget.min, f"{where}: {value} < min {widget.min}"
        assert widget.max is None or value <= widget.max, f"{where}: {value} > max {widget.max}"
    else:
        raise AssertionError(f"{where}: unknown widget kind {kind}")


def test_there_are_example_workflows() -> None:
    assert WORKFLOWS, f"no workflows in {WORKFLOW_DIR}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_ui_format(path: Path) -> None:
    wf = load(path)
    for key in ("last_node_id", "last_link_id", "nodes", "links", "groups", "config", "extra", "version"):
        assert key in wf, f"missing top-level {key!r}"
    assert wf["version"] == 0.4
    assert isinstance(wf["nodes"], list) and wf["nodes"]
    assert isinstance(wf["links"], list) and isinstance(wf["groups"], list)
    assert isinstance(wf["config"], dict) and isinstance(wf["extra"], dict)
    ids = [n["id"] for n in wf["nodes"]]
    assert len(set(ids)) == len(ids), "node ids repeat"
    assert all(isinstance(i, int) for i in ids) and wf["last_node_id"] >= max(ids)
    link_ids = [link[0] for link in wf["links"]]
    assert len(set(link_ids)) == len(link_ids), "link ids repeat"
    assert not link_ids or wf["last_link_id"] >= max(link_ids)
    for node in wf["nodes"]:
        where = f"node {node.get('id')} ({node.get('type')})"
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties",
                    "widgets_values"):
            assert key in node, f"{where}: missing {key!r}"
        assert len(node["pos"]) == 2 and len(node["size"]) == 2, where
        assert all(isinstance(v, (int, float)) for v in [*node["pos"], *node["size"]]), where
        assert isinstance(node["flags"], dict) and node["mode"] == 0, where
        if node["type"] not in FRONTEND_ONLY:
            assert node["properties"].get("Node name for S&R") == node["type"], where
        assert isinstance(node["widgets_values"], list), where


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_nodes_match_their_declarations(path: Path) -> None:
    wf = load(path)
    for node in wf["nodes"]:
        where = f"{path.name}: node {node['id']} ({node['type']})"
        schema = schema_of(node["type"])
        declared = {i.name: i for i in schema.inputs}

        names = [i["name"] for i in node["inputs"]]
        assert len(set(names)) == len(names), f"{where}: inputs repeat"
        for slot in node["inputs"]:
            spec = declared.get(slot["name"])
            assert spec is not None, f"{where}: no input named {slot['name']!r}"
            assert slot["type"] == spec.type, f"{where}: input {spec.name} is {spec.type}, saved as {slot['type']}"
            if spec.widget:
                assert slot.get("widget") == {"name": spec.name}, f"{where}: widget input {spec.name} lacks widget"
            else:
                assert "widget" not in slot, f"{where}: {spec.name} is not a widget"
        linked = {i["name"] for i in node["inputs"] if i.get("link") is not None}
        for spec in schema.inputs:
            if spec.required:
                assert spec.name in linked, f"{where}: required input {spec.name} is not connected"

        assert [(o["name"], o["type"]) for o in node["outputs"]] == list(schema.outputs), f"{where}: outputs"
        for index, output in enumerate(node["outputs"]):
            assert output.get("slot_index", index) == index, f"{where}: slot_index of {output['name']}"
            assert output.get("links") is None or isinstance(output["links"], list), where

        values = node["widgets_values"]
        # Widgets added since a workflow was saved (appended, optional) keep their defaults when absent.
        optional = {i.name for i in schema.inputs if i.widget and i.name in OPTIONAL_WIDGETS}
        last_real = max((i for i, w in enumerate(schema.widgets) if w.kind != "UI" and w.name not in optional),
                        default=-1)
        assert last_real + 1 <= len(values) <= len(schema.widgets), (
            f"{where}: {len(values)} widget values for widgets {[w.name for w in schema.widgets]}")
        for widget, value in zip(schema.widgets, values):
            check_widget_value(f"{where}: widget {widget.name}", widget, value)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_links_connect_matching_types(path: Path) -> None:
    wf = load(path)
    nodes = {n["id"]: n for n in wf["nodes"]}
    for link in wf["links"]:
        assert len(link) == 6, f"link {link}"
        link_id, src_id, src_slot, dst_id, dst_slot, typ = link
        src, dst = nodes[src_id], nodes[dst_id]
        output, target = src["outputs"][src_slot], dst["inputs"][dst_slot]
        where = f"{path.name}: link {link_id} {src['type']}.{output['name']} -> {dst['type']}.{target['name']}"
        assert typ == output["type"] == target["type"], f"{where}: types {typ}, {output['type']}, {target['type']}"
        assert schema_of(src["type"]).outputs[src_slot][1] == typ, where
        assert link_id in (output["links"] or []), f"{where}: not listed on its output"
        assert target["link"] == link_id, f"{where}: not listed on its input"
        assert src["order"] < dst["order"], f"{where}: order is not an execution order"
    known = {link[0] for link in wf["links"]}
    for node in wf["nodes"]:
        for slot in node["inputs"]:
            assert slot.get("link") is None or slot["link"] in known, f"{path.name}: dangling link on {slot['name']}"
        for output in node["outputs"]:
            assert set(output["links"] or []) <= known, f"{path.name}: dangling link on {output['name']}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_sonify_nodes_are_wired_and_valued_as_the_engine_accepts(path: Path) -> None:
    """A video to work on, and widget values that pass the engine's pre-spend checks."""
    wf = load(path)
    pack = load_pack()
    models = module("sonify.catalog")
    spec_by_title = {m.title: m for m in models.MODELS.values()}
    types = [n["type"] for n in wf["nodes"]]
    assert OUTPUT_NODES & set(types), f"{path.name}: saves or previews nothing"
    sonify_types = [t for t in types if t in pack.NODE_CLASS_MAPPINGS]
    assert sonify_types, f"{path.name}: has no Sonify node"
    if any("video" in {i.name for i in sonify_schema(pack.NODE_CLASS_MAPPINGS[t]).inputs} for t in sonify_types):
        assert "LoadVideo" in types, f"{path.name}: loads no video"
    for node in wf["nodes"]:
        if node["type"] not in pack.NODE_CLASS_MAPPINGS:
            continue
        where = f"{path.name}: node {node['id']} ({node['type']})"
        linked = {i["name"] for i in node["inputs"] if i.get("link") is not None}
        schema = sonify_schema(pack.NODE_CLASS_MAPPINGS[node["type"]])
        if {"video", "images"} <= {i.name for i in schema.inputs}:
            assert len(linked & {"video", "images"}) == 1, f"{where}: connect exactly one of video or images"
            if "images" in linked:
                assert "fps" in linked or "fps" in [w.name for w in schema.widgets], where
        values = dict(zip((w.name for w in schema.widgets), node["widgets_values"]))
        # -1 means "random at the provider"; "fixed" keeps it so (randomize would overwrite it after a run).
        if "control_after_generate" in values:
            assert values["control_after_generate"] == "fixed", f"{where}: control_after_generate"
        spec = spec_by_title.get(pack.NODE_DISPLAY_NAME_MAPPINGS.get(node["type"]))
        if spec is not None:
            spec.validate({p.name: values[p.name] for p in spec.params})


# ComfyUI's template browser (frontend 1.35 and 1.49) titles a custom node's template with its file name, on a
# card at least 15rem wide in one line of 14 px semibold text: about 30 characters show.
TITLE_CHARACTERS = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,-]*")
TITLE_FITS = 28


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_card_title_is_the_file_name_and_a_human_one(path: Path) -> None:
    """The card shows the file name: words, not an identifier, short enough not to be cut off, and only
    characters every file system and a URL path take as they are (besides the space)."""
    title = path.stem
    assert TITLE_CHARACTERS.fullmatch(title) and len(title) <= TITLE_FITS, title
    assert " " in title and "_" not in title and title[0].isupper(), title


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_template_says_what_it_does_in_one_line(path: Path) -> None:
    """One note at the top of the graph, the first thing seen when the template opens: a one-line description."""
    wf = load(path)
    notes = [n for n in wf["nodes"] if n["type"] == "MarkdownNote"]
    assert len(notes) == 1, path.name
    (text,) = notes[0]["widgets_values"]
    assert "\n" not in text and 40 <= len(text) <= 120 and text.endswith("."), text
    assert text.lower() != path.stem.lower()
    others = [n for n in wf["nodes"] if n is not notes[0]]
    # Above a node's body: its title bar (30) and, on ComfyUI 0.33, the badges the frontend draws over the title
    # (the price, the pack's name: ~20); the note, grown to its text's height (~90 at 1.49), leaves them seen.
    top = min(n["pos"][1] for n in others) - 30 - 20
    assert notes[0]["pos"][1] + max(notes[0]["size"][1], 90) <= top, "the note covers the nodes' titles or badges"


def test_no_two_templates_share_a_title_or_a_description() -> None:
    described = [next(n for n in load(p)["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
                 for p in WORKFLOWS]
    assert len({p.stem.lower() for p in WORKFLOWS}) == len(WORKFLOWS) and len(set(described)) == len(described)


def test_every_sonify_node_has_an_example() -> None:
    used = {n["type"] for path in WORKFLOWS for n in load(path)["nodes"]}
    missing = sorted(set(sonify_nodes()) - used)
    assert not missing, f"no example workflow uses {missing}"


def test_an_example_feeds_frames_and_fps_into_a_sonify_node() -> None:
    for path in WORKFLOWS:
        wf = load(path)
        nodes = {n["id"]: n for n in wf["nodes"]}
        for link in wf["links"]:
            dst = nodes[link[3]]
            if (dst["type"] in sonify_nodes() and dst["inputs"][link[4]]["name"] == "images"
                    and any(i["name"] == "fps" and i.get("link") is not None for i in dst["inputs"])):
                return
    pytest.fail("no example workflow connects IMAGE frames + fps to a Sonify node")


SECRET_NAME = re.compile(r"key|token|secret|passw|credential|auth", re.IGNORECASE)
SECRET_VALUE = [
    re.compile(r"WAVESPEED_API_KEY|FAL_KEY", re.IGNORECASE),  # no key variables, let alone their values
    re.compile(r"\bBearer\s+\S|\bKey\s+[A-Za-z0-9-]{16,}"),  # Authorization header values
    re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"),
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{16,}", re.IGNORECASE),  # fal
    re.compile(r"(?=[A-Za-z]*[0-9])[A-Za-z0-9]{24,}"),  # a long unbroken run of letters and digits: a token
]


def strings(value: Any, path: str = "$"):
    """(path, is_name, text) for every dict key, every string value, and every input/widget name."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", True, key
            if key == "name" and isinstance(item, str):
                yield f"{path}.{key}", True, item
            yield from strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, False, value


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_api_key_anywhere(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    for where, is_name, text in strings(json.loads(raw)):
        if is_name:
            assert not SECRET_NAME.search(text), f"{path.name} {where}: {text!r} looks like a key's name"
        for pattern in SECRET_VALUE:
            assert not pattern.search(text), f"{path.name} {where}: {text!r} looks like a key"


def test_key_check_catches_keys() -> None:
    """The detector above is not vacuous."""
    def flagged(doc: Any) -> bool:
        return any((is_name and SECRET_NAME.search(text)) or any(p.search(text) for p in SECRET_VALUE)
                   for _, is_name, text in strings(doc))

    assert flagged({"widgets_values": ["a prompt", "3f2b9c1d-7a4e-4b8f-9c2d-1e5f6a7b8c9d:0123456789abcdef0123456789abcdef"]})
    assert flagged({"inputs": [{"name": "api_key", "type": "STRING"}]})
    assert flagged({"widgets_values": ["WAVESPEED_API_KEY=abc"]})
    assert flagged({"widgets_values": ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]})
    assert not flagged({"widgets_values": ["footsteps on a gravel path, birdsong", "video/sonify_mmaudio", 4.5]})
