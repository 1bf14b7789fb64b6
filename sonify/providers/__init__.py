"""Provider clients, one cached instance (one HTTP session) per provider, key and URLs, and each one's pacer."""

from __future__ import annotations

import threading
import weakref

from .. import settings
from . import webhooks
from .base import Provider
from .fal import Fal
from .pacing import Pacer
from .wavespeed import WaveSpeed

_clients: dict[tuple, Provider] = {}
_pacers: weakref.WeakKeyDictionary[Provider, Pacer] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def client(provider: str) -> Provider:
    """The client for `provider`, built from one snapshot of its key and API base URLs (settings.client_settings).
    A bad SONIFY_PUBLIC_URL fails here too, before any request (its submits would otherwise fail after the
    uploads)."""
    snapshot = settings.client_settings(provider)
    webhooks.public_url()
    if provider == "fal":
        settings.fal_jwks_urls()  # read at submit only when webhooks are on: checked here all the same
    ident = (provider, snapshot.key, snapshot.urls)
    with _lock:
        if ident not in _clients:
            _clients[ident] = make(provider, snapshot.key, snapshot.urls)
        return _clients[ident]


def pacer(client: Provider) -> Pacer:
    """The one pacer of `client`'s account (its provider and key), with the limits set now (settings.limits: a bad
    setting fails here, before any request)."""
    limits = settings.limits(client.name, client.http.base_url)
    with _lock:
        found = _pacers.get(client)
        if found is None:
            found = _pacers[client] = Pacer(client.name, limits)
    found.set_limits(limits)
    return found


def make(provider: str, key: str, urls: tuple[str, ...]) -> Provider:
    """A new client for `provider` with `key`, at its API base URLs `urls` (settings.API_BASES order)."""
    if provider == "wavespeed":
        return WaveSpeed(key, *urls)
    if provider == "fal":
        return Fal(key, *urls)
    raise ValueError(f"unknown provider {provider!r}")


def endpoint(provider: str) -> str:
    """The API base URL a client for `provider` sends jobs to (its `http.base_url`), known without a key."""
    if provider not in settings.API_BASES:
        raise ValueError(f"unknown provider {provider!r}")
    return settings.base_url(settings.API_BASES[provider][0])
