"""Keeps API keys out of every text Sonify produces: log records, errors, job info."""

from __future__ import annotations

import logging
import threading

_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "***"


def register_secret(secret: str) -> None:
    """Remember a secret (and its parts, for `id:secret` keys) so that redact() removes it."""
    parts = {secret, *secret.split(":")}
    with _lock:
        _secrets.update(p for p in parts if len(p) >= 6)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Applied to the "sonify" logger's handlers' records: a key never reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    logger = logger or logging.getLogger("sonify")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
