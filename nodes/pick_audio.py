"""Local utility node: one take out of an AUDIO batch (a video-to-audio node's `variations`)."""

from __future__ import annotations

from typing import Any

from ..sonify.catalog import VARIATIONS
from ..sonify.errors import ValidationError
from .declaration import Input, Node, Output


def pick(audio: Any, index: int = 1) -> tuple:
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValidationError("audio", "is not an AUDIO value (a waveform and a sample rate)")
    waveform = audio["waveform"]
    count = waveform.shape[0] if waveform.dim() == 3 else 0
    if count == 0:
        raise ValidationError("audio", f"is not a batch of takes [N, C, T] (got shape {tuple(waveform.shape)})")
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= count:
        raise ValidationError("index", f"must be from 1 to {count} (the takes in `audio`), got {index!r}")
    return ({"waveform": waveform[index - 1:index].clone(), "sample_rate": audio["sample_rate"]},)


PICK_AUDIO = Node(
    node_id="SonifyPickAudio",
    display_name="Pick Take · Sonify",
    category="Sonify/utility",
    description=("Picks one take out of a batch of sounds (a Sonify node run with variations > 1), so the chosen "
                 "one goes on to Mux Audio. Runs locally; costs nothing."),
    inputs=(
        Input("audio", "AUDIO", "A batch of takes: a video-to-audio node's `audio`."),
        Input("index", "INT", "Which take, counted from 1 (take 1 is the first, as the node's progress and `job` "
                              f"number them). Range: 1 to {VARIATIONS[1]}. Default: 1.",
              default=1, min=1, max=VARIATIONS[1], step=1),
    ),
    outputs=(Output("audio", "AUDIO", "The chosen take alone (a batch of one)."),),
    body=pick,
    search_aliases=("pick take", "select audio", "choose variation"),
)
