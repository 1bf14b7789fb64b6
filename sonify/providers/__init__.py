"""Provider clients, one cached instance (one HTTP session) per provider, key and URL."""

from __future__ import annotations

import threading

from .. import config, webhooks
from .base import Provider
from .fal import Fal
from .wavespeed import WaveSpeed

_clients: dict[tuple, Provider] = {}
_lock = threading.Lock()


def client(provider: str) -> Provider:
    """The client for `provider`, built from the current key and base URL. A bad SONIFY_PUBLIC_URL fails here
    too, before any request (its submits would otherwise fail after the uploads)."""
    key = config.api_key(provider)
    webhooks.public_url()
    if provider == "wavespeed":
        ident = (provider, key, config.base_url("wavespeed"))
        factory = lambda: WaveSpeed(key, ident[2])
    elif provider == "fal":
        config.base_url("fal_jwks")  # read at submit only when webhooks are on: checked here all the same
        ident = (provider, key, *(config.base_url(f"fal_{name}") for name in ("queue", "rest", "api", "cdn")))
        factory = lambda: Fal(key, *ident[2:])
    else:
        raise ValueError(f"unknown provider {provider!r}")
    with _lock:
        if ident not in _clients:
            _clients[ident] = factory()
        return _clients[ident]


def endpoint(provider: str) -> str:
    """The API base URL a client for `provider` sends jobs to (its `http.base_url`), known without a key."""
    if provider == "wavespeed":
        return config.base_url("wavespeed")
    if provider == "fal":
        return config.base_url("fal_queue")
    raise ValueError(f"unknown provider {provider!r}")
