"""Server-to-client WebSocket frames written straight to the socket's transport.

Fanout writes the same message to many sockets. Through ASGI every delivery pays for a chain of
coroutines (Litestar's wrapper, uvicorn's ``send``) and for framing the payload again in the
websockets library, and the per-socket writer task that awaited it paid a task switch on top: the
profile showed ~20 µs of CPU per delivery, half of it outside the kernel's send. A server frame is
just a header and the payload (RFC 6455 §5.2, no mask from the server), so fanout frames each
message once into bytes and every delivery is one ``transport.write`` of those bytes.

That needs the uvicorn protocol object behind the socket. :func:`capture_transport` (an ASGI
middleware around the whole app) finds it for WebSocket scopes served by uvicorn's
websockets-sansio implementation, the default; under any other server :class:`AsgiSink` sends each
frame through ASGI as before. Handshake, close and ping/pong stay with uvicorn either way.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol, cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

_SCOPE_KEY = "echonats.ws_protocol"
_OPCODE_TEXT = 0x81  # FIN + text


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame carrying ``payload`` (UTF-8)."""
    size = len(payload)
    if size < 126:
        return bytes((_OPCODE_TEXT, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", _OPCODE_TEXT, 126, size) + payload
    return struct.pack("!BBQ", _OPCODE_TEXT, 127, size) + payload


def payload_of(frame: bytes) -> bytes:
    """The payload of a frame made by :func:`text_frame`."""
    marker = frame[1]
    return frame[2 + (marker == 126) * 2 + (marker == 127) * 8 :]


class FrameSink(Protocol):
    """Where one connection's frames go."""

    def write_now(self, frame: bytes) -> bool:
        """Write without waiting if the socket takes it now; False: queue it and call ``flush``."""
        ...

    async def flush(self, frames: list[bytes]) -> None:
        """Wait until the socket takes more, then write (and remove) at least one queued frame."""
        ...

    def abort(self) -> bool:
        """Drop the TCP connection at once if it is still open; True if it was."""
        ...


class TransportSink:
    """Frames written to uvicorn's transport, honouring its flow control (``pause_writing``)."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def write_now(self, frame: bytes) -> bool:
        if not self._protocol.writable.is_set():
            return False  # the transport's buffer is above its high-water mark
        self._write(frame)
        return True

    async def flush(self, frames: list[bytes]) -> None:
        await self._protocol.writable.wait()
        data = b"".join(frames)  # everything queued while paused: one write, one syscall
        frames.clear()
        self._write(data)

    def abort(self) -> bool:
        protocol = self._protocol
        if protocol.disconnected:
            return False
        # uvicorn's own close timer calls transport.close(), which waits for buffered data a peer
        # that does not read never takes; abort() discards it. connection_lost() follows, which
        # ends the handler (websocket.disconnect) and wakes a send blocked on flow control.
        protocol.transport.abort()
        return True

    def _write(self, data: bytes) -> None:
        protocol = self._protocol
        # Dropped once the socket is closing: nothing may follow a close frame.
        if not (protocol.close_sent or protocol.transport.is_closing()):
            protocol.transport.write(data)


class AsgiSink:
    """Frames sent as ASGI ``websocket.send`` events: for servers whose transport we cannot reach."""

    __slots__ = ("_send",)

    def __init__(self, send: Send) -> None:
        self._send = send

    def write_now(self, frame: bytes) -> bool:
        return False

    async def flush(self, frames: list[bytes]) -> None:
        text = payload_of(frames.pop(0)).decode()  # fallback path only; the queue is bounded
        await self._send({"type": "websocket.send", "text": text, "bytes": None})

    def abort(self) -> bool:
        return False  # the transport is out of reach: the server's own close timeout applies


def sink_for(scope: Scope, send: Send) -> FrameSink:
    protocol = cast(dict[str, Any], scope).get(_SCOPE_KEY)
    return TransportSink(protocol) if protocol is not None else AsgiSink(send)


def release_handshake(scope: Scope) -> None:
    """Once the handshake response is sent, uvicorn no longer reads the request and response it
    keeps (with every header, ~4 KB a socket); drop them so an idle socket costs less."""
    protocol = cast(dict[str, Any], scope).get(_SCOPE_KEY)
    if protocol is not None and protocol.handshake_complete:
        for name in ("request", "response"):
            if hasattr(protocol, name):
                setattr(protocol, name, None)


def _uvicorn_sansio_protocol(send: Send) -> Any:
    """uvicorn's protocol object if ``send`` is its bound ``send`` and has what TransportSink uses."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:  # pragma: no cover - another uvicorn layout: fall back to ASGI
        return None
    protocol = getattr(send, "__self__", None)
    if not isinstance(protocol, WebSocketsSansIOProtocol):
        return None
    if not all(
        hasattr(protocol, name)
        for name in ("transport", "writable", "close_sent", "handshake_complete", "disconnected")
    ):
        return None  # pragma: no cover - a uvicorn release that changed its internals
    return protocol


def capture_transport(app: ASGIApp) -> ASGIApp:
    """Outermost ASGI middleware: note the uvicorn protocol of each WebSocket scope."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.WEBSOCKET:
            protocol = _uvicorn_sansio_protocol(send)
            if protocol is not None:
                cast(dict[str, Any], scope)[_SCOPE_KEY] = protocol
        await app(scope, receive, send)

    return middleware
