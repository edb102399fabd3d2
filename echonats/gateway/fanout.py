"""Interest-based fanout: one NATS subscription per channel (and per tenant for presence) that has
at least one local socket; each message is encoded once and offered to every local socket.

Messages arrive from the stream's RePublish (``...live``) with their id and the previous id of the
same channel, so a missed republish (a reconnect to NATS, say) is detected and the gap is read back
from the stream before anything newer is delivered: every socket sees each message once, in order.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter, Gauge, Histogram

from echonats.adapters import subjects
from echonats.adapters.jetstream import NATS_ERRORS, JetStreamMessageLog
from echonats.adapters.records import message_decoder, typing_decoder
from echonats.errors import EchonatsError
from echonats.gateway.connection import Connection, SharedFrames
from echonats.model import Message
from echonats.workers.presence import presence_decoder

log = logging.getLogger(__name__)

ws_connections = Gauge("echostream_websocket_connections", "Open WebSocket connections")
broadcast_total = Counter("echostream_websocket_messages_broadcast_total", "Frames offered to local sockets")
fanout_processed = Counter(
    "echostream_fanout_messages_processed_total", "Messages fanned out by this gateway"
)
fanout_seconds = Histogram(
    "echostream_fanout_processing_time_seconds",
    "Time to fan one message out to local sockets",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
gaps_repaired = Counter(
    "echonats_fanout_gaps_repaired_total", "Messages read back from the stream after a gap"
)

ChannelKey = tuple[uuid.UUID, uuid.UUID]


@dataclass(eq=False, slots=True)
class _Channel:
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    sockets: set[Connection] = field(default_factory=set)
    # Sockets replaying history (`since`): live messages wait here until their replay is done.
    replaying: dict[Connection, list[Message]] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)
    last_id: int | None = None


@dataclass(eq=False, slots=True)
class _Tenant:
    sockets: set[Connection] = field(default_factory=set)
    subscription: Subscription | None = None


class Hub:
    def __init__(self, nc: NatsClient, log_reader: JetStreamMessageLog, *, replay_limit: int) -> None:
        self._nc = nc
        self._log = log_reader
        self._replay_limit = replay_limit
        self._channels: dict[ChannelKey, _Channel] = {}
        self._tenants: dict[uuid.UUID, _Tenant] = {}

    # -- connections ---------------------------------------------------------------------------------
    async def attach(self, conn: Connection) -> None:
        ws_connections.inc()
        tenant = self._tenants.get(conn.tenant_id)
        if tenant is None:
            tenant = self._tenants[conn.tenant_id] = _Tenant()
            tenant.subscription = await self._nc.subscribe(
                f"{subjects.ROOT}.{conn.tenant_id}.presence.*", cb=self._on_presence
            )
        tenant.sockets.add(conn)

    async def detach(self, conn: Connection) -> None:
        ws_connections.dec()
        for channel_id in list(conn.channels):
            await self.unsubscribe(conn, channel_id)
        tenant = self._tenants.get(conn.tenant_id)
        if tenant is not None:
            tenant.sockets.discard(conn)
            if not tenant.sockets:
                del self._tenants[conn.tenant_id]
                await _unsubscribe(tenant.subscription)

    def connections_of(self, tenant_id: uuid.UUID, user_id: str) -> list[Connection]:
        tenant = self._tenants.get(tenant_id)
        return [c for c in tenant.sockets if c.user_id == user_id] if tenant else []

    def subscribers(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> list[Connection]:
        channel = self._channels.get((tenant_id, channel_id))
        return [*channel.sockets, *channel.replaying] if channel else []

    async def catch_up(self) -> None:
        """After a NATS reconnect: deliver what was stored while republished messages could not
        reach us, for every channel with local subscribers, before anything newer."""
        for channel in list(self._channels.values()):
            if channel.last_id is not None:
                await self._repair_gap(channel, channel.last_id + 1, None)

    # -- channels ------------------------------------------------------------------------------------
    async def subscribe(self, conn: Connection, channel_id: uuid.UUID, since: int | None) -> None:
        """Start delivering a channel to ``conn``; with ``since``, first replay every later message."""
        if channel_id in conn.channels:
            conn.send_subscribed(channel_id)
            return
        channel = await self._channel(conn.tenant_id, channel_id)
        conn.channels.add(channel_id)
        if since is None:
            channel.sockets.add(conn)
            conn.send_subscribed(channel_id)
            return
        channel.replaying[conn] = []
        try:
            conn.send_subscribed(channel_id)
            delivered = await self._replay(conn, channel, since)
        finally:
            buffered = channel.replaying.pop(conn, [])
        if delivered is None:
            conn.send_resync_required(channel_id)
            delivered = channel.last_id or since
        for message in buffered:
            if message.id > delivered:
                conn.send_message(message, {})
        if channel_id in conn.channels:  # not unsubscribed meanwhile
            channel.sockets.add(conn)

    async def _replay(self, conn: Connection, channel: _Channel, since: int) -> int | None:
        """Offer every message after ``since``; the last id offered, or None if a resync is needed."""
        if since + 1 < await self._log.first_sequence():
            return None  # older messages were aged out of the stream: refetch history instead
        messages, more = await self._log.read_channel(
            channel.tenant_id, channel.channel_id, start=since + 1, limit=self._replay_limit
        )
        if more:
            return None
        last = since
        for message in messages:
            conn.send_message(message, {})
            last = message.id
        return last

    async def unsubscribe(self, conn: Connection, channel_id: uuid.UUID) -> None:
        conn.channels.discard(channel_id)
        key = (conn.tenant_id, channel_id)
        channel = self._channels.get(key)
        if channel is None:
            return
        channel.sockets.discard(conn)
        channel.replaying.pop(conn, None)
        if not channel.sockets and not channel.replaying:
            del self._channels[key]
            for subscription in channel.subscriptions:
                await _unsubscribe(subscription)

    async def _channel(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> _Channel:
        key = (tenant_id, channel_id)
        channel = self._channels.get(key)
        if channel is not None:
            return channel
        channel = self._channels[key] = _Channel(tenant_id, channel_id)

        async def on_live(msg: Msg) -> None:
            await self._on_live(channel, msg)

        async def on_typing(msg: Msg) -> None:
            self._on_typing(channel, msg)

        channel.subscriptions = [
            await self._nc.subscribe(subjects.live_subject(tenant_id, channel_id), cb=on_live),
            await self._nc.subscribe(subjects.typing_subject(tenant_id, channel_id), cb=on_typing),
        ]
        # Interest must be registered at the server before a replay reads the stream, or a message
        # stored in between would be neither replayed nor delivered live.
        await self._nc.flush()
        return channel

    # -- NATS callbacks ------------------------------------------------------------------------------
    async def _on_live(self, channel: _Channel, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            headers = msg.headers or {}
            message_id = int(headers["Nats-Sequence"])
            previous = int(headers.get("Nats-Last-Sequence", "0"))
            message = message_decoder.decode(msg.data).to_message(message_id)
        except (KeyError, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("dropped an undecodable live message on %s: %s", msg.subject, exc)
            return
        if channel.last_id is not None:
            if message_id <= channel.last_id:
                return  # already delivered (read back during a gap repair)
            if previous > channel.last_id:
                await self._repair_gap(channel, channel.last_id + 1, message_id)
        self._deliver(channel, message)
        fanout_processed.inc()
        fanout_seconds.observe(time.perf_counter() - started)

    async def _repair_gap(self, channel: _Channel, start: int, stop: int | None) -> None:
        try:
            missed, _ = await self._log.read_channel(
                channel.tenant_id, channel.channel_id, start=start, limit=self._replay_limit
            )
        except (EchonatsError, *NATS_ERRORS) as exc:
            log.warning("could not repair a gap in %s: %r", channel.channel_id, exc)
            return
        for message in missed:
            # Live delivery may have moved on while we read: never deliver anything twice.
            if (stop is None or message.id < stop) and message.id > (channel.last_id or 0):
                gaps_repaired.inc()
                self._deliver(channel, message)

    def _deliver(self, channel: _Channel, message: Message) -> None:
        shared: SharedFrames = {}  # each protocol's frame is encoded once, however many sockets
        channel.last_id = message.id
        for conn in channel.sockets:
            conn.send_message(message, shared)
        for buffer in channel.replaying.values():
            buffer.append(message)
        broadcast_total.inc(len(channel.sockets))

    def _on_typing(self, channel: _Channel, msg: Msg) -> None:
        try:
            record = typing_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        shared: SharedFrames = {}
        for conn in channel.sockets:
            if conn.user_id != record.user_id:  # not echoed to the typist
                conn.send_typing(channel.channel_id, record.user_id, record.display_name, shared)

    async def _on_presence(self, msg: Msg) -> None:
        try:
            record = presence_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        tenant = self._tenants.get(record.tenant_id)
        if tenant is None:
            return
        shared: SharedFrames = {}
        for conn in tenant.sockets:
            conn.send_presence(record.user_id, record.status, shared)

    async def close(self) -> None:
        for channel in list(self._channels.values()):
            for subscription in channel.subscriptions:
                await _unsubscribe(subscription)
        for tenant in list(self._tenants.values()):
            await _unsubscribe(tenant.subscription)
        self._channels.clear()
        self._tenants.clear()


async def _unsubscribe(subscription: Subscription | None) -> None:
    if subscription is None:
        return
    try:
        await subscription.unsubscribe()
    except NATS_ERRORS:
        log.debug("unsubscribe failed (connection closing)")
