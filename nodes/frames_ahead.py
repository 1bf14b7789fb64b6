"""A frames result's picture encoded while the model runs, and saved as the host saves it.

A Sonify node given frames returns them with the new sound as a VIDEO (comfy.frames_video): nothing is encoded
until a node saves it, and a graph that saves it paid for the whole picture's encode after the model's run. Where
the node's VIDEO goes to a node that needs a file (comfy.video_file_wanted), the picture is now encoded during the
job's wait, in a background file (sonify/background.py): by the host's own save_to, on the frames alone, with the
arguments core's Save Video passes by default. A save that asks for that picture (H.264 in MP4, the host's default
quality and colour space, the video's own bit depth) gets its packets copied, with the sound and ComfyUI's metadata
written as the host's save_to writes them: its container options, its AAC stream, its tags. Any other save is the
host's own, as before. Only the two save_to signatures read off ComfyUI 0.33 and 0.8 get this; another host saves
as it always did.

Outside ComfyUI the stand-in frames VIDEO (comfy.FramesVideo) encodes its picture ahead the same way, with its own
encoder.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import sys
import uuid
import weakref
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..sonify.background import BackgroundFile
from ..sonify.errors import Cancelled
from . import comfy

# VideoInput.save_to's parameters after self, as ComfyUI 0.33.0 and 0.8.0 have them
SAVE_TO_033 = ("path", "format", "codec", "metadata", "bit_depth", "crf", "color_space")
SAVE_TO_080 = ("path", "format", "codec", "metadata")
_TAGS_033 = {1: "mono", 2: "stereo", 6: "5.1"}  # 0.33's channel layouts for its AAC stream (any other: stereo)


def start_when_waiting(images: Any, frame_rate: Fraction, like: Any = None) -> BackgroundFile | None:
    """The background file of these frames' picture, for comfy.frames_video(ahead=...), to be started (start())
    when the job begins to wait; None on a host whose save_to is not one of the known two."""
    path = comfy.temp_dir() / f"sonify-picture-{uuid.uuid4().hex[:12]}.mp4"
    host = _host()
    if host is None:
        from ..sonify import media

        def make(target: Path, check: Any) -> None:
            media.frames_to_mp4(images.cpu().numpy(), frame_rate, target, check)
    else:
        components_class, video_class = host
        if _save_to_parameters(video_class) not in (SAVE_TO_033, SAVE_TO_080):
            return None
        depth = {"bit_depth": comfy.bit_depth(like)} if _has_bit_depth(video_class) else {}

        def make(target: Path, check: Any) -> None:
            picture = components_class(images=_CheckedFrames(images, check), frame_rate=frame_rate)
            video_class(picture, **depth).save_to(str(target))  # the host's own encoder, its default arguments
    return BackgroundFile(make, path, guard=_host_cancel)


def observer(ahead: BackgroundFile) -> Any:
    """A pipeline observer that starts `ahead` when a job begins to wait for the model."""

    def observe(event: str, _info: Any) -> None:
        if event == "waiting":
            ahead.start()

    return observe


def attach(video: Any, ahead: BackgroundFile) -> Any:
    """`video` (of saving_class(...), or the stand-in FramesVideo) saved from `ahead`'s picture; the picture's
    file goes when the VIDEO does."""
    video._sonify_ahead = ahead
    weakref.finalize(video, ahead.cancel)
    return video


@functools.cache
def saving_class(base: type) -> type:
    """`base` (the host's frames VIDEO class) whose save_to uses the picture made ahead when the save asks for it,
    and is the host's own otherwise. Its signature is the host's (functools.wraps)."""
    host_save = base.save_to
    signature = inspect.signature(host_save)
    newer = _save_to_parameters(base) == SAVE_TO_033

    class SonifyFramesVideo(base):
        _sonify_frames = True  # frames, for comfy.is_file_backed
        _sonify_ahead: BackgroundFile | None = None

        @functools.wraps(host_save)
        def save_to(self, *args: Any, **kwargs: Any) -> Any:
            call = signature.bind(self, *args, **kwargs)
            call.apply_defaults()
            ahead = self._sonify_ahead
            if ahead is not None and _asks_default_picture(call.arguments, newer, self):
                picture = ahead.result()
                if picture is not None:
                    return _save_with_picture(picture, call.arguments, self.get_components(), newer)
                if isinstance(ahead.error, Cancelled):  # the user cancelled while it was being made
                    comfy.raise_interrupted()
            return host_save(self, *args, **kwargs)

    return SonifyFramesVideo


class _CheckedFrames:
    """The frame tensor as the host's save_to reads it (its shape, its frames in order), calling `check()` before
    each frame: a cancelled picture stops between two frames."""

    def __init__(self, images: Any, check: Any) -> None:
        self.images, self.check = images, check

    @property
    def shape(self) -> Any:
        return self.images.shape

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Any:
        for frame in self.images:
            self.check()
            yield frame


def _host() -> tuple[type, type] | None:
    """(VideoComponents, VideoFromComponents) of this host, or None outside ComfyUI."""
    try:
        from comfy_api.input_impl import VideoFromComponents
        from comfy_api.util import VideoComponents
    except ImportError:
        return None
    return VideoComponents, VideoFromComponents


def _save_to_parameters(video_class: type) -> tuple[str, ...]:
    return tuple(inspect.signature(video_class.save_to).parameters)[1:]


def _has_bit_depth(video_class: type) -> bool:
    return "bit_depth" in inspect.signature(video_class.__init__).parameters


def _host_cancel() -> None:
    """ComfyUI's Cancel stops a picture still being made (the graph it was made for is stopping). Its flag is read
    where ComfyUI has loaded its model management, never imported from here (that sets up its devices)."""
    management = sys.modules.get("comfy.model_management")
    if management is not None and management.processing_interrupted():
        raise Cancelled("Cancelled")


def _name(value: Any) -> str:
    """An enum's value or a string, lower case (Save Video passes the host's enums on 0.33, strings on 0.8)."""
    return str(getattr(value, "value", value) or "auto").lower()


def _asks_default_picture(arguments: dict[str, Any], newer: bool, video: Any) -> bool:
    """The save asks for the picture made ahead: an MP4 file (or, on 0.33, buffer), H.264 at the host's default
    quality (no crf), sRGB, at the video's own bit depth."""
    path = arguments["path"]
    if _name(arguments["format"]) not in ("auto", "mp4") or _name(arguments["codec"]) not in ("auto", "h264"):
        return False
    if isinstance(path, (str, os.PathLike)):
        if Path(path).suffix.lower() != ".mp4":
            return False
    elif not newer:  # 0.8 cannot write a buffer; its save says so, as it always did
        return False
    if arguments.get("crf") is not None or arguments.get("color_space") not in (None, "sRGB"):
        return False
    return arguments.get("bit_depth") in (None, comfy.bit_depth(video))


def _save_with_picture(picture: Path, arguments: dict[str, Any], components: Any, newer: bool) -> None:
    """What the host's save_to writes for these arguments, with the picture's packets copied from `picture`: the
    same container options, the metadata tags (each value as JSON), the picture stream, then the sound."""
    import av

    path, metadata = arguments["path"], arguments.get("metadata")
    target = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    with av.open(str(picture)) as source, av.open(target, **_open_options(path, arguments["format"], newer)) as output:
        if metadata is not None:
            for key, value in metadata.items():
                output.metadata[key] = json.dumps(value)
        picture_in = source.streams.video[0]
        picture_out = output.add_stream_from_template(picture_in)
        sound = _sound(output, components, newer)
        for packet in source.demux(picture_in):
            if packet.dts is None:
                continue  # the demuxer's end-of-stream packet
            packet.stream = picture_out
            output.mux(packet)
        if sound is not None:
            stream, frame = sound
            output.mux(stream.encode(frame))
            output.mux(stream.encode(None))


def _open_options(path: Any, container: Any, newer: bool) -> dict[str, Any]:
    """av.open's arguments as the host's save_to gives them for an MP4: 0.33 names the format and asks for
    faststart where it writes a file; 0.8 names the format only when the save did."""
    if newer:
        flags = "use_metadata_tags+faststart" if isinstance(path, (str, os.PathLike)) else "use_metadata_tags"
        return {"mode": "w", "format": "mp4", "options": {"movflags": flags}}
    options: dict[str, Any] = {"mode": "w", "options": {"movflags": "use_metadata_tags"}}
    if _name(container) == "mp4":
        options["format"] = "mp4"
    return options


def _sound(output: Any, components: Any, newer: bool) -> tuple[Any, Any] | None:
    """The host's AAC stream for the VIDEO's sound and the one frame it encodes: the waveform cut to the frames'
    length at the rate the host rounds to (1/1000 fps), planar with a named layout on 0.33, packed on 0.8."""
    import av

    audio = components.audio
    if not audio:
        return None
    rate = int(audio["sample_rate"])
    frame_rate = Fraction(round(components.frame_rate * 1000), 1000)
    samples = math.ceil((rate / frame_rate) * components.images.shape[0])
    if newer:
        waveform = audio["waveform"][0, :, :samples]
        layout = _TAGS_033.get(waveform.shape[0], "stereo")
        stream = output.add_stream("aac", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(waveform.float().cpu().contiguous().numpy(), format="fltp", layout=layout)
    else:
        waveform = audio["waveform"][:, :, :samples]
        stream = output.add_stream("aac", rate=rate)
        frame = av.AudioFrame.from_ndarray(waveform.movedim(2, 1).reshape(1, -1).float().numpy(), format="flt",
                                           layout="mono" if waveform.shape[1] == 1 else "stereo")
    frame.sample_rate, frame.pts = rate, 0
    return stream, frame
