"""STOMP 1.2 over WebSocket at ``/ws/stomp``, for STOMP clients (stomp.js, stomp.py, EchoPulse).

Another face of the JSON WebSocket: same use cases (validation, access, rate limits), same fanout
hub (messages cross between the protocols), same presence and metrics (transport label ``stomp``).
``SEND /app/channels/{channelId}`` posts the body (UTF-8 text); ``SUBSCRIBE /channels/{channelId}``
delivers ``{id, username, channelId, content, timestamp}``; ``SUBSCRIBE /servers/{tenantId}/``
``channels/created|channels/deleted|user-joined|user-left`` delivers ``{"event": <event data>}``.

- **Authentication.** The token comes from CONNECT's ``Authorization: Bearer`` (or ``passcode``),
  else ``?token=``, else the upgrade's ``Authorization``. Later frames may repeat ``Authorization``
  (some clients send it on every frame): a different token is verified and must name the same user
  (a refresh), else the session ends. Failures: an ERROR frame with ``code``, then close 4001/4003
  (1013 if a dependency is down), the close codes of ``/ws``.
- **Errors.** Malformed or unexpected frames (bad syntax, missing ``id``/``destination``, a reused
  subscription id, oversize, transactions) get an ERROR frame and the socket is closed (1002), as
  the spec requires. A *well-formed* SEND or SUBSCRIBE that the domain refuses (``not_found``,
  ``validation_failed``, ``rate_limited`` with ``retry-after-ms``, ``unavailable``) gets an ERROR
  frame carrying ``code`` and ``receipt-id`` but the session stays open: the spec says a server
  closes after ERROR, but chat clients must survive one refused message, and they do (stomp.js and
  stomp.py only report ERROR frames; neither closes on them).
- **Subscriptions.** An unknown destination, a channel the caller cannot read, or another tenant's
  ``/servers/...`` is accepted and never delivers (like the JSON protocol, existence is not
  revealed). Two subscription ids on the same channel both receive every message (one hub
  subscription feeds both). ``ack`` modes other than ``auto`` are not implemented; ACK/NACK frames
  are accepted and ignored. Typing and presence have no STOMP destination and are not delivered.
- **Channel events** are delivered for public channels only (``isPrivate`` false): an event
  carries no member list, so a private channel's creation or deletion is never broadcast.
- **Heart-beats.** Honoured both ways with a floor of 1 s; CONNECTED reports the negotiated
  intervals. A client whose heart-beats (or any data) stop for twice its interval is closed (4009).
- **Token expiry.** STOMP 1.2 has no re-authentication frame. At the token's ``exp`` the session
  gets an ERROR frame (``code:unauthenticated``) and is closed with 4001; the client reconnects with
  a fresh token (stomp.js: ``beforeConnect``). A client that repeats ``Authorization`` on its frames
  moves the expiry with each fresh token it sends (see Authentication).
- **Limits.** Like ``/ws``: an IP over its upgrade rate gets HTTP 429 before the upgrade; a user
  over ``ECHONATS_WS_MAX_SOCKETS_PER_USER`` on this gateway gets an ERROR (``limit_exceeded``) at
  CONNECT and close 4029.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn, assert_never

import msgspec
from litestar import WebSocket
from litestar.datastructures import State

from echonats import __version__, metrics
from echonats.core.caller import Caller
from echonats.core.ports import Interest, OnEvent
from echonats.gateway import stomp_frames as sf
from echonats.gateway.auth import authenticate, bearer_token, unexpired
from echonats.gateway.connection import Connection
from echonats.gateway.echopulse_shapes import event_body
from echonats.gateway.socket_errors import close_code as _close_code
from echonats.gateway.socket_errors import stomp_error_frame
from echonats.gateway.stomp_connection import StompConnection
from echonats.gateway.stomp_frames import Frame
from echonats.gateway.ws import Realtime
from echonats.gateway.ws_framing import release_handshake
from echonats.model import DomainEvent, Principal
from echonats.model import events as ev
from echonats.model.errors import EchonatsError, Forbidden, NotFound, ValidationFailed

log = logging.getLogger(__name__)

MIN_HEARTBEAT_MS = 1000  # faster heart-beats cost more than they detect
CONNECT_TIMEOUT_S = 10.0  # a socket that never sends CONNECT holds resources for nothing
FLUSH_TIMEOUT_S = 5.0  # how long a final RECEIPT/ERROR may take to leave before the close
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_HEARTBEAT_TIMEOUT = 4009


@dataclass(slots=True)
class _Subscription:
    destination: str
    channel_id: uuid.UUID | None = None  # a hub-fed channel subscription
    events: Interest | None = None  # a domain-event destination
    tenant_id: uuid.UUID | None = None  # the workspace of a domain-event destination
    # Neither: accepted but never delivers (unknown, unreadable or foreign destination).


class _Closing(Exception):
    """Stop reading: the session is over (the close has been initiated)."""


async def serve_stomp(socket: WebSocket[Any, Any, Any], subprotocol: str | None) -> None:
    """A STOMP session on an upgrade that passed the handshake guard (``gateway.sockets``);
    ``subprotocol``: the one to answer (clients such as Node's ``ws`` abort without)."""
    await socket.accept(subprotocols=subprotocol)
    release_handshake(socket.scope)
    await _Session(socket).run()


class _Session:
    """One STOMP socket. Frames are handled one at a time, so sends are stored in the order sent."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket
        self.state: State = socket.app.state
        self.realtime: Realtime = self.state.realtime
        self.parser = sf.FrameParser(max_frame_bytes=self.realtime.max_frame_bytes)
        self.conn: StompConnection | None = None
        self.admitted: Principal | None = None  # counted in the user's sockets of this gateway
        self.token: str | None = None
        self.subscriptions: dict[str, _Subscription] = {}
        self.receive_timeout_s: float | None = CONNECT_TIMEOUT_S
        self._heartbeats: asyncio.Task[None] | None = None
        self._dropping: set[asyncio.Task[None]] = set()  # event interests being cancelled

    async def run(self) -> None:
        context: dict[str, str] = {}
        try:
            while True:
                for frame in await self._receive():
                    if self.conn is None:
                        conn = await self._connect(frame)
                        context = {"connection_id": conn.id, "tenant": str(conn.principal.tenant_id)}
                        log.info("stomp connected", extra=context)
                    else:
                        self.conn.last_active = time.time()
                        await self._handle(self.conn, frame)
        except _Closing:
            pass
        finally:
            await self._cleanup()
            if context:
                log.info("stomp disconnected", extra=context)

    async def _receive(self) -> list[Frame]:
        try:
            async with asyncio.timeout(self.receive_timeout_s):
                event = await self.socket.receive()
        except TimeoutError:
            await self._close_now(CLOSE_HEARTBEAT_TIMEOUT, "heart-beat timeout")
            raise _Closing from None
        if event["type"] != "websocket.receive":
            raise _Closing
        data: bytes = event.get("bytes") or (event.get("text") or "").encode()
        try:
            return self.parser.feed(data)
        except sf.FrameError as exc:
            await self._protocol_error(str(exc), code="bad_request")

    async def _connect(self, frame: Frame) -> StompConnection:
        if frame.command not in ("CONNECT", "STOMP"):
            await self._protocol_error(f"expected CONNECT, got {frame.command}")
        if "1.2" not in (frame.get("accept-version") or "1.0").split(","):
            await self._protocol_error("supported protocol versions: 1.2", version="1.2")
        heartbeat = sf.parse_heartbeat(frame.get("heart-beat"))
        if heartbeat is None:
            await self._protocol_error("invalid heart-beat header")
        client_send, client_receive = heartbeat
        self.token = (
            _frame_token(frame)
            or frame.get("passcode")
            or self.socket.query_params.get("token")
            or bearer_token(self.socket.headers.get("authorization"))
        )
        try:
            principal = unexpired(await authenticate(self.token, self.state))
            # A token with a tenant claim binds the session to it; one without serves every
            # workspace of its user, each frame checked in the workspace of its channel (D51).
            caller = None
            if principal.tenant_id is not None:
                caller = await self.realtime.services.membership.resolve(principal)
            self.realtime.admit(principal)
        except EchonatsError as exc:
            await self._fail(sf.error_frame(exc.message, code=exc.code), _close_code(exc))
        self.admitted = principal
        conn = self.realtime.connection(caller, self.socket, StompConnection, principal)
        conn.on_tenant_lost = self._tenant_lost
        # Registered before CONNECTED goes out: once a client is connected, it is reachable.
        await self.realtime.hub.attach(conn)
        self.conn = conn
        conn.start()
        conn.expire_at(principal.expires_at)
        await self.realtime.presence.connected(conn)
        send_ms = max(client_receive, MIN_HEARTBEAT_MS) if client_receive else 0
        receive_ms = max(client_send, MIN_HEARTBEAT_MS) if client_send else 0
        headers = {"version": "1.2", "heart-beat": f"{send_ms},{receive_ms}", "session": conn.id}
        conn.offer(sf.serialize("CONNECTED", {**headers, "server": f"echonats/{__version__}"}).decode())
        self.receive_timeout_s = 2 * receive_ms / 1000 if receive_ms else None
        if send_ms:
            self._heartbeats = asyncio.create_task(self._send_heartbeats(conn, send_ms / 1000))
        return conn

    async def _send_heartbeats(self, conn: Connection, interval_s: float) -> None:
        while not conn.closing:
            await asyncio.sleep(interval_s)  # the negotiated period itself, not a synchronisation
            conn.offer(sf.HEARTBEAT, ephemeral=True)  # a queue that is half full is not idle anyway

    async def _handle(self, conn: StompConnection, frame: Frame) -> None:
        await self._check_token(conn, frame)
        command = frame.command
        receipt = frame.get("receipt")
        if command == "SEND":
            await self._send_message(conn, frame, await self._required(frame, "destination"), receipt)
            return
        if command == "SUBSCRIBE":
            await self._subscribe(conn, frame, receipt)
        elif command == "UNSUBSCRIBE":
            await self._unsubscribe(conn, await self._required(frame, "id"))
        elif command == "DISCONNECT":
            if receipt is not None:
                await self._fail(sf.receipt_frame(receipt), CLOSE_NORMAL)
            await self._close_now(CLOSE_NORMAL, "disconnect")
            raise _Closing
        elif command in ("BEGIN", "COMMIT", "ABORT"):
            await self._protocol_error("transactions are not supported", receipt=receipt)
        elif command not in ("ACK", "NACK"):  # ACK/NACK: every subscription is ack:auto
            await self._protocol_error(f"unexpected {command} frame", receipt=receipt)
        if receipt is not None:
            conn.offer(sf.receipt_frame(receipt))

    async def _send_message(
        self, conn: StompConnection, frame: Frame, destination: str, receipt: str | None
    ) -> None:
        started = time.perf_counter()
        try:
            channel_id = sf.channel_destination(destination, send=True)
            if channel_id is None:
                raise NotFound(f"unknown destination {destination[:100]!r}; use /app/channels/{{channelId}}")
            body = _message_text(frame)
            caller = await self._caller_in(conn, channel_id)
            message = await self.realtime.services.messaging.send(
                caller, channel_id, body=body, nonce=frame.get("nonce")
            )
        except EchonatsError as exc:
            # A refused message is not a broken session: it stays open (see the module docstring).
            conn.offer(stomp_error_frame(exc, receipt))
            return
        metrics.record_send("stomp", started)
        if receipt is not None:
            # message-id is an extension: it lets a client match its message when it comes back.
            conn.offer(sf.receipt_frame(receipt, **{"message-id": str(message.id)}))

    async def _subscribe(self, conn: StompConnection, frame: Frame, receipt: str | None) -> None:
        sub_id = await self._required(frame, "id")
        destination = await self._required(frame, "destination")
        if sub_id in self.subscriptions:
            await self._protocol_error(f"subscription id {sub_id[:100]!r} is already in use")
        subscription = _Subscription(destination)
        try:
            event = sf.event_destination(destination)
            if (channel_id := sf.channel_destination(destination, send=False)) is not None:
                with contextlib.suppress(NotFound):  # unreadable: accepted, never delivers
                    if channel_id not in conn.channels:  # new, or revoked since: ask again
                        caller = await self._caller_in(conn, channel_id)
                        await self.realtime.hub.subscribe(conn, channel_id, None, caller)  # checks access
                    subscription.channel_id = channel_id
                    conn.channel_subscriptions.setdefault(channel_id, []).append(sf.escape(sub_id))
            elif event is not None and await self._member_of(conn, event[0]):  # only the user's tenants
                on_event = self._event_callback(conn, sf.escape(sub_id), destination)
                subscription.tenant_id = event[0]
                subscription.events = await self.realtime.feed.watch_events(event[0], [event[1]], on_event)
        except EchonatsError as exc:
            conn.offer(sf.error_frame(exc.message, code=exc.code, receipt=receipt))  # e.g. unavailable
            return
        self.subscriptions[sub_id] = subscription

    async def _caller_in(self, conn: StompConnection, channel_id: uuid.UUID) -> Caller:
        """The membership a frame about ``channel_id`` acts under: the session's, or (across
        workspaces) the user's in the channel's workspace, checked now (NotFound if none)."""
        if conn.home is not None:
            return conn.home
        return await self.realtime.services.membership.resolve_in_channel(conn.principal, channel_id)

    async def _member_of(self, conn: StompConnection, tenant_id: uuid.UUID) -> bool:
        if conn.home is not None:
            return tenant_id == conn.tenant_id
        try:
            await self.realtime.services.membership.resolve(conn.principal, tenant_id)
        except NotFound:
            return False
        return True

    def _tenant_lost(self, tenant_id: uuid.UUID) -> None:
        """The user left (or lost) a workspace: its event destinations stop delivering at once
        (channel subscriptions were ended by the hub); subscribing again checks membership anew."""
        for subscription in self.subscriptions.values():
            if subscription.tenant_id == tenant_id and subscription.events is not None:
                self._spawn_drop(subscription.events)
                subscription.events = None

    def _spawn_drop(self, interest: Interest) -> None:
        task = asyncio.create_task(interest.cancel())
        self._dropping.add(task)
        task.add_done_callback(self._dropping.discard)

    @staticmethod
    def _event_callback(conn: Connection, sub_id: str, destination: str) -> OnEvent:
        def on_event(event: DomainEvent) -> None:
            body = event_body(event)
            if body is None or not _announced(event):
                return
            conn.offer(sf.event_message_frame(sub_id, destination, str(event.id), body))

        return on_event

    async def _unsubscribe(self, conn: StompConnection, sub_id: str) -> None:
        subscription = self.subscriptions.pop(sub_id, None)
        if subscription is None:
            return  # unknown ids are ignored: unsubscribing is idempotent
        if subscription.channel_id is not None:
            ids = conn.channel_subscriptions.get(subscription.channel_id, [])
            with contextlib.suppress(ValueError):
                ids.remove(sf.escape(sub_id))
            if not ids:
                conn.channel_subscriptions.pop(subscription.channel_id, None)
                await self.realtime.hub.unsubscribe(conn, subscription.channel_id)
        await _drop(subscription.events)

    async def _check_token(self, conn: Connection, frame: Frame) -> None:
        """A token repeated on a frame must be the session's, or a valid one for the same user."""
        token = _frame_token(frame)
        if token is None or token == self.token:
            return
        try:
            principal = unexpired(await authenticate(token, self.state))
            if principal.tenant_id != conn.principal.tenant_id or principal.user_id != conn.user_id:
                raise Forbidden("the frame's token is for another user than the session's")
        except EchonatsError as exc:
            await self._fail(sf.error_frame(exc.message, code=exc.code), _close_code(exc))
        self.token = token
        conn.expire_at(principal.expires_at)  # a refresh: the session now lives as long as this token

    async def _required(self, frame: Frame, name: str) -> str:
        value = frame.get(name)
        if not value:
            await self._protocol_error(f"{frame.command} needs a {name} header")
        return value

    async def _protocol_error(self, message: str, **headers: Any) -> NoReturn:
        await self._fail(sf.error_frame(message, **headers), CLOSE_PROTOCOL_ERROR)

    async def _fail(self, frame: str, code: int) -> NoReturn:
        """Send ``frame`` (an ERROR or a final RECEIPT), then close with ``code``. Never returns."""
        conn = self.conn
        if conn is None:  # before CONNECTED there is no hub connection yet: write directly
            with contextlib.suppress(Exception):
                await self.socket.send_text(frame)
                await self.socket.close(code)
            raise _Closing
        conn.offer(frame)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT_S):
                await conn.flushed()  # the frame is on its way before the close frame
        conn.close(code, "")
        raise _Closing

    async def _close_now(self, code: int, reason: str) -> None:
        if self.conn is not None:
            self.conn.close(code, reason)
        else:
            with contextlib.suppress(Exception):
                await self.socket.close(code, reason)

    async def _cleanup(self) -> None:
        if self.admitted is not None:
            self.realtime.release(self.admitted)
            self.admitted = None
        for task in list(self._dropping):
            await task
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        for subscription in self.subscriptions.values():
            await _drop(subscription.events)
        self.subscriptions.clear()
        conn = self.conn
        if conn is not None:
            await self.realtime.hub.detach(conn)
            await self.realtime.presence.disconnected(conn)
            await conn.stop()


def _message_text(frame: Frame) -> str:
    """A SEND's message text. EchoPulse sends ``JSON.stringify(text)`` without a content-type, so
    a body that is one JSON string (or any body sent as ``application/json``) is decoded; with
    ``text/plain`` (or another text type) the body is the text as it is."""
    try:
        text = frame.body.decode()
    except UnicodeDecodeError:
        raise ValidationFailed("the body must be UTF-8 text") from None
    content_type = (frame.get("content-type") or "").split(";")[0].strip().lower()
    looks_json = not content_type and len(text) >= 2 and text[0] == text[-1] == '"'
    if content_type == "application/json" or looks_json:
        try:
            decoded = _json_text.decode(text)
        except msgspec.DecodeError:
            if content_type:
                raise ValidationFailed("an application/json body must be one JSON string") from None
            return text  # quotes at both ends, but not JSON: the text itself
        return decoded
    return text


_json_text = msgspec.json.Decoder(str)


def _frame_token(frame: Frame) -> str | None:
    value = frame.get("Authorization") or frame.get("authorization")
    if not value:
        return None
    return bearer_token(value) or (value.strip() if " " not in value.strip() else None)


async def _drop(interest: Interest | None) -> None:
    if interest is not None:
        await interest.cancel()


def _announced(event: DomainEvent) -> bool:
    """Whether a subscriber of the tenant's destinations may see it: a channel event carries no
    member list, so only public channels' creation and deletion are announced."""
    match event:
        case ev.ChannelCreated(payload=channel) | ev.ChannelDeleted(payload=channel):
            return not channel.is_private
        case (
            ev.ChannelUpdated()
            | ev.ChannelMemberAdded()
            | ev.ChannelMemberRemoved()
            | ev.MemberJoined()
            | ev.MemberLeft()
            | ev.MemberRoleChanged()
            | ev.TenantLimitsUpdated()
        ):
            return True  # only members' joins and leaves have destinations (EVENT_DESTINATIONS)
        case (
            ev.DmOpened()
            | ev.ReadStateChanged()
            | ev.MessageMentioned()
            | ev.MemberStatusChanged()
            | ev.TenantDeleted()
        ):
            return False  # one user's or a DM's own, or no destination: never delivered
        case _:
            assert_never(event)
