"""Local utility node: put an AUDIO on a VIDEO (replace or mix), the picture copied as is."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

from ..sonify import loudness_target
from ..sonify.catalog import GAIN_DB
from . import comfy
from .declaration import Input, Node, Output
from .inputs import loudness_inputs

GAIN = {"default": 0.0, "min": GAIN_DB[0], "max": GAIN_DB[1], "step": 0.5}
RANGE = f"{GAIN_DB[0]:g} to {GAIN_DB[1]:g}"


def mux(video: Any, audio: Any, mode: str = "replace", audio_gain_db: float = 0.0, video_gain_db: float = 0.0,
        loudness: str = loudness_target.AS_GENERATED, loudness_lufs: float = loudness_target.DEFAULT_LUFS,
        true_peak_dbtp: float = loudness_target.DEFAULT_CEILING) -> tuple:
    from ..sonify import media
    from ..sonify.media import soundtrack

    goal = loudness_target.target(loudness, loudness_lufs, true_peak_dbtp)
    samples, rate = comfy.from_audio(audio)
    out = comfy.temp_dir() / f"sonify-mux-{uuid.uuid4().hex[:12]}.mp4"
    with tempfile.TemporaryDirectory(prefix="sonify-in-") as tmp:
        # A VIDEO made of frames has no picture stream to copy yet: it is encoded once, losslessly timed.
        path = media.source_to_file(media.VideoSource(**comfy.video_source(video, Path(tmp))), tmp)
        soundtrack.put_on_video(path, samples, rate, out, mode=mode, audio_gain_db=audio_gain_db,
                                video_gain_db=video_gain_db, video_sound=comfy.frames_sound(video), loudness=goal)
    return (comfy.make_video(out),)


MUX_AUDIO = Node(
    node_id="SonifyMuxAudio",
    display_name="Mux Audio onto Video · Sonify",
    category="Sonify/utility",
    description=("Puts a sound on a video without re-encoding the picture: replace its soundtrack, or mix the new "
                 "sound into it. Runs locally; costs nothing."),
    inputs=(
        Input("video", "VIDEO", "The picture (and, for mix, the sound) to keep."),
        Input("audio", "AUDIO", "The sound to put on it; trimmed or padded to the video's length."),
        Input("mode", "COMBO", "replace: only the new sound. mix: the new sound over the video's own. Default: "
                               "replace.", default="replace", choices=("replace", "mix")),
        Input("audio_gain_db", "FLOAT", f"Gain of the new sound in dB ({RANGE}). Default: 0.", **GAIN),
        Input("video_gain_db", "FLOAT", f"Gain of the video's own sound in dB when mixing ({RANGE}). Default: 0.",
              **GAIN),
        *loudness_inputs("the new soundtrack (the mix, in mode mix; after the gains)"),
    ),
    outputs=(Output("video", "VIDEO", "The video with the new soundtrack, exactly as long as the picture."),),
    body=mux,
    search_aliases=("mux", "replace audio", "mix audio", "add audio to video"),
)
