"""The WebSocket routes. ``/ws`` speaks STOMP 1.2 to a client that offers a ``v1x.stomp``
subprotocol (EchoPulse's stomp.js connects there) and the JSON protocol to every other;
``/ws/stomp`` is STOMP only. Either way a client IP over its handshake rate gets HTTP 429 first."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket

from echonats.gateway import stomp_frames as sf
from echonats.gateway.stomp import serve_stomp
from echonats.gateway.ws import Realtime, refused_upgrade, serve_json


@websocket("/ws", name="chat-websocket")
async def chat_socket(socket: WebSocket[Any, Any, Any]) -> None:
    realtime: Realtime = socket.app.state.realtime
    if await refused_upgrade(socket, realtime.handshakes):
        return
    stomp = sf.negotiate_subprotocol(socket.scope.get("subprotocols", ()))
    if stomp is not None:
        await serve_stomp(socket, stomp)
    else:
        await serve_json(socket)


@websocket("/ws/stomp", name="stomp-websocket")
async def stomp_socket(socket: WebSocket[Any, Any, Any]) -> None:
    realtime: Realtime = socket.app.state.realtime
    if await refused_upgrade(socket, realtime.handshakes):
        return
    await serve_stomp(socket, sf.negotiate_subprotocol(socket.scope.get("subprotocols", ())))
