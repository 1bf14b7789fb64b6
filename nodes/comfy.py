"""The one module that touches ComfyUI (comfy.*, comfy_api, server, folder_paths).

Every import is lazy and has a fallback, so the nodes run (and are tested) without ComfyUI.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..sonify.errors import Cancelled, ValidationError

log = logging.getLogger("sonify")


def temp_dir() -> Path:
    """Where node results go: ComfyUI's temp folder (its Save nodes copy what the user keeps)."""
    try:
        import folder_paths

        path = Path(folder_paths.get_temp_directory()) / "sonify"
    except ImportError:
        path = Path(tempfile.gettempdir()) / "sonify"
    path.mkdir(parents=True, exist_ok=True)
    return path


def use_comfy_state_dir() -> None:
    """Inside ComfyUI, keep Sonify's state in the user folder (SONIFY_STATE_DIR still wins)."""
    try:
        import folder_paths
    except ImportError:
        return
    from ..sonify import config

    config.host_state_dir = Path(folder_paths.get_user_directory()) / "sonify"


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
    shown = [""]

    def report(text: str, fraction: float | None) -> None:
        if bar is not None and fraction is not None:
            try:
                bar.update_absolute(int(fraction * steps), steps)
            except Exception as exc:  # ComfyUI's progress hook raises its interrupt from here
                if _is_interrupt(exc):
                    raise Cancelled("Cancelled") from None
                raise
        if text != shown[0]:
            shown[0] = text
            log.debug("%s", text)
            if server is not None and unique_id is not None and hasattr(server, "send_progress_text"):
                server.send_progress_text(text, unique_id)

    return report


def _is_interrupt(exc: BaseException) -> bool:
    try:
        from comfy.model_management import InterruptProcessingException
    except ImportError:
        return False
    return isinstance(exc, InterruptProcessingException)


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
    if _is_file_backed(video):
        stream = video.get_stream_source()
        if isinstance(stream, (str, Path)):
            return {"path": str(stream)}
        target = workdir / "input-video.mp4"  # an in-memory file (BytesIO)
        stream.seek(0)
        with open(target, "wb") as out:
            shutil.copyfileobj(stream, out)
        return {"path": str(target)}
    from ..sonify import media

    components = video.get_components()
    # CreateVideo's rate is Fraction(<the fps FLOAT>): snapped like the `fps` widget (29.97… → 30000/1001)
    return {"frames": components.images.cpu().numpy(), "fps": media.exact_fps(components.frame_rate)}


def frames_sound(video: Any) -> tuple[Any, int] | None:
    """The sound that came with a frames VIDEO (samples [C, T], rate); None for a file-backed one
    (its file carries its sound) or a silent one."""
    if _is_file_backed(video):
        return None
    audio = video.get_components().audio
    return from_audio(audio) if audio is not None else None


def _is_file_backed(video: Any) -> bool:
    """True when the VIDEO overrides get_stream_source (VideoFromFile does). The base class's
    version encodes the frames to a buffer — and in ComfyUI 0.8 fails for lack of a format."""
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


def from_audio(audio: dict[str, Any], name: str = "audio") -> tuple[Any, int]:
    """ComfyUI AUDIO → float32 [C, T] numpy and its rate (first item of a batch), checked by the
    engine: integer PCM is scaled, not cast; an empty, NaN, >8-channel or odd-rate AUDIO is refused."""
    import numpy as np

    from ..sonify import media

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValidationError(name, "is not an AUDIO value (a waveform and a sample rate)")
    waveform = audio["waveform"]
    samples = waveform.detach().cpu().numpy() if hasattr(waveform, "detach") else np.asarray(waveform)
    if samples.ndim != 3:
        raise ValidationError(name, f"waveform must be [batch, channels, samples], got shape {list(samples.shape)}")
    return media.check_audio(samples[0], audio["sample_rate"], name), int(audio["sample_rate"])
