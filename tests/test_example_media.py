"""Templates that run the first time: a thumbnail beside every example workflow, the clip and voice each one
names shipped in example_workflows/media, and those put in ComfyUI's input folder (linked, not copied)."""

from __future__ import annotations

import itertools
import json
import os

import av
import numpy as np
from pack import ROOT, module

from sonify import media

WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
MEDIA = ROOT / "example_workflows" / "media"


def named_files(path) -> set[str]:
    nodes = json.loads(path.read_text())["nodes"]
    return {n["widgets_values"][0] for n in nodes if n["type"] in ("LoadVideo", "LoadAudio")}


def thumbnail(workflow) -> np.ndarray:
    with av.open(str(workflow.with_suffix(".jpg"))) as container:
        assert container.streams.video[0].codec_context.name == "mjpeg"
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_every_workflow_has_a_square_thumbnail_the_frontend_can_show():
    """The template browser's card is square: a square picture fills it (a wide one is a strip in the middle)."""
    assert WORKFLOWS
    for workflow in WORKFLOWS:
        assert thumbnail(workflow).shape == (512, 512, 3), workflow.name


def test_every_thumbnail_is_its_own_picture():
    """No two cards look alike: any two thumbnails differ in a good part of their pixels (where each showed one
    clip's stills and waveform, most pairs differed in under 1 % of them)."""
    pictures = {w.name: thumbnail(w).astype(np.int16) for w in WORKFLOWS}
    for (a, first), (b, second) in itertools.combinations(pictures.items(), 2):
        differing = (np.abs(first - second).max(axis=-1) > 48).mean()
        assert differing > 0.04, f"{a} and {b} differ in only {differing:.1%} of their pixels"


def test_every_clip_and_voice_a_workflow_names_is_shipped_and_plays():
    named = set().union(*(named_files(w) for w in WORKFLOWS))
    assert named == {p.name for p in MEDIA.iterdir()}
    for name in named:
        if name.endswith(".mp4"):
            assert media.probe(MEDIA / name).duration >= 3  # Kling takes 3 s and more
        else:
            samples, rate = media.decode_audio(MEDIA / name)
            assert samples.shape[1] / rate >= 3 and abs(samples).max() > 0.1


def passes_comfyui_033_input_check(input_dir, name) -> bool:
    """ComfyUI 0.33's Load Video / Load Audio validation (folder_paths.exists_annotated_filepath): the file's real
    path, links resolved, lies inside the real input folder, and exists."""
    folder, target = os.path.realpath(input_dir), os.path.realpath(input_dir / name)
    return os.path.commonpath((folder, target)) == folder and os.path.exists(target)


def test_the_media_is_copied_into_the_input_folder_once_and_a_users_file_is_kept(tmp_path):
    offer = module("nodes.example_media").offer
    (tmp_path / "sonify_example_voice.wav").write_bytes(b"the user's own")
    placed = offer(tmp_path)
    assert sorted(placed) == sorted(p.name for p in MEDIA.iterdir() if p.name != "sonify_example_voice.wav")
    for name in placed:
        assert not (tmp_path / name).is_symlink() and (tmp_path / name).read_bytes() == (MEDIA / name).read_bytes()
        assert passes_comfyui_033_input_check(tmp_path, name)
    assert (tmp_path / "sonify_example_voice.wav").read_bytes() == b"the user's own"
    assert offer(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in MEDIA.iterdir())  # no partial file


def test_a_link_the_pack_made_before_becomes_a_copy_and_a_users_link_stays(tmp_path):
    """Earlier versions linked the media in: such a link (even one left dangling by a moved checkout) fails
    ComfyUI 0.33's check, so it is replaced; a link of the user's own to another file is theirs."""
    offer = module("nodes.example_media").offer
    inputs = tmp_path / "input"
    inputs.mkdir()
    os.symlink(MEDIA / "sonify_example_clip.mp4", inputs / "sonify_example_clip.mp4")
    os.symlink(tmp_path / "gone" / "example_workflows" / "media" / "sonify_example_voice.wav",
               inputs / "sonify_example_voice.wav")
    own = tmp_path / "my_take.wav"
    own.write_bytes(b"mine")
    os.symlink(own, inputs / "sonify_example_sound.wav")
    assert not passes_comfyui_033_input_check(inputs, "sonify_example_clip.mp4")

    placed = offer(inputs)
    assert {"sonify_example_clip.mp4", "sonify_example_voice.wav"} <= set(placed)
    assert "sonify_example_sound.wav" not in placed and (inputs / "sonify_example_sound.wav").is_symlink()
    for name in ("sonify_example_clip.mp4", "sonify_example_voice.wav"):
        assert not (inputs / name).is_symlink() and passes_comfyui_033_input_check(inputs, name)
