"""Sonify's engine: hosted video-to-audio and lipsync models, usable without ComfyUI."""

from .redact import install_log_filter

install_log_filter()


def __getattr__(name: str) -> str:
    """`sonify.__version__`, read on first use: importing the package reads no file (Temporal's workflow sandbox,
    which imports it for temporal_flow, forbids that)."""
    if name == "__version__":
        from .version import VERSION

        return VERSION
    raise AttributeError(f"module 'sonify' has no attribute {name!r}")
