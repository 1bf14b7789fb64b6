"""Templates that run the first time: a thumbnail beside every example workflow, the clip and voice each one
names shipped in example_workflows/media, and those put in ComfyUI's input folder (linked, not copied)."""

from __future__ import annotations

import json
import os

import av
from pack import ROOT, module

from sonify import media

WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
MEDIA = ROOT / "example_workflows" / "media"


def named_files(path) -> set[str]:
    nodes = json.loads(path.read_text())["nodes"]
    return {n["widgets_values"][0] for n in nodes if n["type"] in ("LoadVideo", "LoadAudio")}


def test_every_workflow_has_a_thumbnail_the_frontend_can_show():
    assert WORKFLOWS
    for workflow in WORKFLOWS:
        with av.open(str(workflow.with_suffix(".jpg"))) as container:
            frame = next(container.decode(video=0))
            assert container.streams.video[0].codec_context.name == "mjpeg"
            assert frame.width == 480 and 150 < frame.height < 400


def test_every_clip_and_voice_a_workflow_names_is_shipped_and_plays():
    named = set().union(*(named_files(w) for w in WORKFLOWS))
    assert named == {p.name for p in MEDIA.iterdir()}
    for name in named:
        if name.endswith(".mp4"):
            assert media.probe(MEDIA / name).duration >= 3  # Kling takes 3 s and more
        else:
            samples, rate = media.decode_audio(MEDIA / name)
            assert samples.shape[1] / rate >= 3 and abs(samples).max() > 0.1


def test_the_media_is_linked_into_the_input_folder_once_and_a_users_file_is_kept(tmp_path):
    offer = module("nodes.example_media").offer
    (tmp_path / "sonify_example_voice.wav").write_bytes(b"the user's own")
    placed = offer(tmp_path)
    assert sorted(placed) == sorted(p.name for p in MEDIA.iterdir() if p.name != "sonify_example_voice.wav")
    for name in placed:
        assert os.path.realpath(tmp_path / name) == str((MEDIA / name).resolve())
    assert (tmp_path / "sonify_example_voice.wav").read_bytes() == b"the user's own"
    assert offer(tmp_path) == []
