"""ASGI applications for bench/ws_bench.py's `--app`: what an idle websocket costs a server without
our site, to split the site's figure into the server's share, Channels' share and ours.

- `bare`: accepts every websocket (with the `agentos` subprotocol) and waits for its disconnect;
  answers HTTP with 200. No Django, no Channels.
- `consumer`: Django set up as the site is, then Channels' router and an AsyncJsonWebsocketConsumer
  that accepts and does nothing (no channel layer, no authentication, no middleware).
"""

from __future__ import annotations

import os
from typing import Any


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": "agentos"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def _consumer_app() -> Any:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentos_site.settings")
    from django.core.asgi import get_asgi_application

    http = get_asgi_application()
    from channels.generic.websocket import AsyncJsonWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class IdleConsumer(AsyncJsonWebsocketConsumer):
        channel_layer_alias = "__none__"

        async def connect(self) -> None:
            await self.accept(subprotocol="agentos")

    return ProtocolTypeRouter(
        {"http": http, "websocket": URLRouter([path("ws/agents/<slug:agent_id>/", IdleConsumer.as_asgi())])}
    )


_consumer: Any = None


async def consumer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _consumer
    if _consumer is None:
        _consumer = _consumer_app()
    await _consumer(scope, receive, send)
