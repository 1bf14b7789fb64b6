"""Keeps API keys out of every text Sonify produces: log records, errors, job info, journal rows.

A registered secret (a key, each part of an `id:secret` key, a CDN token) is masked where it appears
whole, and so is any run of RUN or more of its characters: a key that a provider, a proxy or a message
limit cut short is still no hint. The value of an echoed Authorization header (`Authorization: …`,
`Bearer …`, `Key …`) is masked too, whoever's key it is. Text that is shortened (a provider's error
body) is redacted first and cut after.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

MASK = "***"
RUN = 8  # a run of this many characters of a secret is masked wherever it stands
SHORTEST = 6  # a secret (or part) shorter than this is not masked: too common to tell apart from text
# The value after an Authorization header name (as a header line, in JSON or a repr), up to the line's
# or the quoted string's end.
AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\r\n\"',;}\]]+")
# A credential after an auth scheme word, as echoed headers show it: any token after "Bearer"; after the
# everyday words "Key" and "Basic" (a prompt may say "Key change") only one that looks like a credential.
CREDENTIAL = r"[A-Za-z0-9._~+/=:-]"
AUTH_VALUE = re.compile(rf"\b([Bb]earer\s+){CREDENTIAL}+|\b((?:Key|Basic)\s+)(?={CREDENTIAL}*\d){CREDENTIAL}{{12,}}")


class Redactor:
    """The secrets one process masks (the module-level functions use one shared Redactor)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._whole: tuple[str, ...] = ()  # longest first
        self._runs: frozenset[str] = frozenset()  # every RUN-long piece of every secret

    def register(self, secret: str) -> None:
        """Remember a secret (and its parts, for `id:secret` keys)."""
        parts = [p for p in {secret, *secret.split(":")} if len(p) >= SHORTEST]
        runs = {p[i:i + RUN] for p in parts for i in range(len(p) - RUN + 1)}
        with self._lock:
            self._whole = tuple(sorted(set(self._whole) | set(parts), key=len, reverse=True))
            self._runs = self._runs | runs

    def redact(self, text: str) -> str:
        with self._lock:
            whole, runs = self._whole, self._runs
        text = AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)
        text = AUTH_VALUE.sub(lambda m: (m.group(1) or m.group(2)) + MASK, text)
        text = _mask_runs(text, runs)
        for secret in whole:  # those shorter than RUN; longer ones are gone with their runs
            if secret in text:
                text = text.replace(secret, MASK)
        return text


def _mask_runs(text: str, runs: frozenset[str]) -> str:
    """`text` with each stretch covered by RUN-long pieces of a secret replaced by one MASK."""
    if not runs or len(text) < RUN:
        return text
    spans: list[list[int]] = []
    for i in range(len(text) - RUN + 1):
        if text[i:i + RUN] in runs:
            if spans and i <= spans[-1][1]:
                spans[-1][1] = i + RUN
            else:
                spans.append([i, i + RUN])
    if not spans:
        return text
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], MASK]
        last = end
    return "".join(pieces) + text[last:]


_shared = Redactor()


def register_secret(secret: str) -> None:
    """Remember a secret (and its parts, for `id:secret` keys) so that redact() removes it."""
    _shared.register(secret)


def redact(text: str) -> str:
    return _shared.redact(text)


def redact_all(value: Any) -> Any:
    """`value` with every string in it redacted (lists, tuples and dict values, recursively)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_all(v) for v in value)
    return value


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


# Installed with the engine's first import (every engine module imports errors, which imports this), not by
# `import sonify`, which stays free of side effects.
install_log_filter()
