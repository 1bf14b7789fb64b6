"""Provider clients, one cached instance (one HTTP session) per provider, key and URL, and each one's pacer."""

from __future__ import annotations

import threading
import weakref

from .. import config, webhooks
from .base import Provider
from .fal import Fal
from .pacing import Pacer
from .wavespeed import WaveSpeed

_clients: dict[tuple, Provider] = {}
_pacers: weakref.WeakKeyDictionary[Provider, Pacer] = weakref.WeakKeyDictionary()
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
        ident = (provider, key, config.base_url("fal_queue"), config.base_url("fal_rest"), config.base_url("fal_api"))
        factory = lambda: Fal(key, ident[2], ident[3], ident[4])
    else:
        raise ValueError(f"unknown provider {provider!r}")
    with _lock:
        if ident not in _clients:
            _clients[ident] = factory()
        return _clients[ident]


def pacer(client: Provider) -> Pacer:
    """The one pacer of `client`'s account (its provider and key), with the limits set now (config.limits: a bad
    setting fails here, before any request)."""
    limits = config.limits(client.name)
    with _lock:
        found = _pacers.get(client)
        if found is None:
            found = _pacers[client] = Pacer(client.name, limits)
    found.set_limits(limits)
    return found


def endpoint(provider: str) -> str:
    """The API base URL a client for `provider` sends jobs to (its `http.base_url`), known without a key."""
    if provider == "wavespeed":
        return config.base_url("wavespeed")
    if provider == "fal":
        return config.base_url("fal_queue")
    raise ValueError(f"unknown provider {provider!r}")
