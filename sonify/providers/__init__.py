"""Provider clients, one cached instance (one HTTP session) per provider, key and URLs, and each one's pacer."""

from __future__ import annotations

import threading
import weakref

from ..settings import API_BASES, Settings, client_settings
from .base import Provider
from .fal import Fal
from .pacing import Pacer
from .wavespeed import WaveSpeed

_clients: dict[tuple, Provider] = {}
_pacers: weakref.WeakKeyDictionary[Provider, Pacer] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def client(provider: str, settings: Settings) -> Provider:
    """The client for `provider` under `settings` (a run's snapshot), built from its key and API base URLs
    (client_settings): one cached instance per provider, key and URLs."""
    snapshot = client_settings(provider, settings)
    ident = (provider, snapshot.key, snapshot.urls)
    with _lock:
        if ident not in _clients:
            _clients[ident] = make(provider, snapshot.key, snapshot.urls)
        return _clients[ident]


def pacer(client: Provider, settings: Settings) -> Pacer:
    """The one pacer of `client`'s account (its provider and key), with the limits `settings` sets
    (Settings.limits)."""
    limits = settings.limits(client.name, client.http.base_url)
    with _lock:
        found = _pacers.get(client)
        if found is None:
            found = _pacers[client] = Pacer(client.name, limits)
    found.set_limits(limits)
    return found


def make(provider: str, key: str, urls: tuple[str, ...]) -> Provider:
    """A new client for `provider` with `key`, at its API base URLs `urls` (API_BASES order)."""
    if provider == "wavespeed":
        return WaveSpeed(key, *urls)
    if provider == "fal":
        return Fal(key, *urls)
    raise ValueError(f"unknown provider {provider!r}")


def endpoint(provider: str, settings: Settings) -> str:
    """The API base URL a client for `provider` sends jobs to under `settings` (its `http.base_url`), known
    without a key."""
    if provider not in API_BASES:
        raise ValueError(f"unknown provider {provider!r}")
    return settings.base_url(API_BASES[provider][0])
