"""The one module that touches ComfyUI (comfy.*, comfy_api, server, folder_paths).

Every import is lazy and has a fallback, so the nodes run (and are tested) without ComfyUI.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import logging
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..sonify.background import BackgroundFile
from ..sonify.errors import Cancelled, ValidationError

log = logging.getLogger("sonify")


def runs_coroutines() -> bool:
    """True when the host runs a coroutine FUNCTION as a task, going on with other nodes meanwhile: ComfyUI
    since Comfy-Org/ComfyUI#8830 (July 2025, first release 0.3.45), which brought `comfy_execution.utils`.
    Looked up, not imported; an older host (or none) gets synchronous nodes."""
    try:
        return importlib.util.find_spec("comfy_execution.utils") is not None
    except (ImportError, ValueError):  # no comfy_execution package; or a module without a spec
        return False


def temp_dir() -> Path:
    """Where node results go: ComfyUI's temp folder (its Save nodes copy what the user keeps)."""
    try:
        import folder_paths

        path = Path(folder_paths.get_temp_directory()) / "sonify"
    except ImportError:
        path = Path(tempfile.gettempdir()) / "sonify"
    path.mkdir(parents=True, exist_ok=True)
    return path


def input_dir() -> Path | None:
    """ComfyUI's input folder (what Load Video and Load Audio list), or None outside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return None
    return Path(folder_paths.get_input_directory())


def preview_file(video_path: Path | None, samples: Any, sample_rate: int) -> dict[str, str]:
    """A node's sound as ComfyUI's audio preview names a file ({"filename", "subfolder", "type": "temp"}, what
    its `ui` "audio" entries are): the result's video in the temp folder when there is one (a browser's audio
    player plays its sound), else the sound written beside it (frames in: no file was made)."""
    from ..sonify import media

    folder = temp_dir()
    if video_path is None or Path(video_path).parent != folder:
        video_path = folder / f"sonify-preview-{uuid.uuid4().hex[:12]}.m4a"
        media.write_audio(samples, sample_rate, video_path)
    return {"filename": Path(video_path).name, "subfolder": folder.name, "type": "temp"}


def use_comfy_state_dir() -> None:
    """Inside ComfyUI, keep Sonify's state in the user folder (SONIFY_STATE_DIR still wins)."""
    try:
        import folder_paths
    except ImportError:
        return
    from ..sonify import settings

    settings.host_state_dir = Path(folder_paths.get_user_directory()) / "sonify"


def _route_table() -> Any:
    """ComfyUI's route table (PromptServer.instance.routes), or None where there is no PromptServer (tests, the
    command line)."""
    try:
        from server import PromptServer

        return PromptServer.instance.routes
    except (ImportError, AttributeError):
        return None


def listen_addresses() -> tuple[str, ...]:
    """The addresses ComfyUI's server listens on: its --listen (comma-separated; `address` on PromptServer is
    the first, once it listens). () outside ComfyUI, or where neither can be read: then only this machine's
    loopback names and the names the user allows reach the key routes."""
    found: list[str] = []
    try:
        from server import PromptServer

        found.append(str(PromptServer.instance.address))
    except (ImportError, AttributeError):
        pass
    cli_args = sys.modules.get("comfy.cli_args")  # ComfyUI's parsed command line; never imported here (that parses)
    listen = getattr(getattr(cli_args, "args", None), "listen", None)
    if isinstance(listen, str):
        found += listen.split(",")
    return tuple(a.strip() for a in found if a.strip())


def add_routes(make_routes: Callable[[], list[Any]]) -> bool:
    """Add the pack's routes (make_routes(): aiohttp RouteDefs) to ComfyUI's server, keeping the key file in
    ComfyUI's user folder. False, and nothing done, where there is no PromptServer."""
    table = _route_table()
    if table is None:
        return False
    use_comfy_state_dir()
    for route in make_routes():  # before ComfyUI builds its app, which also serves each under /api
        table.route(route.method, route.path)(route.handler)
    return True


def add_webhook_route() -> None:
    """The pack's webhook route (webhook_route.py) on ComfyUI's server; nothing where there is no PromptServer.
    Deliveries come only where SONIFY_PUBLIC_URL asks for them."""
    table = _route_table()
    if table is not None:
        from .webhook_route import register

        register(table)


def progress(unique_id: str | None, steps: int = 1000) -> Callable[[str, float | None], None]:
    """A progress callback: the node's progress bar and a short live text on the node (sent only
    when it changes, so a long queue wait does not flood the console or the websocket)."""
    try:
        from comfy.utils import ProgressBar

        bar = ProgressBar(steps)
    except ImportError:
        bar = None
    try:
        from server import PromptServer

        server = PromptServer.instance
    except (ImportError, AttributeError):
        server = None
    interrupt = _interrupt_type()
    shown = [""]

    def report(text: str, fraction: float | None) -> None:
        if bar is not None and fraction is not None:
            try:
                bar.update_absolute(int(fraction * steps), steps)
            except interrupt:  # ComfyUI's progress hook raises its interrupt from here, clearing its flag
                _interrupt_again()
                raise Cancelled("Cancelled") from None
        if text != shown[0]:
            shown[0] = text
            log.debug("%s", text)
            if server is not None and unique_id is not None and hasattr(server, "send_progress_text"):
                from .messages import node_text

                server.send_progress_text(node_text(text), unique_id)

    return report


def _interrupt_type() -> type[BaseException] | tuple[()]:
    """ComfyUI's interrupt, to catch by its class: in 0.33 it derives from BaseException, which `except Exception`
    lets through (the run then ended without cancelling its remote job). () outside ComfyUI: nothing to catch."""
    try:
        from comfy.model_management import InterruptProcessingException
    except ImportError:
        return ()
    return InterruptProcessingException


def _interrupt_again() -> None:
    """Set ComfyUI's interrupt flag again after its progress hook cleared it as it raised: the Cancel holds for
    the whole run (the run's other threads, takes and windows, look at the flag; so do other nodes) until the run
    ends in raise_interrupted, which clears it as ComfyUI's own check does."""
    import comfy.model_management as mm

    mm.interrupt_current_processing(True)


def prompt_id() -> str | None:
    """The ComfyUI prompt the running node belongs to (comfy_execution's executing context, ComfyUI 0.3.4x on): a
    queued workflow's Sonify nodes are one run for SONIFY_MAX_USD_PER_RUN. None on older hosts (each node run is
    a run of its own)."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None
    context = get_executing_context()
    return f"comfyui-{context.prompt_id}" if context is not None else None


def is_cancelled() -> bool:
    """True once the user pressed Cancel in ComfyUI (checked several times a second)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return False
    return bool(mm.processing_interrupted())


def raise_interrupted() -> None:
    """Turn our Cancelled into ComfyUI's own interrupt, which it shows as a clean stop (and clear
    its interrupt flag, as its own check does)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()
    raise mm.InterruptProcessingException()


def video_source(video: Any, workdir: Path) -> dict[str, Any]:
    """A ComfyUI VIDEO as engine arguments: a file path when it is file-backed, else frames + fps."""
    if is_file_backed(video):
        target = workdir / "input-video.mp4"
        if _trim_window(video) != (0.0, 0.0):  # the stream is the whole file: the VIDEO's own save_to cuts it
            video.save_to(str(target))
            return {"path": str(target)}
        stream = video.get_stream_source()
        if isinstance(stream, (str, Path)):
            return {"path": str(stream)}
        stream.seek(0)  # an in-memory file (BytesIO)
        with open(target, "wb") as out:
            shutil.copyfileobj(stream, out)
        return {"path": str(target)}
    from ..sonify import media

    components = video.get_components()
    # CreateVideo's rate is Fraction(<the fps FLOAT>): snapped like the `fps` widget (29.97… → 30000/1001)
    return {"frames": frames_array(components.images, "video"), "fps": media.exact_fps(components.frame_rate)}


def _trim_window(video: Any) -> tuple[float, float]:
    """(start, duration) in seconds of a host VIDEO trimmed without a new file (ComfyUI 0.33's VideoFromFile after
    a trim node: its get_stream_source() is the untrimmed file); (0, 0) for a whole one, or on a host without."""
    window = getattr(video, "get_active_trim_window", None)
    if window is None:
        return 0.0, 0.0
    start, duration = window()
    return float(start), float(duration)


def frames_array(images: Any, name: str = "images") -> Any:
    """IMAGE frames as numpy, without a copy where the dtype allows: float32 and uint8 as they are;
    float16, bfloat16 (which numpy lacks) and float64 as float32; any other dtype refused by name."""
    if not hasattr(images, "detach"):
        raise ValidationError(name, f"is not an IMAGE tensor, got {type(images).__name__}")
    import torch

    images = images.detach().cpu()
    if images.dtype in (torch.float16, torch.bfloat16, torch.float64):
        images = images.to(torch.float32)
    elif images.dtype not in (torch.float32, torch.uint8):
        raise ValidationError(name, f"frames must be float (0..1) or uint8, got {str(images.dtype).replace('torch.', '')}")
    return images.numpy()


def frames_sound(video: Any) -> tuple[Any, int] | None:
    """The sound that came with a frames VIDEO (samples [C, T], rate); None for a file-backed one
    (its file carries its sound) or a silent one."""
    if is_file_backed(video):
        return None
    audio = video.get_components().audio
    return from_audio(audio) if audio is not None else None


def is_file_backed(video: Any) -> bool:
    """True when the VIDEO overrides get_stream_source (VideoFromFile does). The base class's
    version encodes the frames to a buffer — and in ComfyUI 0.8 fails for lack of a format. Sonify's
    own frames VIDEO is frames, though it can give a stream: its file is made only when asked for."""
    if getattr(video, "_sonify_frames", False):
        return False
    try:
        from comfy_api.input import VideoInput
    except ImportError:
        return hasattr(video, "get_stream_source")
    if not isinstance(video, VideoInput):
        return hasattr(video, "get_stream_source")
    return type(video).get_stream_source is not VideoInput.get_stream_source


def make_video(path: Path) -> Any:
    """A VIDEO value for downstream nodes: comfy_api's VideoFromFile when the host has it."""
    try:
        from comfy_api.input_impl import VideoFromFile
    except ImportError:
        return FileVideo(str(path))
    return VideoFromFile(str(path))


def frames_video(images: Any, frame_rate: Fraction, audio: dict[str, Any], like: Any = None,
                 ahead: BackgroundFile | None = None) -> Any:
    """A VIDEO of these frames (the very tensor) with `audio`: nothing is encoded until a downstream node saves
    it or asks it for a stream. `like`: the VIDEO the frames came from, whose bit depth the new one keeps.
    `ahead`: their picture, being encoded while the model ran (frames_ahead.py), which a save uses when it can.

    In ComfyUI it is core's own VideoFromComponents, so the host's SaveVideo passes its every argument (container,
    codec, crf, bit depth, colour space, metadata) to the host's own encoder. Where that class cannot give a
    stream of its frames (ComfyUI 0.8), a subclass adds only that (_streamed_frames_video); with `ahead`, a
    subclass's save_to uses the picture made ahead where the save asks for it (frames_ahead.saving_class)."""
    from . import frames_ahead

    try:
        from comfy_api.input_impl import VideoFromComponents
        from comfy_api.util import VideoComponents
    except ImportError:
        video = FramesVideo(images, frame_rate, audio, _LazyFile(images, frame_rate, audio, ahead))
        return video if ahead is None else frames_ahead.attach(video, ahead)
    components = VideoComponents(images=images, audio=audio, frame_rate=frame_rate)
    video_class = VideoFromComponents if _host_streams_frames() else _streamed_frames_video()
    if ahead is not None:
        video_class = frames_ahead.saving_class(video_class)
    if "bit_depth" in inspect.signature(VideoFromComponents.__init__).parameters:  # 0.33: 8 or 10 when encoded
        video = video_class(components, bit_depth=bit_depth(like))
    else:
        video = video_class(components)
    return video if ahead is None else frames_ahead.attach(video, ahead)


def video_file_wanted(unique_id: Any, output: int) -> bool:
    """Whether output `output` of node `unique_id` in the graph ComfyUI is running goes to a node that will want
    its file (a save, a preview; any node but Sonify's own, which take frames as frames, and core's Get Video
    Components). True where the graph cannot be read (outside ComfyUI, a node made at run time): a file made for
    nothing costs only idle CPU time."""
    try:
        from server import PromptServer

        running, _ = PromptServer.instance.prompt_queue.get_current_queue_volatile()
    except (ImportError, AttributeError):
        return True
    node = str(unique_id)
    graphs = [item[2] for item in running if isinstance(item[2], dict) and node in item[2]]
    if len(graphs) != 1:
        return True
    for other in graphs[0].values():
        inputs = other.get("inputs", {}) if isinstance(other, dict) else {}
        if any(_is_link(value, node, output) for value in inputs.values()):
            kind = str(other.get("class_type", ""))
            if not kind.startswith("Sonify") and kind not in _FRAMES_READERS:
                return True
    return False


def _is_link(value: Any, node: str, output: int) -> bool:
    """An API prompt's input value that is a link from output `output` of node `node`: [node id, output index]."""
    return isinstance(value, list) and len(value) == 2 and str(value[0]) == node and value[1] == output


_FRAMES_READERS = {"GetVideoComponents"}  # core nodes that take a VIDEO's frames, never its file


def bit_depth(video: Any) -> int:
    """The bit depth a VIDEO's frames are encoded at (CreateVideo's 8 or 10); 8 for IMAGE frames."""
    return int(video.get_bit_depth()) if hasattr(video, "get_bit_depth") else 8


@functools.cache
def _host_streams_frames() -> bool:
    """True when core's VideoFromComponents gives a stream of its frames itself (ComfyUI 0.33: its save_to
    writes a buffer as MP4). Found by asking it for one frame's: in 0.8 that fails (PyAV cannot tell which
    container to write into a buffer), and the subclass below stands in."""
    import av
    import torch
    from comfy_api.input_impl import VideoFromComponents
    from comfy_api.util import VideoComponents

    probe = VideoFromComponents(VideoComponents(images=torch.zeros(1, 16, 16, 3), frame_rate=Fraction(24)))
    try:
        probe.get_stream_source()
    except (ValueError, av.error.FFmpegError) as exc:  # 0.8: "Could not determine output format"
        log.debug("core's frames VIDEO gives no stream here (%s): Sonify's gives a file", exc)
        return False
    return True


@functools.cache
def _streamed_frames_video() -> type:
    """Core's VideoFromComponents with a stream (ComfyUI 0.8, whose own cannot give one): the frames saved once,
    by the host's own save_to, to a file in the temp folder. save_to itself is the host's, untouched."""
    from comfy_api.input_impl import VideoFromComponents

    class SonifyFramesVideo(VideoFromComponents):
        _sonify_frames = True  # frames, for is_file_backed, though it overrides get_stream_source

        def get_stream_source(self) -> str:
            with _SAVING:
                if getattr(self, "_sonify_path", None) is None:
                    path = temp_dir() / f"sonify-frames-{uuid.uuid4().hex[:12]}.mp4"
                    self.save_to(str(path))
                    self._sonify_path = path
            return str(self._sonify_path)

    return SonifyFramesVideo


_SAVING = threading.Lock()


class _LazyFile:
    """The file of the stand-in frames VIDEO: the frames encoded (near-losslessly, at their exact rate) with the
    sound, made the first time it is asked for and then reused; the picture made ahead (`ahead`) when there is one."""

    def __init__(self, images: Any, frame_rate: Fraction, audio: dict[str, Any],
                 ahead: BackgroundFile | None = None) -> None:
        self.images, self.frame_rate, self.audio, self.ahead = images, frame_rate, audio, ahead
        self._path: Path | None = None
        self._lock = threading.Lock()

    def path(self) -> str:
        from ..sonify import media

        with self._lock:
            if self._path is None:
                samples, rate = from_audio(self.audio)
                target = temp_dir() / f"sonify-frames-{uuid.uuid4().hex[:12]}.mp4"
                picture = self.ahead.result() if self.ahead is not None else None
                if picture is not None:
                    media.mux(picture, samples, rate, target)
                else:
                    with tempfile.TemporaryDirectory(prefix="sonify-frames-") as tmp:
                        picture = Path(tmp) / "picture.mp4"
                        media.frames_to_mp4(self.images.cpu().numpy(), self.frame_rate, picture)
                        media.mux(picture, samples, rate, target)
                self._path = target
            return str(self._path)

    def save_to(self, path: Any, metadata: dict | None) -> None:
        """`path` a file name or a writable binary file; `metadata` (ComfyUI's prompt and workflow) kept
        in the container, as core's SaveVideo stores it."""
        from ..sonify import media

        source = self.path()
        if hasattr(path, "write"):
            with open(source, "rb") as f:
                shutil.copyfileobj(f, path)
        elif metadata:
            samples, rate = from_audio(self.audio)  # the picture is copied; the sound, encoded again, is cheap
            media.mux(source, samples, rate, path, metadata={k: json.dumps(v) for k, v in metadata.items()})
        else:
            shutil.copyfile(source, path)


class FramesVideo:
    """Stand-in for core's VideoFromComponents outside ComfyUI (tests, hosts before comfy_api): its methods."""

    _sonify_frames = True

    def __init__(self, images: Any, frame_rate: Fraction, audio: dict[str, Any], file: _LazyFile) -> None:
        self.images, self.frame_rate, self.audio = images, frame_rate, audio
        self._sonify_file = file

    def get_components(self) -> FramesVideo:
        return self

    def get_stream_source(self) -> str:
        return self._sonify_file.path()

    def save_to(self, path: Any, format: Any = None, codec: Any = None, metadata: dict | None = None) -> None:
        self._sonify_file.save_to(path, metadata)

    def get_dimensions(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[1])


class FileVideo:
    """Stand-in for comfy_api's VideoFromFile outside ComfyUI (tests, older hosts)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_stream_source(self) -> str:
        return self.path

    def get_dimensions(self) -> tuple[int, int]:
        from ..sonify import media

        info = media.probe(self.path)
        return info.width, info.height

    def save_to(self, path: str, **_: Any) -> None:
        shutil.copyfile(self.path, path)


def to_audio(samples: Any, sample_rate: int) -> dict[str, Any]:
    """engine float32 [C, T] → ComfyUI AUDIO {"waveform": [1, C, T], "sample_rate"}."""
    import torch

    return {"waveform": torch.from_numpy(samples).unsqueeze(0).contiguous(), "sample_rate": int(sample_rate)}


def to_audio_batch(takes: list[Any], sample_rate: int) -> dict[str, Any]:
    """engine float32 [C, T] takes, all of one length → ComfyUI AUDIO {"waveform": [N, C, T], "sample_rate"}."""
    import numpy as np
    import torch

    return {"waveform": torch.from_numpy(np.stack(takes)).contiguous(), "sample_rate": int(sample_rate)}


def from_audio(audio: dict[str, Any], name: str = "audio") -> tuple[Any, int]:
    """ComfyUI AUDIO → float32 [C, T] numpy and its rate (first item of a batch), checked by the
    engine: integer PCM is scaled, not cast; an empty, NaN, >8-channel or odd-rate AUDIO is refused."""
    import numpy as np

    from ..sonify import media

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValidationError(name, "is not an AUDIO value (a waveform and a sample rate)")
    waveform = audio["waveform"]
    if hasattr(waveform, "detach"):
        import torch

        waveform = waveform.detach().cpu()
        if waveform.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16
            waveform = waveform.to(torch.float32)
        elif waveform.dtype == torch.bool or waveform.is_complex():
            raise ValidationError(name, f"waveform must be float or integer PCM, got {str(waveform.dtype).replace('torch.', '')}")
        samples = waveform.numpy()
    else:
        samples = np.asarray(waveform)
    if samples.ndim != 3:
        raise ValidationError(name, f"waveform must be [batch, channels, samples], got shape {list(samples.shape)}")
    if samples.shape[0] == 0:
        raise ValidationError(name, "is an empty batch (no sound in it)")
    return media.check_audio(samples[0], audio["sample_rate"], name), int(audio["sample_rate"])
