"""Sonify's engine: hosted video-to-audio and lipsync models, usable without ComfyUI.

The public face. Everything here is loaded on first use (PEP 562), so `import sonify` costs nothing: ComfyUI's
start-up and Temporal's workflow sandbox import the package without paying for numpy, PyAV or HTTP.

    import sonify
    result = sonify.run(sonify.MODELS["mmaudio-v2"], {"prompt": "rain"}, sonify.VideoSource(path="clip.mp4"),
                        out_dir=Path("out"))

Layers, lowest first (docs/architecture.md): errors, catalog, settings ... ; media/, net/, journal/; providers/;
pipeline/ (one run, top to bottom); cli/, temporal/.
"""

from __future__ import annotations

import importlib
from typing import Any

_FACE = {
    "run": "pipeline", "fetch": "pipeline", "prepare": "pipeline", "Result": "pipeline", "AudioInput": "pipeline",
    "VideoSource": "media", "MODELS": "catalog", "BY_MODEL_ID": "catalog", "PROVIDERS": "catalog",
    "ModelSpec": "catalog", "SonifyError": "errors", "ConfigurationError": "errors", "ValidationError": "errors",
    "ProviderError": "errors", "JobFailed": "errors", "JobTimedOut": "errors", "Cancelled": "errors",
}

__all__ = [
    "BY_MODEL_ID",
    "MODELS",
    "PROVIDERS",
    "AudioInput",
    "Cancelled",
    "ConfigurationError",
    "JobFailed",
    "JobTimedOut",
    "ModelSpec",
    "ProviderError",
    "Result",
    "SonifyError",
    "ValidationError",
    "VideoSource",
    "__version__",
    "fetch",
    "prepare",
    "prompt",
    "run",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from .version import VERSION

        return VERSION
    if name in _FACE:
        return getattr(importlib.import_module(f".{_FACE[name]}", __name__), name)
    raise AttributeError(f"module 'sonify' has no attribute {name!r}")
