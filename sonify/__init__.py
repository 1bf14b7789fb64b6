"""Sonify's engine: hosted video-to-audio and lipsync models, usable without ComfyUI."""

from .redact import install_log_filter

__version__ = "0.1.0"

install_log_filter()
