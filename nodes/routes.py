"""The pack's HTTP routes on ComfyUI's server, as plain aiohttp handlers (nodes/comfy.py adds them to
ComfyUI's route table; tests serve them with aiohttp's test server).

  GET    /sonify/keys                  each provider's key: set?, where from, its last four characters
  POST   /sonify/keys                  {"provider", "key"}: into the key file (never sent back)
  DELETE /sonify/keys/{provider}       out of the key file
  POST   /sonify/keys/{provider}/test  the provider's key check (WaveSpeed: the balance)
  GET    /sonify/prices                each model node's price rule (sonify/models.py), for the node's badge
  GET    /sonify/emulator              emulator mode: {"on", "from_environment"}
  POST   /sonify/emulator              {"on": bool}: start or stop it (SONIFY_EMULATOR=1 keeps it on)
  GET    /sonify/spend                 today and this month from the ledger, each spend setting and where it is from
  POST   /sonify/spend                 {"SONIFY_MAX_USD_PER_DAY": 5, …}: saved in the journal (null removes one)
  GET    /sonify/balance               each provider's balance, where it tells it (WaveSpeed), else why not

A key goes one way, from the settings dialog into the key file: no answer, log record or error holds it.
Requests another web page's script makes (an Origin or Sec-Fetch-Site that is not this server) are refused,
whatever ComfyUI's own middleware is set to: a page on the web must not put its key into, or test keys on,
a user's ComfyUI. So are requests whose Host is not this server's own name (DNS rebinding: a page whose name
the attacker points at 127.0.0.1 is "same origin" with itself, Host and Origin alike): own_host() says which.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..sonify import key_store, settings
from ..sonify.catalog import PROVIDERS, ModelSpec
from ..sonify.errors import ConfigurationError, ProviderError, SonifyError
from ..sonify.redact import redact
from ..sonify.waiter import Waiter
from . import comfy, emulator_mode

log = logging.getLogger("sonify")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHECK_TIMEOUT = (5.0, 15.0)  # connect, read: the key check's one request
MAX_BODY = 4096  # bytes: a key and a provider name
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?")  # a Host header: name[:port]


def same_origin(request: web.Request) -> bool:
    """False for a request a script on another site made: an Origin other than this server's Host, or a
    browser's Sec-Fetch-Site saying cross-site or same-site. A request without either (curl, a script on this
    machine) is not a page's and passes."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    host = request.headers.get("Host", "")
    return bool(parts.scheme in ("http", "https") and parts.netloc) and parts.netloc.lower() == host.lower()


def own_host(host: str | None, listening: Iterable[str], allowed: Iterable[str]) -> bool:
    """Is `host` (a Host header: a name or address, and a port) this server: a loopback name or address
    (localhost, 127.0.0.0/8, [::1]), an address ComfyUI listens on (`listening`; when that is every address,
    0.0.0.0 or ::, any IP address: a page can rebind a name, never an address), or a name the user allows
    (`allowed`, SONIFY_ALLOWED_HOSTS). A missing or malformed Host is not."""
    match = _HOST.fullmatch(host or "")
    if match is None:
        return False
    name = match["name"].strip("[]").rstrip(".").lower()
    if settings.is_loopback(name) or name in allowed:
        return True
    addresses = {a.strip().strip("[]").lower() for a in listening}
    if name in addresses:
        return True
    return _address(name) is not None and any(getattr(_address(a), "is_unspecified", False) for a in addresses)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _allowed_hosts() -> frozenset[str]:
    """SONIFY_ALLOWED_HOSTS; none while a setting is bad (a request is then judged by this machine's own names, and
    the handler it reaches says what is wrong)."""
    try:
        return settings.current().allowed_hosts
    except ConfigurationError:
        return frozenset()


def guarded(handler: Handler) -> Handler:
    """The handler behind the host and origin checks, and with the engine's errors as JSON (redacted)."""

    async def guard(request: web.Request) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not own_host(host, comfy.listen_addresses(), _allowed_hosts()):
            log.warning("refused a %s request to %s for the host %r, not this server's (%s allows a name)",
                        request.method, request.path, (host or "")[:100], settings.ALLOWED_HOSTS_ENV)
            return web.json_response({"error": "refused: the request names a host that is not this server "
                                               f"(a name you use for it can be added to {settings.ALLOWED_HOSTS_ENV})"},
                                     status=403)
        if not same_origin(request):
            log.warning("refused a %s request to %s from another origin", request.method, request.path)
            return web.json_response({"error": "refused: the request comes from another site"}, status=403)
        try:
            return await handler(request)
        except SonifyError as exc:
            return web.json_response({"error": redact(str(exc))}, status=400)
        except OSError as exc:  # the key file: a link Sonify will not write through, a full or read-only disk
            return web.json_response({"error": redact(f"the key file: {exc.strerror or exc}")}, status=400)

    guard.__name__ = handler.__name__
    return guard


async def get_keys(request: web.Request) -> web.Response:
    return web.json_response({provider: key_store.status(provider) for provider in PROVIDERS})


async def post_key(request: web.Request) -> web.Response:
    body = await _json_body(request)
    provider, key = body.get("provider"), body.get("key")
    await asyncio.to_thread(key_store.save, provider, key)
    log.info("saved a %s key in the key file", provider)
    return web.json_response({provider: key_store.status(provider)})


async def delete_key(request: web.Request) -> web.Response:
    provider = request.match_info["provider"]
    await asyncio.to_thread(key_store.remove, provider)
    log.info("removed the %s key from the key file", provider)
    return web.json_response({provider: key_store.status(provider)})


async def test_key(request: web.Request) -> web.Response:
    """The key in use (the environment's, else the file's) checked at the provider: {"ok", "message",
    "balance_usd", "emulator"}. A refusal is an answer (ok false), not an HTTP error."""
    provider = request.match_info["provider"]
    return web.json_response(await asyncio.to_thread(_check, provider))


EMULATOR_NOTE = "emulator mode is on: the nodes run on the local emulator and use no key (Settings › Sonify › Try it " \
                "without a key)"


def _check(provider: str) -> dict[str, Any]:
    """The real key at the real provider (or the URL set in the environment), emulator mode or not. In emulator
    mode no key is needed, and the answer says so: with none set, that is the whole answer."""
    from ..sonify import providers

    key_store.status(provider)  # the provider named checked first (a ValidationError)
    emulated = settings.emulator is not None
    try:
        now = settings.current()
        found = settings.find_key(provider)
        if found is None and emulated:
            return {"ok": True, "message": EMULATOR_NOTE, "balance_usd": None, "emulator": True}
        if found is None:
            raise ConfigurationError(settings.missing_key_message(provider))
        client = providers.make(provider, found[0], now.real_bases(provider))
        checked = client.check_key(Waiter(), CHECK_TIMEOUT)
    except ProviderError as exc:
        refused = exc.status in (401, 403)
        message = f"the provider refused the key (HTTP {exc.status})" if refused else f"could not check: {exc}"
        return {"ok": False, "message": redact(message), "balance_usd": None, "emulator": False}
    except (SonifyError, OSError) as exc:  # OSError: the key file cannot be read safely
        return {"ok": False, "message": redact(str(exc)), "balance_usd": None, "emulator": False}
    where = "the Sonify emulator (not the real provider)" if checked.emulator else checked.url
    note = f"; {EMULATOR_NOTE.replace('use no key', 'do not use it now')}" if emulated else ""
    return {"ok": True, "message": f"{where} accepts the key{note}", "balance_usd": checked.balance_usd,
            "emulator": checked.emulator}


async def get_emulator(request: web.Request) -> web.Response:
    return web.json_response(_emulator_state())


async def post_emulator(request: web.Request) -> web.Response:
    on = (await _json_body(request)).get("on")
    if not isinstance(on, bool):
        raise web.HTTPBadRequest(text="on must be true or false")
    if on:
        await asyncio.to_thread(emulator_mode.start)
    elif not emulator_mode.from_environment():
        await asyncio.to_thread(emulator_mode.stop)
    return web.json_response(_emulator_state())


def _emulator_state() -> dict[str, bool]:
    return {"on": emulator_mode.is_on(), "from_environment": emulator_mode.from_environment()}


async def get_spend(request: web.Request) -> web.Response:
    from ..sonify.pipeline import spend

    return web.json_response(await asyncio.to_thread(lambda: spend.summary().as_json()))


async def post_spend(request: web.Request) -> web.Response:
    """Settings from the dialog, each checked as its environment variable is (a message naming it, else saved)."""
    from ..sonify.pipeline import spend

    body = await _json_body(request)
    await asyncio.to_thread(spend.save, body)
    return web.json_response(await asyncio.to_thread(lambda: spend.summary().as_json()))


async def get_balance(request: web.Request) -> web.Response:
    return web.json_response({provider: await asyncio.to_thread(_balance, provider) for provider in PROVIDERS})


def _balance(provider: str) -> dict[str, Any]:
    """{"balance_usd", "message"}: the real key's account at the real provider (as the key test), where the provider
    tells a balance for free; else why there is none."""
    from ..sonify import providers

    try:
        found = settings.find_key(provider)
        if found is None:
            return {"balance_usd": None, "message": "no key"}
        client = providers.make(provider, found[0], settings.current().real_bases(provider))
        balance = client.balance(Waiter(), CHECK_TIMEOUT)
    except (SonifyError, OSError) as exc:
        return {"balance_usd": None, "message": redact(f"could not read it: {exc}")}
    if balance is None:
        return {"balance_usd": None, "message": f"{provider} shows its balance only to a key with billing access"}
    return {"balance_usd": balance, "message": f"balance ${balance:.2f}"}


def prices_handler(model_nodes: Mapping[str, ModelSpec]) -> Handler:
    """GET /sonify/prices: {node id: {"model", "rule": the price rule (models.Price.as_json)}}; a node with a
    `provider` input also gets "providers": {provider: its rule}, parameters under the node's names, for the badge
    to follow the provider chosen."""
    catalog = {node_id: price_entry(spec) for node_id, spec in model_nodes.items()}

    async def get_prices(request: web.Request) -> web.Response:
        return web.json_response(catalog)

    return get_prices


def price_entry(spec: ModelSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": spec.key, "rule": spec.price.as_json(spec)}
    if spec.offers:
        entry["providers"] = {spec.provider: entry["rule"]}
        for offer in spec.offers:
            rule = offer.spec.price.as_json(offer.spec)
            if "param" in rule:  # the node's name for it
                rule["param"] = offer.shown(rule["param"])
            entry["providers"][offer.spec.provider] = rule
    return entry


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (at most MAX_BODY bytes). A bad body's text is never repeated: it may be a key."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send application/json")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def routes(model_nodes: Mapping[str, ModelSpec]) -> list[web.RouteDef]:
    """Every route of the pack, each behind the origin check."""
    return [
        web.get("/sonify/keys", guarded(get_keys)),
        web.post("/sonify/keys", guarded(post_key)),
        web.delete("/sonify/keys/{provider}", guarded(delete_key)),
        web.post("/sonify/keys/{provider}/test", guarded(test_key)),
        web.get("/sonify/prices", guarded(prices_handler(model_nodes))),
        web.get("/sonify/emulator", guarded(get_emulator)),
        web.post("/sonify/emulator", guarded(post_emulator)),
        web.get("/sonify/spend", guarded(get_spend)),
        web.post("/sonify/spend", guarded(post_spend)),
        web.get("/sonify/balance", guarded(get_balance)),
    ]

