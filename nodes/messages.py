"""What a ComfyUI user reads of a failure or a cancel: the engine's words, with what to do said in ComfyUI's terms
(Settings › Sonify, the emulator switch, the Fetch Result node with the task id), never a shell command; and text
laid out for the box a node shows it in."""

from __future__ import annotations

import re
import textwrap

from ..sonify import settings
from ..sonify.catalog import PROVIDERS

PROVIDER_NAMES = {"wavespeed": "WaveSpeed", "fal": "fal"}
# The box under a node's widgets breaks a line where it runs out of room, inside a word too: lines of this many
# characters fit a node of ~300 px (the Sonify nodes open at 380 px and more).
LINE = 44

_FETCH_LATER = re.compile(r"fetch the result later with `python -m sonify fetch (?P<provider>\S+) (?P<task>[^`\s]+)` "
                          r"or the Sonify Fetch Result node")
_FETCH_COMMAND = re.compile(r"`python -m sonify fetch (?P<provider>\S+) (?P<task>[^`\s]+)(?: --model (?P<model>\S+))?`")
_SAYINGS = {
    "an error message or `python -m sonify jobs`": "the message a model node showed, or its `job` output",
    "switch emulator mode off to use your key": "switch off \"Use the local emulator\" in Settings › Sonify to use "
                                                "your key",
}


def missing_key(provider: str) -> str:
    """No key: where to add one in ComfyUI, or the switch that needs none (three lines on a node)."""
    return (f"No {PROVIDER_NAMES[provider]} API key (nothing was sent): add one in Settings › Sonify › API keys, or "
            "switch on \"Use the local emulator\" there.")


def fetch_node(provider: str, task_id: str, model: str | None = None) -> str:
    """Where a task's result is got in ComfyUI; its task id last, after " — ", so that a node shows it on a line
    of its own."""
    model_text = f" and model {model}" if model else ""
    return f"a Fetch Result node (Sonify › utility) with provider {provider}{model_text} gets its result, at no cost " \
           f"— task_id {task_id}"


def for_comfyui(text: str) -> str:
    """The engine's message `text` as a ComfyUI user should read it."""
    for provider in PROVIDERS:
        if text == settings.missing_key_message(provider):
            return missing_key(provider)
    text = _FETCH_LATER.sub(lambda m: "later, " + fetch_node(m["provider"], m["task"].strip("'")), text)
    text = _FETCH_COMMAND.sub(lambda m: fetch_node(m["provider"], m["task"].strip("'"), m["model"]), text)
    for said, meant in _SAYINGS.items():
        text = text.replace(said, meant)
    return text


def node_text(text: str) -> str:
    """`text` as lines that fit a node's box: its own lines, a new one at each " — " (one thought a line), each
    wrapped between words."""
    parts = [part.strip() for line in text.split("\n") for part in line.split(" — ")]
    return "\n".join(textwrap.fill(part, LINE, break_long_words=False, break_on_hyphens=False) for part in parts)
