"""Local utility node: one take out of an AUDIO batch (a video-to-audio node's `variations`)."""

from __future__ import annotations

from typing import Any

from ..sonify.catalog import VARIATIONS
from ..sonify.errors import ValidationError
from .declaration import Input, Node, Output


def pick(audio: Any, index: int = 1, best: bool = False) -> tuple:
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValidationError("audio", "is not an AUDIO value (a waveform and a sample rate)")
    waveform = audio["waveform"]
    count = waveform.shape[0] if waveform.dim() == 3 else 0
    if count == 0:
        raise ValidationError("audio", f"is not a batch of takes [N, C, T] (got shape {tuple(waveform.shape)})")
    if best:
        from ..sonify.media import sound_check

        index = 1 + sound_check.best([take.float().numpy() for take in waveform], int(audio["sample_rate"]))
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= count:
        raise ValidationError("index", f"must be from 1 to {count} (the takes in `audio`), got {index!r}")
    return ({"waveform": waveform[index - 1:index].clone(), "sample_rate": audio["sample_rate"]},)


PICK_AUDIO = Node(
    node_id="SonifyPickAudio",
    display_name="Pick Take · Sonify",
    category="Sonify/utility",
    description=("Picks one take out of a batch of sounds (a Sonify node run with variations > 1), so the chosen "
                 "one goes on to Mux Audio: by its number, or the best (the first that is not silent, clipped or "
                 "cut short). Runs locally; costs nothing."),
    inputs=(
        Input("audio", "AUDIO", "A batch of takes: a video-to-audio node's `audio`."),
        Input("index", "INT", "Which take, counted from 1 in the batch's order: a Sonify node puts a silent, "
                              "clipped or cut-short take last, so a take's place is its `position` in `job` (its "
                              f"take number when none is flagged). Range: 1 to {VARIATIONS[1]}. Default: 1.",
              default=1, min=1, max=VARIATIONS[1], step=1),
        Input("best", "BOOLEAN", "Pick the best take instead of `index`: the first in the batch that is not silent "
                                 "(most of it below -60 dBFS), clipped or cut short (ending in silence padding). A "
                                 "Sonify node puts such takes last already, so this is its first take unless every "
                                 "take is flagged. Default: false.",
              optional=True, default=False),
    ),
    outputs=(Output("audio", "AUDIO", "The chosen take alone (a batch of one)."),),
    body=pick,
    search_aliases=("pick take", "select audio", "choose variation"),
)
