"""The key file's edits (what ComfyUI's settings dialog does through the pack's routes) and what may be said
of a key: where it comes from and its last four characters, never the key.

The file is `keys.json` in the state folder, mode 600, replaced atomically (a reader never sees half a file,
and no moment exists when it is readable by others); each change is made under a lock, so concurrent saves of
different providers' keys all land. An environment variable still wins over it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from . import settings
from .atomic import PRIVATE, atomically
from .catalog import PROVIDERS
from .errors import ConfigurationError, ValidationError
from .redact import register_secret

MAX_KEY_LENGTH = 512  # far above either provider's keys: longer is a pasted mistake
LOCK_FILE = ".keys.lock"  # beside the key file: held while the key file is read, changed and replaced

_thread_lock = threading.Lock()


def status(provider: str) -> dict[str, Any]:
    """{"set": bool, "source": "environment" | "key file" | None, "hint": "…abcd" | None}."""
    found = settings.find_key(_provider(provider))
    if found is None:
        return {"set": False, "source": None, "hint": None}
    key, where = found
    register_secret(key)
    return {"set": True, "source": "environment" if where.startswith("environment") else "key file",
            "hint": "…" + key[-4:] if len(key) >= 12 else "…"}


def save(provider: str, key: Any) -> None:
    """Put `key` for `provider` in the key file (other providers' keys kept). ValidationError names the input,
    never repeats the key."""
    provider = _provider(provider)
    if not isinstance(key, str):
        raise ValidationError("key", "must be text")
    key = key.strip()
    if not key:
        raise ValidationError("key", "is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationError("key", f"must be at most {MAX_KEY_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in key):
        raise ValidationError("key", "must be one word of printable ASCII (no spaces or line breaks)")
    if provider == "fal" and not settings.is_fal_key(key):
        raise ValidationError("key", "must be of the form key_id:key_secret for fal (copy the whole key)")
    # Only a key that will be kept is masked from now on: a refused one (a sentence pasted by mistake, a huge
    # blob) is never used, and masking it would hide those words in every message and grow the mask set.
    register_secret(key)
    with _locked():
        keys = _read()
        keys[provider] = key
        _write(keys)


def remove(provider: str) -> None:
    """Take `provider`'s key out of the key file (the file goes when it holds no key)."""
    provider = _provider(provider)
    with _locked():
        keys = _read()
        if keys.pop(provider, None) is None:
            return
        if keys:
            _write(keys)
        else:
            os.unlink(settings.state_dir() / settings.KEY_FILE)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Held around each read-modify-write of the key file, so that two saves at once (two providers' keys from
    two requests, threads or processes) both land: this process's threads through a lock, other processes
    through an exclusive lock on LOCK_FILE in the state folder (where fcntl exists; elsewhere threads only)."""
    with _thread_lock:
        if fcntl is None:
            yield
            return
        path = settings.state_dir() / LOCK_FILE
        settings.refuse_links(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # and with it the lock


def _provider(provider: Any) -> str:
    if provider not in PROVIDERS:
        raise ValidationError("provider", f"must be one of {', '.join(PROVIDERS)}")
    return provider


def _read() -> dict[str, Any]:
    path = settings.state_dir() / settings.KEY_FILE
    settings.refuse_links(path)
    if not path.is_file():
        return {}
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"The key file {path} is not valid JSON ({type(exc).__name__}): "
                                 "fix or delete it first") from None
    if not isinstance(keys, dict):
        raise ConfigurationError(f"The key file {path} is not a JSON object: fix or delete it first")
    return keys


def _write(keys: dict[str, Any]) -> None:
    """Written to a new mode-600 file beside the key file, on the disk before it is renamed over it."""
    with atomically(settings.state_dir() / settings.KEY_FILE, mode=PRIVATE, sync=True) as out:
        out.write(json.dumps(keys, indent=2).encode("utf-8"))
