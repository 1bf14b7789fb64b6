"""Print the price rules as the frontend gets them, for the frontend's tests (`node --test tests/js` reads the file
named by SONIFY_PRICES): {"route": GET /sonify/prices as the pack's route serves it on a real aiohttp server on
127.0.0.1 (the pack's own badge, ComfyUI 0.8), "badges": each node declaration's native price badge (ComfyUI 0.33:
{"expr", "widgets": [{"name", "type"}]}, as /object_info lists it)}."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pack import load_pack, module


async def served() -> dict:
    app = web.Application()
    app.add_routes(module("nodes.routes").routes(load_pack().nodes.MODEL_NODES))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        response = await client.get("/sonify/prices")
        response.raise_for_status()
        return await response.json()


def badges() -> dict:
    found = {}
    for node in load_pack().nodes.NODES:
        if node.price_badge is not None:
            types = {i.name: i.type for i in node.inputs}
            found[node.node_id] = {"expr": node.price_badge.expr,
                                   "widgets": [{"name": w, "type": types[w]} for w in node.price_badge.widgets]}
    return found


if __name__ == "__main__":
    print(json.dumps({"route": asyncio.run(served()), "badges": badges()}))
