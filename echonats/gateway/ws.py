"""The JSON WebSocket endpoint ``/ws``.

Handshake: the token comes as ``?token=`` or an ``Authorization: Bearer`` header. The socket is
accepted first and then closed with 4001 (bad or missing token) or 4003 (not allowed in the
tenant), because browsers cannot read an HTTP status of a refused upgrade but do see close codes.
Before the token is even looked at, a client IP over its upgrade rate gets HTTP 429 (cheap, and no
socket to close); a user over ``ECHONATS_WS_MAX_SOCKETS_PER_USER`` here is accepted and closed with
4029. The socket is closed with 4001 at its token's ``exp`` unless a ``reauth`` frame brings a
fresh token for the same tenant and user first.
Frames are read one at a time per socket; sends are pipelined (``gateway.sending``): up to 64 in
flight, stored in the order sent, acked in that order. Bad frames get an error frame and the
socket stays open.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, assert_never

import msgspec
from litestar import WebSocket
from litestar.datastructures import State
from litestar.types import WebSocketResponseBodyEvent, WebSocketResponseStartEvent

from echonats.core.caller import Caller
from echonats.core.messaging import Write
from echonats.core.ports import LiveFeed, TokenVerifier, TypingNotice, TypingPublisher, TypingThrottle
from echonats.core.services import Services
from echonats.gateway import protocol as p
from echonats.gateway.auth import authenticate, bearer_token, unexpired
from echonats.gateway.connection import Connection, WriteCoalescer
from echonats.gateway.fanout import Hub
from echonats.gateway.feed import FeedRouter
from echonats.gateway.limits import HandshakeGuard, SocketCounter
from echonats.gateway.presence import PresenceTracker
from echonats.gateway.sending import SendPipeline
from echonats.gateway.socket_errors import (
    CLOSE_TOO_MANY_CONNECTIONS,
    error_frame,
    internal_error_frame,
)
from echonats.gateway.socket_errors import bad_frame as _bad_frame
from echonats.gateway.socket_errors import close_for as _close_for
from echonats.gateway.ws_framing import release_handshake, sink_for
from echonats.model import Principal
from echonats.model.errors import (
    EchonatsError,
    Forbidden,
    LimitExceeded,
    NotFound,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

C = TypeVar("C", bound=Connection)


@dataclass(slots=True)
class Realtime:
    """Everything the socket handlers share in one gateway process."""

    services: Services
    hub: Hub
    feed_router: FeedRouter  # the per-user live feed of JSON sockets
    feed: LiveFeed  # for what is not fanned out by the hub (STOMP's event destinations)
    typing_publisher: TypingPublisher
    presence: PresenceTracker
    typing: TypingThrottle
    send_queue: int
    max_frame_bytes: int
    close_timeout_s: float
    verifier: TokenVerifier  # for tokens presented on a live socket (reauth)
    handshakes: HandshakeGuard
    sockets: SocketCounter
    coalescer: WriteCoalescer = field(default_factory=WriteCoalescer)

    def connection(
        self,
        caller: Caller | None,
        socket: WebSocket[Any, Any, Any],
        kind: type[C],
        principal: Principal | None = None,
    ) -> C:
        """A hub connection for an accepted (or about to be) socket; ``caller`` None: one across
        the workspaces of ``principal`` (STOMP, D51)."""
        sink = sink_for(socket.scope, socket.send)
        return kind(
            caller,
            socket.send,
            principal=principal,
            sink=sink,
            coalescer=self.coalescer,
            max_queue=self.send_queue,
            close_timeout_s=self.close_timeout_s,
        )

    def admit(self, principal: Principal) -> None:
        """Take one of the user's sockets on this gateway (give it back with ``release``)."""
        if not self.sockets.acquire(principal.tenant_id, principal.user_id):
            raise LimitExceeded("too many open connections for this user")

    def release(self, principal: Principal) -> None:
        self.sockets.release(principal.tenant_id, principal.user_id)

    @contextlib.asynccontextmanager
    async def admitted(self, principal: Principal) -> AsyncIterator[None]:
        self.admit(principal)
        try:
            yield
        finally:
            self.release(principal)


async def refused_upgrade(socket: WebSocket[Any, Any, Any], handshakes: HandshakeGuard) -> bool:
    """Refuse the upgrade with HTTP 429 if its client IP is over its rate (True: refused). Runs
    before anything else of the handshake, so a flood costs no token verification."""
    client = socket.scope.get("client")
    wait_s = handshakes.retry_after_s(client[0] if client else None)
    if not wait_s:
        return False
    if "websocket.http.response" in (socket.scope.get("extensions") or {}):
        retry_after = str(max(1, math.ceil(wait_s))).encode()
        start: WebSocketResponseStartEvent = {
            "type": "websocket.http.response.start",
            "status": 429,
            "headers": [(b"retry-after", retry_after), (b"content-type", b"text/plain; charset=utf-8")],
        }
        body: WebSocketResponseBodyEvent = {
            "type": "websocket.http.response.body",
            "body": b"too many connection attempts\n",
            "more_body": False,
        }
        await socket.send(start)
        await socket.send(body)
    else:  # a server without the denial-response extension: close codes are what is left
        await socket.accept()
        await socket.close(CLOSE_TOO_MANY_CONNECTIONS, "too many connection attempts")
    return True


async def serve_json(socket: WebSocket[Any, Any, Any]) -> None:
    """The JSON protocol on an upgrade that passed the handshake guard (``gateway.sockets``)."""
    state: State = socket.app.state
    realtime: Realtime = state.realtime
    token = socket.query_params.get("token") or bearer_token(socket.headers.get("authorization"))
    async with contextlib.AsyncExitStack() as admission:
        try:
            principal = unexpired(await authenticate(token, state))
            # A token without a tenant claim names its workspace with ?tenant= (browsers cannot
            # set headers on an upgrade); one socket serves one workspace (D52).
            tenant_id = _tenant_param(socket.query_params.get("tenant"))
            caller = await realtime.services.membership.resolve(principal, tenant_id)
            await admission.enter_async_context(realtime.admitted(principal))
        except (Unauthenticated, Forbidden, NotFound, Unavailable, LimitExceeded) as exc:
            await socket.accept()  # close codes reach browsers; a refused upgrade's status does not
            await socket.close(*_close_for(exc))
            return
        await _serve(socket, realtime, caller, principal)


def _tenant_param(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("no such workspace") from None


async def _serve(
    socket: WebSocket[Any, Any, Any], realtime: Realtime, caller: Caller, principal: Principal
) -> None:
    conn = realtime.connection(caller, socket, Connection, principal)
    sends = SendPipeline(
        caller,
        realtime.services.messaging,
        transport="websocket",
        on_stored=lambda written, nonce: conn.offer(p.encode(p.ack_of(written, nonce))),
        on_error=lambda exc, ref: conn.offer(error_frame(exc, ref)),
    )
    # Register before completing the handshake: once a client is connected, it is reachable.
    await realtime.hub.attach(conn)
    await realtime.feed_router.attach(conn)
    context = {"connection_id": conn.id, "tenant": str(conn.tenant_id), "user": conn.user_id}
    try:
        await socket.accept()
        release_handshake(socket.scope)
        conn.start()
        conn.expire_at(principal.expires_at)
        log.info("websocket connected", extra=context)
        await realtime.presence.connected(conn)
        await _read_frames(socket, realtime, conn, sends)
    finally:
        log.info("websocket disconnected", extra=context)
        await sends.close()
        await realtime.feed_router.detach(conn)
        await realtime.hub.detach(conn)
        await realtime.presence.disconnected(conn)
        await conn.stop()


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
        # One case per frame type: a frame added to p.AnyClientFrame without a case here fails
        # `make typecheck` at assert_never instead of being answered with something else.
        match frame:
            case p.Send():
                await sends.submit(  # answered when stored
                    frame.channel_id,
                    frame.body,
                    frame.nonce,
                    thread_id=frame.thread_id,
                    also_to_channel=frame.also_to_channel,
                )
            case p.Edit() | p.Delete() | p.React() | p.Unreact():
                check = change_check(conn.caller, realtime.services, frame)
                await sends.submit_change(check, frame.nonce, message_id=frame.message_id)
            case p.Subscribe():
                ref = str(frame.channel_id)
                await realtime.hub.subscribe(conn, frame.channel_id, frame.since)  # checks access
            case p.Unsubscribe():
                await realtime.hub.unsubscribe(conn, frame.channel_id)
                conn.send_unsubscribed(frame.channel_id)
            case p.Read():
                ref = str(frame.channel_id)  # answered by the read_state frame every socket of the user gets
                await realtime.services.conversations.mark_read(
                    conn.caller, frame.channel_id, frame.message_id
                )
            case p.Feed():
                await realtime.feed_router.resume(conn, frame.since)
            case p.PresenceQuery():
                ref = str(frame.channel_id) if frame.channel_id else None
                await _presence_snapshot(conn, realtime, frame.channel_id)
            case p.Typing():
                ref = str(frame.channel_id)
                await _typing(conn, realtime, frame.channel_id)
            case p.Reauth():
                await _reauthenticate(conn, realtime, frame.token)
            case p.Ping():
                conn.offer(p.PONG)
            case _:
                assert_never(frame)
    except EchonatsError as exc:
        conn.offer(error_frame(exc, ref))
    except Exception:
        # A bug must cost this one frame, not the connection (and never its other subscriptions).
        log.exception("frame handling failed", extra={"connection_id": conn.id})
        conn.offer(internal_error_frame(ref))


def change_check(
    caller: Caller, services: Services, frame: p.Edit | p.Delete | p.React | p.Unreact
) -> Callable[[], Awaitable[Write]]:
    """The check a change frame asks for (run by the pipeline when its turn comes)."""
    changes = services.changes
    match frame:
        case p.Edit():
            return lambda: changes.check_edit(
                caller, frame.channel_id, frame.message_id, body=frame.body, nonce=frame.nonce
            )
        case p.Delete():
            return lambda: changes.check_delete(caller, frame.channel_id, frame.message_id, nonce=frame.nonce)
        case p.React() | p.Unreact():
            added = isinstance(frame, p.React)
            return lambda: changes.check_reaction(
                caller, frame.channel_id, frame.message_id, emoji=frame.emoji, added=added, nonce=frame.nonce
            )
        case _:
            assert_never(frame)


async def _reauthenticate(conn: Connection, realtime: Realtime, token: str) -> None:
    """A fresh token moves the socket's expiry; refused, the socket keeps the one it had."""
    principal = unexpired(await realtime.verifier.verify(token))
    if principal.tenant_id != conn.principal.tenant_id or principal.user_id != conn.user_id:
        raise Forbidden("the token is for another tenant or user than the socket's")
    conn.expire_at(principal.expires_at)
    conn.offer(p.encode(p.Reauthenticated(expires_at=principal.expires_at)))


async def _presence_snapshot(conn: Connection, realtime: Realtime, channel_id: uuid.UUID | None) -> None:
    views = await realtime.services.status.snapshot(conn.caller, realtime.presence.store, channel_id)
    users = [
        p.PresenceEntry(
            user_id=v.user_id,
            status=v.status.value,
            presence=v.own.presence.value if v.own and v.own.presence else None,
            text=v.own.text if v.own and v.own.text else None,
            expires_at=v.own.expires_at if v.own else None,
        )
        for v in views
    ]
    conn.offer(p.encode(p.PresenceSnapshot(users=users, channel_id=channel_id)))


async def _typing(conn: Connection, realtime: Realtime, channel_id: uuid.UUID) -> None:
    await realtime.services.access.readable(conn.caller, channel_id)
    if not await realtime.typing.allow(conn.tenant_id, channel_id, conn.user_id):
        return  # throttled: one indicator per user and channel per interval is enough
    notice = TypingNotice(user_id=conn.user_id, display_name=conn.caller.member.display_name)
    await realtime.typing_publisher.publish_typing(conn.tenant_id, channel_id, notice)
