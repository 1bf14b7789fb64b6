"""The graph ComfyUI is running, as a node sees it: its `server` module's prompt queue, with a stand-in for the one
running item (an API prompt), so that a node can tell what its outputs feed."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest


class _Queue:
    def __init__(self, prompt: dict[str, Any]) -> None:
        self.prompt = prompt

    def get_current_queue_volatile(self) -> tuple[list, list]:
        return [(0, "prompt-1", self.prompt, {}, [])], []  # (number, id, prompt, extra data, outputs): running, queued


def running_graph(monkeypatch: pytest.MonkeyPatch, prompt: dict[str, Any]) -> None:
    """ComfyUI's `server` module as a node sees it while `prompt` (an API prompt) runs: its queue's running item."""
    server = types.ModuleType("server")
    server.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(prompt_queue=_Queue(prompt)))
    monkeypatch.setitem(sys.modules, "server", server)


def saved_graph(node_id: str, consumer: str = "SaveVideo") -> dict[str, Any]:
    """An API prompt: the Sonify node `node_id`, its VIDEO (output 1) into `consumer`, its AUDIO into a preview."""
    return {node_id: {"class_type": "SonifyThinkSoundWaveSpeed", "inputs": {"prompt": "", "seed": 1}},
            "9": {"class_type": consumer, "inputs": {"video": [node_id, 1], "filename_prefix": "video/ComfyUI"}},
            "10": {"class_type": "PreviewAudio", "inputs": {"audio": [node_id, 0]}}}
