"""Sonify's VIDEO on ComfyUI's own video API (comfy_api), which CI cannot install.

A stand-in host is written here from the parameter names recorded in HOSTS, read off ComfyUI 0.33.0 and 0.8.0
(comfy_api/latest/_input/video_types.py, _input_impl/video_types.py, comfy_extras/nodes_video.py) and checked by
hand against both real hosts. Its methods refuse a call the host would refuse (an unknown keyword is a TypeError,
as on the host) and write real files with PyAV; a 0.8 host cannot write its frames into a buffer, as there.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import shutil
import sys
import tempfile
import types
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch
from clips import flash_frames, write_clip
from pack import load_pack, module, outputs

from sonify import media


@dataclass(frozen=True)
class HostVideoApi:
    save_to: tuple[str, ...]  # VideoInput.save_to's parameters after self
    get_stream_source: tuple[str, ...]
    components_init: tuple[str, ...]  # VideoFromComponents.__init__'s, after self
    save_video_passes: tuple[str, ...]  # the keywords core's SaveVideo gives save_to
    buffer_without_format: bool  # VideoFromComponents.save_to can write into a BytesIO (so get_stream_source works)
    trims: bool  # VideoInput has get_active_trim_window


HOSTS = {
    "0.33.0": HostVideoApi(
        save_to=("path", "format", "codec", "metadata", "bit_depth", "crf", "color_space"),
        get_stream_source=(),
        components_init=("components", "bit_depth"),
        save_video_passes=("format", "codec", "metadata", "crf", "color_space"),
        buffer_without_format=True, trims=True),
    "0.8.0": HostVideoApi(
        save_to=("path", "format", "codec", "metadata"),
        get_stream_source=(),
        components_init=("components",),
        save_video_passes=("format", "codec", "metadata"),
        buffer_without_format=False, trims=False),
}


def _signature(names: tuple[str, ...]) -> inspect.Signature:
    """self, then `names`: the first without a default, the rest defaulting to None (as the host's do, enums aside)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter("self", kind)] + [
        inspect.Parameter(name, kind, **({} if i == 0 else {"default": None})) for i, name in enumerate(names)])


def _method(names: tuple[str, ...], body):
    """A method taking exactly the host's parameters: any other keyword is a TypeError, as on the host."""
    signature = _signature(names)

    def method(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        return body(arguments.pop("self"), **arguments)

    method.__signature__ = signature
    return method


def _write(images: torch.Tensor, frame_rate: Fraction, audio: dict | None, path: Any) -> None:
    """The frames (and sound) as an MP4 at `path`: a file name or a writable buffer."""
    with tempfile.TemporaryDirectory() as tmp:
        made = Path(tmp) / "picture.mp4"
        media.frames_to_mp4(images.cpu().numpy(), frame_rate, made)
        if audio is not None:
            media.mux(made, audio["waveform"][0].numpy(), audio["sample_rate"], Path(tmp) / "video.mp4")
            made = Path(tmp) / "video.mp4"
        if isinstance(path, (str, os.PathLike)):
            shutil.copyfile(made, path)
        else:
            path.write(made.read_bytes())


class StandInHost:
    """comfy_api.input / .input_impl / .util as a host with `api` shows them, and every save_to call it got."""

    def __init__(self, api: HostVideoApi) -> None:
        self.api, self.saves = api, []
        host = self

        @dataclass
        class VideoComponents:
            images: Any
            frame_rate: Fraction
            audio: Any = None
            metadata: Any = None

        class VideoInput:
            def get_stream_source(self) -> Any:  # the base class's: its frames saved into a buffer
                buffer = io.BytesIO()
                self.save_to(buffer)
                buffer.seek(0)
                return buffer

            def get_components(self) -> Any:
                raise NotImplementedError

        if api.trims:
            VideoInput.get_active_trim_window = lambda self: (0.0, 0.0)
            VideoInput.get_bit_depth = lambda self: 8

        def init(self: Any, components: Any, bit_depth: Any = 8) -> None:
            self.components, self.bit_depth = components, bit_depth

        def save(self: Any, path: Any, **options: Any) -> None:
            host.saves.append({"path": path, **options})
            if not isinstance(path, (str, os.PathLike)) and not api.buffer_without_format:
                raise ValueError("Could not determine output format")  # PyAV, given a buffer and no container name
            c = self.components
            _write(c.images, c.frame_rate, c.audio, path)

        class VideoFromComponents(VideoInput):
            __init__ = _method(api.components_init, init)
            save_to = _method(api.save_to, save)

            def get_components(self) -> Any:
                return self.components

        if api.trims:
            VideoFromComponents.get_bit_depth = lambda self: self.bit_depth

        self.VideoInput, self.VideoFromComponents, self.VideoComponents = VideoInput, VideoFromComponents, VideoComponents

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        package = types.ModuleType("comfy_api")
        package.__path__ = []
        parts = {"input": {"VideoInput": self.VideoInput},
                 "input_impl": {"VideoFromComponents": self.VideoFromComponents},
                 "util": {"VideoComponents": self.VideoComponents}}
        monkeypatch.setitem(sys.modules, "comfy_api", package)
        for name, values in parts.items():
            part = types.ModuleType(f"comfy_api.{name}")
            part.__dict__.update(values)
            monkeypatch.setitem(sys.modules, f"comfy_api.{name}", part)
            setattr(package, name, part)


def _forget_host() -> None:
    """Drop what the pack learnt of the host (its cached look-ups), so each test meets its own."""
    for value in vars(module("nodes.comfy")).values():
        if hasattr(value, "cache_clear"):
            value.cache_clear()


@pytest.fixture(params=sorted(HOSTS))
def host(request, monkeypatch) -> StandInHost:
    standing_in = StandInHost(HOSTS[request.param])
    standing_in.install(monkeypatch)
    _forget_host()
    yield standing_in
    _forget_host()


def params_of(function: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)[1:]


def node(node_id: str):
    cls = load_pack().NODE_CLASS_MAPPINGS[node_id]
    return outputs(getattr(cls(), cls.FUNCTION))


def frames_in(emulator, n: int = 24, fps: float = 24.0, **source: Any):
    images = torch.from_numpy(flash_frames(n, 96, 64, flash_frames=(n // 2,)))
    inputs = {"images": images, "fps": fps} if not source else source
    audio, video, job = node("SonifyThinkSoundWaveSpeed")(prompt="", seed=1, **inputs)
    return images, audio, video, job


def test_save_video_gives_the_frames_video_every_argument_the_host_passes(emulator, wavespeed_env, host, tmp_path):
    """IMAGE → a Sonify node → Save Video: core's SaveVideo calls save_to with its keywords (0.33: crf and colour
    space too) and the host's own encoder gets them all."""
    images, audio, video, _ = frames_in(emulator)
    saved = tmp_path / "saved.mp4"
    keywords = {"format": "auto", "codec": "auto", "metadata": {"prompt": {"1": "x"}}, "crf": 18.0, "color_space": "HDR"}
    video.save_to(str(saved), **{k: keywords[k] for k in host.api.save_video_passes})

    assert host.saves[-1] == {**dict.fromkeys(host.api.save_to[1:]),
                              **{k: keywords[k] for k in host.api.save_video_passes}, "path": str(saved)}
    assert isinstance(video, host.VideoFromComponents)
    assert video.get_components().images is images and torch.equal(video.get_components().audio["waveform"],
                                                                   audio["waveform"])
    info = media.probe(saved)
    assert info.frames == 24 and info.has_audio


def test_where_the_host_streams_frames_its_own_class_carries_them(emulator, wavespeed_env, host):
    _, _, video, _ = frames_in(emulator)
    if host.api.buffer_without_format:
        assert type(video) is host.VideoFromComponents
    else:
        assert type(video).__mro__[1] is host.VideoFromComponents and "save_to" not in vars(type(video))


def test_what_sonify_overrides_takes_the_host_parameters(emulator, wavespeed_env, host):
    """The signature check: a method of the returned VIDEO's class that is not the host's own has the host's
    parameter names, so nothing the host passes can be refused."""
    _, _, video, _ = frames_in(emulator)
    recorded = {"save_to": host.api.save_to, "get_stream_source": host.api.get_stream_source,
                "__init__": host.api.components_init}
    for name, names in recorded.items():
        assert params_of(getattr(type(video), name)) == names, name


def test_a_stream_of_the_frames_is_made_once_by_the_host_encoder(emulator, wavespeed_env, host):
    """ComfyUI 0.8: get_stream_source gives a file, saved by the host's own save_to once; 0.33: the host's own
    get_stream_source (a buffer). Either opens as the frames with the new sound."""
    _, audio, video, _ = frames_in(emulator, n=36)
    first = video.get_stream_source()
    second = video.get_stream_source()
    if host.api.buffer_without_format:
        assert isinstance(first, io.BytesIO)
    else:
        assert first == second and os.path.dirname(first) == str(module("nodes.comfy").temp_dir())
        assert [call["path"] for call in host.saves if isinstance(call["path"], str)] == [first]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.mp4"
        path.write_bytes(first.getvalue() if isinstance(first, io.BytesIO) else Path(first).read_bytes())
        info = media.probe(path)
        sound, rate = media.decode_audio(path)
    assert info.frames == 36 and rate == audio["sample_rate"]
    assert abs(sound.shape[1] / rate - 1.5) < 0.05


def test_frames_at_10_bit_stay_10_bit(emulator, wavespeed_env, monkeypatch):
    """A frames VIDEO made at 10 bits (0.33's CreateVideo bit_depth=10) comes out of a Sonify node at 10 bits: the
    host encodes it so when it is saved."""
    host = StandInHost(HOSTS["0.33.0"])
    host.install(monkeypatch)
    _forget_host()
    try:
        images = torch.from_numpy(flash_frames(24, 96, 64, flash_frames=(12,)))
        source = host.VideoFromComponents(host.VideoComponents(images=images, frame_rate=Fraction(24)), bit_depth=10)
        _, _, video, _ = frames_in(emulator, video=source)
        assert video.get_bit_depth() == 10 and video.get_components().images is images
        _, _, from_images, _ = frames_in(emulator)
        assert from_images.get_bit_depth() == 8
    finally:
        _forget_host()


def test_a_trimmed_file_video_is_sent_as_its_window(emulator, wavespeed_env, monkeypatch, tmp_path):
    """ComfyUI 0.33's VideoFromFile keeps a trim window (after a trim node) that its get_stream_source() does not
    apply: the model gets the window, cut by the VIDEO's own save_to, not the whole file."""
    host = StandInHost(HOSTS["0.33.0"])
    host.install(monkeypatch)
    whole = write_clip(tmp_path / "whole.mp4", 96, Fraction(24), 96, 64, flash_at=(60,))

    class TrimmedFile(host.VideoInput):
        def get_stream_source(self) -> str:
            return str(whole)

        def get_active_trim_window(self) -> tuple[float, float]:
            return 1.0, 2.0

        def save_to(self, path: str, **_: Any) -> None:
            frames, rate = media.decode_frames(whole)
            media.frames_to_mp4(frames[24:72], rate, path)

    try:
        audio, _, job = node("SonifyThinkSoundWaveSpeed")(prompt="", seed=1, video=TrimmedFile())
    finally:
        _forget_host()
    sent = emulator.storage.resolve(emulator.tasks.get(json.loads(job)["task_id"]).media["video"])
    assert media.probe(sent).duration == pytest.approx(2.0, abs=0.05)
    assert audio["waveform"].shape[-1] / audio["sample_rate"] == pytest.approx(2.0, abs=0.01)

