"""Sonify's engine: hosted video-to-audio and lipsync models, usable without ComfyUI."""

from .redact import install_log_filter
from .version import VERSION as __version__  # noqa: F401 - the package's version, for whoever asks

install_log_filter()
