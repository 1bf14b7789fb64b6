"""Sonify's VIDEO on ComfyUI's own video API (comfy_api), which CI cannot install.

A stand-in host is written here from the parameter names recorded in HOSTS, read off ComfyUI 0.33.0 and 0.8.0
(comfy_api/latest/_input/video_types.py, _input_impl/video_types.py, comfy_extras/nodes_video.py) and checked by
hand against both real hosts. Its methods refuse a call the host would refuse (an unknown keyword is a TypeError,
as on the host) and write real files with PyAV; a 0.8 host cannot write its frames into a buffer, as there.
"""

from __future__ import annotations

import functools
import gc
import inspect
import io
import json
import math
import os
import sys
import tempfile
import threading
import types
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from clips import flash_frames, write_clip
from graphs import running_graph, saved_graph
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


def _write_as_host(api: HostVideoApi, c: Any, path: Any, metadata: dict | None) -> None:
    """The frames (and sound) at `path` (a file name or a writable buffer), written as the host's own save_to
    writes them with its default arguments: an MP4 (0.33: faststart where it writes a file), each metadata value as
    JSON in a tag, H.264 4:2:0 at the rate rounded to 1/1000, then the sound as one AAC frame cut to the picture's
    length (0.33: planar, in a named layout; 0.8: packed, the stream's layout left to PyAV)."""
    newer = "crf" in api.save_to
    is_file = isinstance(path, (str, os.PathLike))
    options = {"movflags": "use_metadata_tags+faststart" if newer and is_file else "use_metadata_tags"}
    rate = Fraction(round(c.frame_rate * 1000), 1000)
    with av.open(path, mode="w", format="mp4", options=options) as output:
        for key, value in (metadata or {}).items():
            output.metadata[key] = json.dumps(value)
        picture = output.add_stream("h264", rate=rate)
        picture.width, picture.height, picture.pix_fmt = c.images.shape[2], c.images.shape[1], "yuv420p"
        sound = None
        if c.audio:
            sample_rate = int(c.audio["sample_rate"])
            waveform = c.audio["waveform"][:, :, :math.ceil(sample_rate / rate * c.images.shape[0])]
            layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(waveform.shape[1], "stereo")
            sound = output.add_stream("aac", rate=sample_rate, **({"layout": layout} if newer else {}))
        for frame in c.images:
            rgb = av.VideoFrame.from_ndarray((frame * 255).clamp(0, 255).byte().numpy(), format="rgb24")
            output.mux(picture.encode(rgb.reformat(format="yuv420p")))
        output.mux(picture.encode(None))
        if sound is not None:
            if newer:
                frame = av.AudioFrame.from_ndarray(waveform[0].float().contiguous().numpy(), format="fltp", layout=layout)
            else:
                frame = av.AudioFrame.from_ndarray(waveform.movedim(2, 1).reshape(1, -1).float().numpy(), format="flt",
                                                   layout="mono" if waveform.shape[1] == 1 else "stereo")
            frame.sample_rate, frame.pts = sample_rate, 0
            output.mux(sound.encode(frame))
            output.mux(sound.encode(None))


class StandInHost:
    """comfy_api.input / .input_impl / .util as a host with `api` shows them, and every save_to call it got."""

    def __init__(self, api: HostVideoApi) -> None:
        self.api, self.saves, self.encodes = api, [], []  # every save_to call; every picture it encoded
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
            host.encodes.append({"thread": threading.current_thread().name, "frames": self.components.images.shape[0],
                                 "sound": bool(self.components.audio)})
            _write_as_host(api, self.components, path, options.get("metadata"))

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


def frames_in(emulator, n: int = 24, fps: float = 24.0, unique_id: str | None = None, seed: int = 1, **source: Any):
    images = torch.from_numpy(flash_frames(n, 96, 64, flash_frames=(n // 2,)))
    inputs = {"images": images, "fps": fps} if not source else source
    audio, video, job = node("SonifyThinkSoundWaveSpeed")(prompt="", seed=seed, unique_id=unique_id, **inputs)
    return images, audio, video, job


def test_save_video_gives_the_frames_video_every_argument_the_host_passes(emulator, wavespeed_env, host, tmp_path):
    """IMAGE → a Sonify node → Save Video: core's SaveVideo calls save_to with its keywords (0.33: crf and colour
    space too) and, for any other picture than the one made during the wait (here 0.33's crf and HDR, or on 0.8 a
    Matroska file), the host's own encoder gets them all."""
    images, audio, video, _ = frames_in(emulator)
    saved = tmp_path / ("saved.mp4" if "crf" in host.api.save_video_passes else "saved.mkv")
    keywords = {"format": "auto", "codec": "auto", "metadata": {"prompt": {"1": "x"}}, "crf": 18.0, "color_space": "HDR"}
    video.save_to(str(saved), **{k: keywords[k] for k in host.api.save_video_passes})

    assert host.saves[-1] == {**dict.fromkeys(host.api.save_to[1:]),
                              **{k: keywords[k] for k in host.api.save_video_passes}, "path": str(saved)}
    assert isinstance(video, host.VideoFromComponents)
    assert video.get_components().images is images and torch.equal(video.get_components().audio["waveform"],
                                                                   audio["waveform"])
    info = media.probe(saved)
    assert info.frames == 24 and info.has_audio


def test_where_the_host_streams_frames_its_own_class_carries_them(emulator, wavespeed_env, host, monkeypatch):
    """Where no node will want the result's file, the VIDEO is the host's own class (0.8: with only a stream
    added); where one will, a subclass of it whose save_to can use the picture made during the wait."""
    running_graph(monkeypatch, {"7": {"class_type": "SonifyThinkSoundWaveSpeed", "inputs": {}}})
    _, _, video, _ = frames_in(emulator, unique_id="7")
    if host.api.buffer_without_format:
        assert type(video) is host.VideoFromComponents
    else:
        assert type(video).__mro__[1] is host.VideoFromComponents and "save_to" not in vars(type(video))
    running_graph(monkeypatch, saved_graph("7"))
    _, _, video, _ = frames_in(emulator, unique_id="7")
    own = [name for name in vars(type(video)) if callable(vars(type(video))[name])]
    assert own == ["save_to"] and isinstance(video, host.VideoFromComponents)


def test_what_sonify_overrides_takes_the_host_parameters(emulator, wavespeed_env, host):
    """The signature check: a method of the returned VIDEO's class that is not the host's own has the host's
    parameter names, so nothing the host passes can be refused."""
    _, _, video, _ = frames_in(emulator)
    recorded = {"save_to": host.api.save_to, "get_stream_source": host.api.get_stream_source,
                "__init__": host.api.components_init}
    for name, names in recorded.items():
        assert params_of(getattr(type(video), name)) == names, name


def test_a_stream_of_the_frames_is_made_once_by_the_host_encoder(emulator, wavespeed_env, host):
    """ComfyUI 0.8: get_stream_source gives a file, saved once; 0.33: the host's own get_stream_source (a buffer).
    Either opens as the frames with the new sound, and its picture is the one the host's encoder made during the
    wait: the frames are encoded once."""
    _, audio, video, _ = frames_in(emulator, n=36)
    first = video.get_stream_source()
    second = video.get_stream_source()
    if host.api.buffer_without_format:
        assert isinstance(first, io.BytesIO)
    else:
        assert first == second and os.path.dirname(first) == str(module("nodes.comfy").temp_dir())
    assert [e for e in host.encodes if e["frames"] == 36] == [{"thread": "sonify-background", "frames": 36, "sound": False}]
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



def _picture_and_sound(path: Any) -> dict[str, Any]:
    """What a saved file is: its container tags; its streams' codecs, profiles, sizes and layouts; its picture's
    timestamps and decoded frames; its sound."""
    with av.open(path) as container:
        tags = dict(container.metadata)
        streams = [(s.type, s.codec_context.name, s.codec_context.profile, s.codec_context.format and s.codec_context.format.name,
                    getattr(s.codec_context, "width", None), getattr(s.codec_context, "height", None),
                    getattr(s.codec_context, "layout", None) and s.codec_context.layout.name,
                    getattr(s.codec_context, "sample_rate", None)) for s in container.streams]
        times = [(p.pts, p.dts, p.duration) for p in container.demux(container.streams.video[0]) if p.size]
    frames, fps = media.decode_frames(path)
    sound, rate = media.decode_audio(path)
    return {"times": times, "frames": frames, "fps": fps, "sound": sound, "rate": rate, "tags": tags, "streams": streams}


@pytest.mark.parametrize("node_id", ["SonifyMMAudioV2", "SonifyThinkSoundWaveSpeed"])  # mono and stereo sound
def test_a_save_of_the_picture_made_ahead_is_the_file_the_host_would_write(emulator, wavespeed_env, host, monkeypatch,
                                                                          tmp_path, node_id):
    """IMAGE → a Sonify node → Save Video with its default arguments: the saved file is what the host's own save_to
    writes for the same VIDEO (the same streams and picture timing, the same sound and metadata tags, the same
    frames to within x264's own variation: its frame threads do not give the same bytes twice, here or in ComfyUI),
    though its picture was encoded during the wait and the save encoded no frame."""
    images = torch.from_numpy(flash_frames(30, 96, 64, flash_frames=(11,)))
    running_graph(monkeypatch, saved_graph("5") | {"5": {"class_type": node_id, "inputs": {}}})
    params = {"prompt": "rain", "seed": 2} if node_id == "SonifyMMAudioV2" else {"prompt": "", "seed": 2}
    _, video, _ = node(node_id)(images=images, fps=24.0, unique_id="5", **params)
    keywords = {"format": "auto", "codec": "auto", "metadata": {"prompt": {"5": {"class_type": node_id}},
                                                                "workflow": {"nodes": [1, 2]}}}
    if "crf" in host.api.save_video_passes:
        keywords |= {"crf": None, "color_space": None}
    video.save_to(str(tmp_path / "ahead.mp4"), **keywords)
    assert [e["thread"] for e in host.encodes if e["frames"] == 30] == ["sonify-background"]

    components = host.VideoComponents(images=images, audio=video.get_components().audio, frame_rate=Fraction(24))
    host.VideoFromComponents(components).save_to(str(tmp_path / "host.mp4"), **keywords)
    made, own = _picture_and_sound(str(tmp_path / "ahead.mp4")), _picture_and_sound(str(tmp_path / "host.mp4"))
    assert made["tags"] == own["tags"] and made["tags"]["prompt"] == json.dumps(keywords["metadata"]["prompt"])
    assert made["streams"] == own["streams"] and made["times"] == own["times"] and made["fps"] == own["fps"]
    assert made["frames"].shape == own["frames"].shape and np.abs(made["frames"] - own["frames"]).mean() < 1 / 255
    assert made["rate"] == own["rate"] and np.array_equal(made["sound"], own["sound"])


def test_only_a_graph_that_wants_the_file_pays_for_the_picture(emulator, wavespeed_env, host, monkeypatch):
    """The VIDEO into Get Video Components (which reads frames) or nowhere: no picture is encoded during the wait;
    into Save Video: it is."""
    for seed, (consumer, encoded) in enumerate((("GetVideoComponents", []), ("SaveVideo", ["sonify-background"]))):
        host.encodes.clear()
        running_graph(monkeypatch, saved_graph("7", consumer))
        _, _, video, _ = frames_in(emulator, unique_id="7", seed=seed)  # a new job: a stored result has no wait
        if encoded:
            assert video._sonify_ahead.result() is not None  # waits for it
        assert [e["thread"] for e in host.encodes if e["frames"] == 24] == encoded, consumer


def test_a_result_no_one_keeps_takes_its_picture_with_it(emulator, wavespeed_env, host):
    _, _, video, _ = frames_in(emulator)
    picture = video._sonify_ahead.result()
    assert picture is not None and picture.is_file()
    del video
    gc.collect()
    assert not picture.exists()


def test_cancel_during_the_picture_stops_it_and_leaves_no_file(emulator, wavespeed_env, host, monkeypatch):
    """Cancel pressed while the job waits and the picture is being encoded: the node stops as ComfyUI's interrupt,
    the encode stops at its next frame and its file is removed."""
    emulator.model_seconds = 30  # the job runs on until the Cancel
    pressed = threading.Event()
    stand_in = types.ModuleType("comfy.model_management")
    stand_in.InterruptProcessingException = type("InterruptProcessingException", (Exception,), {})
    stand_in.processing_interrupted = pressed.is_set

    def throw() -> None:
        if pressed.is_set():
            raise stand_in.InterruptProcessingException()

    stand_in.throw_exception_if_processing_interrupted = throw
    monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.model_management", stand_in)
    host_save = host.VideoFromComponents.save_to

    @functools.wraps(host_save)  # the host's signature: a save_to Sonify knows
    def save_then_cancel(self: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "sonify-background":
            pressed.set()  # the user presses Cancel as the picture's encode starts
        return host_save(self, *args, **kwargs)

    monkeypatch.setattr(host.VideoFromComponents, "save_to", save_then_cancel)
    folder = module("nodes.comfy").temp_dir()
    before = set(folder.glob("sonify-picture-*"))
    with pytest.raises(stand_in.InterruptProcessingException):
        frames_in(emulator)
    for thread in threading.enumerate():
        if thread.name == "sonify-background":
            thread.join()
    assert set(folder.glob("sonify-picture-*")) <= before
    assert [e["frames"] for e in host.encodes] == [24]  # it began, and stopped before writing a file
