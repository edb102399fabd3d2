"""The JSON WebSocket endpoint ``/ws``.

Handshake: the token comes as ``?token=`` or an ``Authorization: Bearer`` header. The socket is
accepted first and then closed with 4001 (bad or missing token) or 4003 (not allowed in the
tenant), because browsers cannot read an HTTP status of a refused upgrade but do see close codes.
Frames are read one at a time per socket; sends are pipelined (``gateway.sending``): up to 64 in
flight, stored in the order sent, acked in that order. Bad frames get an error frame and the
socket stays open.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from litestar import WebSocket, websocket
from litestar.datastructures import State
from nats.aio.client import Client as NatsClient

from echonats import metrics
from echonats.adapters import subjects
from echonats.adapters.records import TypingRecord, message_encoder
from echonats.core.base import Caller
from echonats.core.ports import TypingThrottle
from echonats.core.services import Services
from echonats.errors import EchonatsError, Forbidden, RateLimited, Unauthenticated, Unavailable
from echonats.gateway import protocol as p
from echonats.gateway.auth import authenticate, bearer_token
from echonats.gateway.connection import CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, Connection, WriteCoalescer
from echonats.gateway.fanout import Hub
from echonats.gateway.presence import PresenceTracker
from echonats.gateway.sending import SendPipeline
from echonats.gateway.wire import release_handshake, sink_for

log = logging.getLogger(__name__)

C = TypeVar("C", bound=Connection)

CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(slots=True)
class Realtime:
    """Everything the socket handlers share in one gateway process."""

    services: Services
    hub: Hub
    nc: NatsClient
    presence: PresenceTracker
    typing: TypingThrottle
    send_queue: int
    max_frame_bytes: int
    coalescer: WriteCoalescer = field(default_factory=WriteCoalescer)

    def connection(self, caller: Caller, socket: WebSocket[Any, Any, Any], kind: type[C]) -> C:
        """A hub connection for an accepted (or about to be) socket."""
        sink = sink_for(socket.scope, socket.send)
        return kind(caller, socket.send, sink=sink, coalescer=self.coalescer, max_queue=self.send_queue)


def error_frame(exc: EchonatsError, ref: str | None = None) -> str:
    """The one place domain errors become WebSocket error frames."""
    retry_after = None
    if isinstance(exc, RateLimited):
        retry_after = exc.retry_after_ms
        metrics.rate_limited.labels("websocket").inc()
    return p.encode(p.ErrorFrame(code=exc.code, message=exc.message, ref=ref, retry_after_ms=retry_after))


def _bad_frame(message: str) -> str:
    return p.encode(p.ErrorFrame(code="bad_request", message=message))


@websocket("/ws", name="chat-websocket")
async def chat_socket(socket: WebSocket[Any, Any, Any]) -> None:
    state: State = socket.app.state
    realtime: Realtime = state.realtime
    token = socket.query_params.get("token") or bearer_token(socket.headers.get("authorization"))
    try:
        principal = await authenticate(token, state)
        caller = await realtime.services.membership.resolve(principal)
    except (Unauthenticated, Forbidden, Unavailable) as exc:
        await socket.accept()  # close codes reach browsers; a refused upgrade's status does not
        await socket.close(*_close_for(exc))
        return
    conn = realtime.connection(caller, socket, Connection)
    sends = SendPipeline(
        caller,
        realtime.services.messaging,
        transport="websocket",
        on_stored=lambda message, nonce: conn.offer(
            p.encode(p.Ack(nonce=nonce, message_id=message.id, created_at=message.created_at))
        ),
        on_error=lambda exc, ref: conn.offer(error_frame(exc, ref)),
    )
    # Register before completing the handshake: once a client is connected, it is reachable.
    await realtime.hub.attach(conn)
    context = {"connection_id": conn.id, "tenant": str(conn.tenant_id), "user": conn.user_id}
    try:
        await socket.accept()
        release_handshake(socket.scope)
        conn.start()
        log.info("websocket connected", extra=context)
        await realtime.presence.connected(conn)
        await _read_frames(socket, realtime, conn, sends)
    finally:
        log.info("websocket disconnected", extra=context)
        await sends.close()
        await realtime.hub.detach(conn)
        await realtime.presence.disconnected(conn)
        await conn.stop()


def _close_for(exc: EchonatsError) -> tuple[int, str]:
    """The one place handshake failures become close codes."""
    if isinstance(exc, Unauthenticated):
        return CLOSE_UNAUTHORIZED, exc.message[:120]
    if isinstance(exc, Forbidden):
        return CLOSE_FORBIDDEN, exc.message[:120]
    return CLOSE_TRY_AGAIN_LATER, "try again later"


async def _read_frames(
    socket: WebSocket[Any, Any, Any], realtime: Realtime, conn: Connection, sends: SendPipeline
) -> None:
    while not conn.closing:
        event = await socket.receive()
        if event["type"] != "websocket.receive":
            return
        conn.last_active = time.time()
        text = event.get("text")
        if text is None:
            conn.offer(_bad_frame("frames must be JSON text frames"))
            continue
        await _handle(conn, realtime, sends, text)


async def _handle(conn: Connection, realtime: Realtime, sends: SendPipeline, text: str) -> None:
    try:
        frame = p.client_frame_decoder.decode(text)
    except msgspec.ValidationError as exc:
        conn.offer(_bad_frame(f"invalid frame: {exc}"[:300]))
        return
    except msgspec.DecodeError:
        conn.offer(_bad_frame("frames must be JSON objects"))
        return
    except RecursionError:  # msgspec gives up on absurd nesting this way; it is bad input, not a crash
        conn.offer(_bad_frame("frames must not be nested this deeply"))
        return
    ref = None
    try:
        if isinstance(frame, p.Send):
            await sends.submit(frame.channel_id, frame.body, frame.nonce)  # answered when stored
        elif isinstance(frame, p.Subscribe):
            ref = str(frame.channel_id)
            await realtime.hub.subscribe(conn, frame.channel_id, frame.since)  # checks access
        elif isinstance(frame, p.Unsubscribe):
            await realtime.hub.unsubscribe(conn, frame.channel_id)
            conn.send_unsubscribed(frame.channel_id)
        elif isinstance(frame, p.Typing):
            ref = str(frame.channel_id)
            await _typing(conn, realtime, frame.channel_id)
        else:
            conn.offer(p.PONG)
    except EchonatsError as exc:
        conn.offer(error_frame(exc, ref))
    except Exception:
        # A bug must cost this one frame, not the connection (and never its other subscriptions).
        log.exception("frame handling failed", extra={"connection_id": conn.id})
        conn.offer(p.encode(p.ErrorFrame(code="internal_error", message="internal error", ref=ref)))


async def _typing(conn: Connection, realtime: Realtime, channel_id: uuid.UUID) -> None:
    await realtime.services.access.readable(conn.caller, channel_id)
    if not await realtime.typing.allow(conn.tenant_id, channel_id, conn.user_id):
        return  # throttled: one indicator per user and channel per interval is enough
    record = TypingRecord(user_id=conn.user_id, display_name=conn.caller.member.display_name)
    await realtime.nc.publish(
        subjects.typing_subject(conn.tenant_id, channel_id), message_encoder.encode(record)
    )
