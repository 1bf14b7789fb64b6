"""Print the price catalog exactly as the pack's route serves it (GET /sonify/prices on a real aiohttp
server on 127.0.0.1), for the frontend's tests: `node --test tests/js` reads it from SONIFY_PRICES."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pack import load_pack, module


async def main() -> str:
    app = web.Application()
    app.add_routes(module("nodes.routes").routes(load_pack().nodes.MODEL_NODES))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        response = await client.get("/sonify/prices")
        response.raise_for_status()
        return await response.text()


if __name__ == "__main__":
    print(asyncio.run(main()))
