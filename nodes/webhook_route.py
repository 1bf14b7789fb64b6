"""The pack's webhook route on ComfyUI's server: POST /sonify/webhook/{provider}, handed to the engine's
receiver (sonify/webhooks.py: verify, then wake the waiting job). Pure aiohttp, registered by comfy.py."""

from __future__ import annotations

from aiohttp import web

from ..sonify.providers import webhooks


async def receive(request: web.Request) -> web.Response:
    """Verification is a hash or one signature check on keys already held (fetched at submit): no I/O, so it
    runs on the event loop."""
    if request.content_length is not None and request.content_length > webhooks.MAX_BODY:
        return web.json_response({"detail": f"a delivery is at most {webhooks.MAX_BODY} bytes"}, status=413)
    body = b""
    while len(body) <= webhooks.MAX_BODY:  # one byte more than allowed is enough to refuse it
        piece = await request.content.read(webhooks.MAX_BODY + 1 - len(body))
        if not piece:
            break
        body += piece
    headers = {name.lower(): value for name, value in request.headers.items()}
    status, reason = webhooks.RECEIVER.receive(request.match_info["provider"], headers, body)
    return web.json_response({"detail": reason}, status=status)


def register(routes: web.RouteTableDef) -> None:
    """Add the route to `routes` (ComfyUI's `PromptServer.instance.routes`, or a test's table)."""
    routes.post(webhooks.ROUTE)(receive)
