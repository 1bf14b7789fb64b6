"""The pack's routes (nodes/routes.py) served by aiohttp's test server — the library ComfyUI's own server is —
over real HTTP on 127.0.0.1: keys set, read back (a hint only), removed, the environment winning, the key
file's mode, requests from another origin refused, the key in no answer and no log record, the key check
against the emulator, the price catalog."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
import types
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import EMULATOR_KEY
from pack import load_pack, module

WAVESPEED_KEY = "ws-route-SECRET-7c1e5b2d80463f9a"
FAL_KEY = "fal-route-id-SECRET-0a1b:fal-route-secret-SECRET-9f8e"


def serve(test: Callable[[TestClient], Awaitable[None]]) -> None:
    """Run `test` with a client of the pack's routes on a real server (a free port on 127.0.0.1)."""
    routes = module("nodes.routes").routes(load_pack().nodes.MODEL_NODES)

    async def main() -> None:
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            await test(client)

    asyncio.run(main())


async def answer(response, status: int = 200) -> dict:
    text = await response.text()
    assert response.status == status, text
    return json.loads(text)


def test_a_key_is_saved_read_back_as_a_hint_and_removed(state, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sonify")  # an in-process batch leaves it at WARNING
    seen: list[str] = []

    async def test(client: TestClient) -> None:
        before = await answer(await client.get("/sonify/keys"))
        assert before == {p: {"set": False, "source": None, "hint": None} for p in ("wavespeed", "fal")}
        for provider, key in (("wavespeed", WAVESPEED_KEY), ("fal", FAL_KEY)):
            response = await client.post("/sonify/keys", json={"provider": provider, "key": f"  {key}\n"})
            seen.append(await response.text())
            assert json.loads(seen[-1]) == {provider: {"set": True, "source": "key file", "hint": "…" + key[-4:]}}
        listing = await client.get("/sonify/keys")
        seen.append(await listing.text())
        assert json.loads(seen[-1])["fal"]["hint"] == "…9f8e"

        key_file = state / "keys.json"
        assert json.loads(key_file.read_text()) == {"wavespeed": WAVESPEED_KEY, "fal": FAL_KEY}
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert sorted(p.name for p in state.iterdir()) == [".keys.lock", "keys.json"]  # no partial file left beside it

        removed = await client.delete("/sonify/keys/wavespeed")
        seen.append(await removed.text())
        assert json.loads(seen[-1]) == {"wavespeed": {"set": False, "source": None, "hint": None}}
        assert json.loads(key_file.read_text()) == {"fal": FAL_KEY}
        seen.append(await (await client.delete("/sonify/keys/fal")).text())
        assert not key_file.exists()  # no key left: no file

    serve(test)
    records = [r.getMessage() for r in caplog.records]
    assert any("saved a fal key" in m for m in records)
    for text in seen + records:
        for secret in (WAVESPEED_KEY, FAL_KEY, *FAL_KEY.split(":")):
            assert secret not in text


def test_the_environment_wins_and_the_answer_says_so(state, monkeypatch):
    env_key = "ws-env-SECRET-1234567890abcdef"
    monkeypatch.setenv("WAVESPEED_API_KEY", env_key)

    async def test(client: TestClient) -> None:
        saved = await answer(await client.post("/sonify/keys", json={"provider": "wavespeed", "key": WAVESPEED_KEY}))
        assert saved == {"wavespeed": {"set": True, "source": "environment", "hint": "…cdef"}}
        assert json.loads((state / "keys.json").read_text()) == {"wavespeed": WAVESPEED_KEY}
        monkeypatch.delenv("WAVESPEED_API_KEY")
        assert (await answer(await client.get("/sonify/keys")))["wavespeed"]["source"] == "key file"

    serve(test)


def test_bad_input_is_refused_without_repeating_it(state, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sonify")  # an in-process batch leaves it at WARNING
    bad_fal = "fal-half-SECRET-without-colon"
    texts: list[str] = []

    async def test(client: TestClient) -> None:
        for body, status, words in (
            ({"provider": "fal", "key": bad_fal}, 400, "key_id:key_secret"),
            ({"provider": "openai", "key": WAVESPEED_KEY}, 400, "provider"),
            ({"provider": "wavespeed", "key": "two words-SECRET"}, 400, "one word"),
            ({"provider": "wavespeed", "key": ""}, 400, "empty"),
        ):
            response = await client.post("/sonify/keys", json=body)
            texts.append(await response.text())
            assert response.status == status and words in texts[-1]
        response = await client.post("/sonify/keys", data=b'{"key": "ws-SECRET', headers={"Content-Type": "application/json"})
        texts.append(await response.text())
        assert response.status == 400
        response = await client.post("/sonify/keys", data="provider=wavespeed&key=x")  # a plain form post
        assert response.status == 415

    serve(test)
    assert not (state / "keys.json").exists()
    for text in texts + [r.getMessage() for r in caplog.records]:
        assert bad_fal not in text and "two words-SECRET" not in text and "ws-SECRET" not in text


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "http://127.0.0.1:1"},  # this machine, another port: another origin
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_requests_from_another_origin_are_refused(state, headers, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sonify")  # an in-process batch leaves it at WARNING

    async def test(client: TestClient) -> None:
        for method, path, body in (("POST", "/sonify/keys", {"provider": "wavespeed", "key": WAVESPEED_KEY}),
                                   ("GET", "/sonify/keys", None), ("DELETE", "/sonify/keys/wavespeed", None),
                                   ("POST", "/sonify/keys/wavespeed/test", None)):
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status == 403, (method, path)
            assert "another site" in (await response.json())["error"]

    serve(test)
    assert not (state / "keys.json").exists()
    assert all(WAVESPEED_KEY not in r.getMessage() for r in caplog.records)


def test_the_same_origin_passes(state):
    async def test(client: TestClient) -> None:
        host = f"{client.host}:{client.port}"
        headers = {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
        saved = await client.post("/sonify/keys", json={"provider": "wavespeed", "key": WAVESPEED_KEY}, headers=headers)
        assert saved.status == 200

    serve(test)
    assert (state / "keys.json").is_file()


REBIND = "rebind.attacker.example"
KEY_ROUTES = (("GET", "/sonify/keys", None), ("POST", "/sonify/keys/wavespeed/test", None),
              ("POST", "/sonify/keys", {"provider": "wavespeed", "key": "ws-attacker-0123456789abcdef"}),
              ("DELETE", "/sonify/keys/wavespeed", None))


def listening_on(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """ComfyUI started with --listen `address`: its PromptServer keeps the first, its parsed arguments all."""
    host = types.ModuleType("server")
    host.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(address=address.split(",")[0], port=8188))
    monkeypatch.setitem(sys.modules, "server", host)
    monkeypatch.setitem(sys.modules, "comfy.cli_args", types.SimpleNamespace(args=types.SimpleNamespace(listen=address)))


@pytest.mark.parametrize("host,listen", [
    (REBIND, None),
    (f"{REBIND}:8188", "0.0.0.0,::"),  # listening on every address still takes no name
    (REBIND, "192.168.1.5"),
    ("127.0.0.1.attacker.example", None),
    ("localhost.attacker.example:1", "127.0.0.1"),
    ("192.168.1.5:8188", "127.0.0.1"),  # an address ComfyUI does not listen on
    ("evil@127.0.0.1", None),
])
def test_a_page_that_rebinds_its_name_to_this_machine_is_refused(state, monkeypatch, caplog, host, listen):
    """DNS rebinding: a page whose name now resolves to 127.0.0.1 sends Host and Origin both its own name, so
    they agree. Every key route refuses it (403), and the user's saved key stays as it was."""
    caplog.set_level(logging.WARNING, logger="sonify")
    if listen:
        listening_on(monkeypatch, listen)
    state.mkdir(parents=True)
    (state / "keys.json").write_text(json.dumps({"wavespeed": WAVESPEED_KEY}))
    before = (state / "keys.json").read_bytes()

    async def test(client: TestClient) -> None:
        for method, path, body in KEY_ROUTES:
            response = await client.request(method, path, json=body, headers={"Host": host, "Origin": f"http://{host}"})
            refused = await answer(response, status=403)
            assert "not this server" in refused["error"] and "SONIFY_ALLOWED_HOSTS" in refused["error"], (method, path)

    serve(test)
    assert (state / "keys.json").read_bytes() == before


@pytest.mark.parametrize("host,listen,allowed", [
    ("127.0.0.1:{port}", None, ""),
    ("localhost:{port}", None, ""),
    ("[::1]:{port}", None, ""),
    ("127.8.9.10:{port}", None, ""),
    ("192.168.1.5:8188", "192.168.1.5", ""),  # ComfyUI --listen 192.168.1.5
    ("10.1.2.3:8188", "0.0.0.0,::", ""),  # ComfyUI --listen (every address): reached by its LAN address
    ("comfy.lan:8188", None, "comfy.lan, studio.example"),  # a name the user allows
])
def test_this_servers_own_names_pass(state, monkeypatch, host, listen, allowed):
    if listen:
        listening_on(monkeypatch, listen)
    monkeypatch.setenv("SONIFY_ALLOWED_HOSTS", allowed)

    async def test(client: TestClient) -> None:
        name = host.format(port=client.port)
        headers = {"Host": name, "Origin": f"http://{name}", "Sec-Fetch-Site": "same-origin"}
        for method, path, body in KEY_ROUTES:
            await answer(await client.request(method, path, json=body, headers=headers))

    serve(test)


def test_the_key_check_tells_the_balance_and_a_refusal(state, emulator, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sonify")  # an in-process batch leaves it at WARNING
    monkeypatch.setenv("SONIFY_WAVESPEED_URL", emulator.url)
    texts: list[str] = []

    async def test(client: TestClient) -> None:
        await answer(await client.post("/sonify/keys", json={"provider": "wavespeed", "key": EMULATOR_KEY}))
        response = await client.post("/sonify/keys/wavespeed/test")
        texts.append(await response.text())
        assert json.loads(texts[-1]) == {"ok": True, "balance_usd": 100.0, "emulator": True,
                                         "message": "the Sonify emulator (not the real provider) accepts the key"}
        await answer(await client.post("/sonify/keys", json={"provider": "wavespeed", "key": WAVESPEED_KEY}))
        response = await client.post("/sonify/keys/wavespeed/test")
        texts.append(await response.text())
        refused = json.loads(texts[-1])
        assert refused["ok"] is False and "refused the key (HTTP 401)" in refused["message"]
        missing = await answer(await client.post("/sonify/keys/fal/test"))
        assert missing["ok"] is False and "No fal API key found" in missing["message"]

    serve(test)
    for text in texts + [r.getMessage() for r in caplog.records]:
        assert WAVESPEED_KEY not in text and EMULATOR_KEY not in text


def test_the_spend_section_saves_caps_in_the_journal_and_shows_spend_and_balances(state, emulator, monkeypatch):
    monkeypatch.setenv("SONIFY_WAVESPEED_URL", emulator.url)
    monkeypatch.setenv("WAVESPEED_API_KEY", EMULATOR_KEY)
    monkeypatch.setenv("SONIFY_MAX_USD_PER_MONTH", "20")
    emulator.balance = 12.5

    async def test(client: TestClient) -> None:
        shown = await answer(await client.get("/sonify/spend"))
        assert shown["today_usd"] == 0 and shown["month_usd"] == 0
        assert shown["settings"]["SONIFY_MAX_USD_PER_MONTH"] == {"usd": 20.0, "from": "environment"}
        assert shown["settings"]["SONIFY_MAX_USD_PER_DAY"] == {"usd": None, "from": None}
        saved = await answer(await client.post("/sonify/spend", json={"SONIFY_MAX_USD_PER_DAY": "2.5"}))
        assert saved["settings"]["SONIFY_MAX_USD_PER_DAY"] == {"usd": 2.5, "from": "settings"}
        refused = await answer(await client.post("/sonify/spend", json={"SONIFY_MAX_USD_PER_DAY": "-1"}), 400)
        assert refused["error"].startswith("SONIFY_MAX_USD_PER_DAY must be a number of US dollars, 0 or more")
        removed = await answer(await client.post("/sonify/spend", json={"SONIFY_MAX_USD_PER_DAY": None}))
        assert removed["settings"]["SONIFY_MAX_USD_PER_DAY"]["usd"] is None
        balances = await answer(await client.get("/sonify/balance"))
        assert balances["wavespeed"] == {"balance_usd": 12.5, "message": "balance $12.50"}
        assert balances["fal"] == {"balance_usd": None, "message": "no key"}

    serve(test)
    assert [r.path for r in emulator.requests] == ["/api/v3/balance"]  # the only request any of it made


def test_the_price_catalog_is_the_models(state):
    models = module("sonify.catalog")

    async def test(client: TestClient) -> None:
        catalog = await answer(await client.get("/sonify/prices"))
        assert catalog["SonifyMMAudioV2"] == {"model": "mmaudio-v2", "rule": {
            "usd": 0.001, "per": "second", "text": "$0.001 per second of audio", "param": "duration",
            "zero_is_clip": True, "max": 30}}
        assert catalog["SonifyKlingVideoToAudio"]["rule"] == {"usd": 0.035, "per": "job", "text": "$0.035 per job"}
        for entry in catalog.values():
            spec = models.MODELS[entry["model"]]
            assert entry["rule"]["text"] == spec.price_text
            after_the_run = entry["rule"]["per"] == "compute_second"  # a rate, measured once the job ran
            assert (entry["rule"]["usd"] is None or after_the_run) == (spec.price(spec.defaults()) is None)

    serve(test)


def test_routes_are_added_only_where_comfyui_serves():
    comfy = module("nodes.comfy")
    assert comfy.add_routes(lambda: pytest.fail("no PromptServer here: nothing is made")) is False
    assert os.path.basename(load_pack().WEB_DIRECTORY) == "web"


def test_routes_land_in_comfyuis_route_table_as_its_server_serves_them(state, monkeypatch):
    """ComfyUI's PromptServer keeps an aiohttp RouteTableDef and serves each route also under /api: the same
    table here (a `server` module with just that), then an app built from it the way server.py does."""
    table = web.RouteTableDef()
    host = types.ModuleType("server")
    host.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(routes=table))
    monkeypatch.setitem(sys.modules, "server", host)
    assert module("nodes.comfy").add_routes(lambda: module("nodes.routes").routes(load_pack().nodes.MODEL_NODES))

    async def main() -> None:
        app = web.Application()
        app.add_routes([web.route(r.method, "/api" + r.path, r.handler) for r in table])
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            assert (await answer(await client.get("/api/sonify/keys")))["fal"]["set"] is False
            assert "SonifyMMAudioV2" in await answer(await client.get("/api/sonify/prices"))

    asyncio.run(main())


def test_a_key_file_sonify_will_not_write_through_is_a_message_not_a_server_error(state, tmp_path):
    state.mkdir(parents=True, exist_ok=True)
    (tmp_path / "elsewhere.json").write_text("{}")
    (state / "keys.json").symlink_to(tmp_path / "elsewhere.json")

    async def test(client: TestClient) -> None:
        refused = await answer(await client.post("/sonify/keys", json={"provider": "wavespeed", "key": WAVESPEED_KEY}),
                               status=400)
        assert "symbolic link" in refused["error"] and WAVESPEED_KEY not in refused["error"]
        checked = await answer(await client.post("/sonify/keys/wavespeed/test"))
        assert checked["ok"] is False  # the check answers; it does not crash on the key file

    serve(test)
    assert (tmp_path / "elsewhere.json").read_text() == "{}"  # nothing written through the link
