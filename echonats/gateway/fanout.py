"""Interest-based fanout: one live-feed interest per channel (and per tenant for presence) that has
at least one local socket; each message is encoded once and offered to every local socket.

Messages arrive from the stream's RePublish (``...live``) with their id and the previous id of the
same channel, so a missed republish (a reconnect to NATS, say) is detected and the gap is read back
from the stream before anything newer is delivered: every socket sees each message once, in order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from echonats import metrics
from echonats.core.access import ChannelAccess
from echonats.core.caller import Caller
from echonats.core.ports import Interest, LiveFeed, MessageLog, TypingNotice
from echonats.gateway.connection import Connection, SharedFrames
from echonats.model import Entry, PresenceChange
from echonats.model.errors import EchonatsError, NotFound

log = logging.getLogger(__name__)

ChannelKey = tuple[uuid.UUID, uuid.UUID]


@dataclass(eq=False, slots=True)
class _Waiting:
    """A socket registered on a channel that may not receive it live yet: its access is being
    decided (a subscribe, or a re-check after a revocation) or its replay is being read. Live
    messages wait in ``buffer``. ``revoked`` is set when a revocation for its user arrives meanwhile:
    the decision under way may rest on a read from before that revocation was committed, so it is
    taken again from the database before the socket goes live."""

    caller: Caller  # the membership the socket reads the channel under

    buffer: list[Entry] = field(default_factory=list)
    revoked: bool = False
    overflowed: bool = False  # more than the replay limit waited: the client must resync


@dataclass(eq=False, slots=True)
class _Channel:
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    sockets: set[Connection] = field(default_factory=set)  # live: every message goes to these
    waiting: dict[Connection, _Waiting] = field(default_factory=dict)
    interest: Interest | None = None
    # Done once the channel's interest is registered at the server (see _listen).
    listening: asyncio.Future[None] | None = None
    last_id: int | None = None

    @property
    def unused(self) -> bool:
        return not self.sockets and not self.waiting


@dataclass(eq=False, slots=True)
class _Tenant:
    sockets: set[Connection] = field(default_factory=set)
    interest: Interest | None = None


class Hub:
    def __init__(
        self, feed: LiveFeed, log_reader: MessageLog, access: ChannelAccess, *, replay_limit: int
    ) -> None:
        self._feed = feed
        self._log = log_reader
        self._access = access
        self._replay_limit = replay_limit
        self._channels: dict[ChannelKey, _Channel] = {}
        self._tenants: dict[uuid.UUID, _Tenant] = {}
        self._roaming: set[Connection] = set()  # sockets bound to no workspace (``Connection.home``)
        self._tasks: set[asyncio.Task[None]] = set()  # access re-checks after revocations

    # -- connections ---------------------------------------------------------------------------------
    async def attach(self, conn: Connection) -> None:
        metrics.ws_connections.inc()
        if conn.home is None:
            self._roaming.add(conn)  # no presence: it is not in one workspace
            return
        tenant = self._tenants.get(conn.tenant_id)
        if tenant is None:
            tenant = self._tenants[conn.tenant_id] = _Tenant()
            tenant.interest = await self._feed.watch_presence(conn.tenant_id, self._on_presence)
        tenant.sockets.add(conn)

    async def detach(self, conn: Connection) -> None:
        metrics.ws_connections.dec()
        for channel_id in list(conn.channels):
            await self.unsubscribe(conn, channel_id)
        if conn.home is None:
            self._roaming.discard(conn)
            return
        tenant = self._tenants.get(conn.tenant_id)
        if tenant is not None:
            tenant.sockets.discard(conn)
            if not tenant.sockets:
                del self._tenants[conn.tenant_id]
                await _cancel(tenant.interest)

    def connections_of(self, tenant_id: uuid.UUID, user_id: str | None = None) -> list[Connection]:
        """The sockets bound to the tenant (of ``user_id``, or every user's)."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            return []
        return [c for c in tenant.sockets if user_id is None or c.user_id == user_id]

    def receives(self, conn: Connection, channel_id: uuid.UUID) -> bool:
        """Whether ``conn`` is receiving the channel live (its access decided, not revoked)."""
        caller = conn.channels.get(channel_id)
        channel = self._channels.get((caller.tenant_id, channel_id)) if caller else None
        return channel is not None and conn in channel.sockets

    def subscribers(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> list[Connection]:
        channel = self._channels.get((tenant_id, channel_id))
        return [*channel.sockets, *channel.waiting] if channel else []

    async def catch_up(self) -> None:
        """After a NATS reconnect: deliver what was stored while republished messages could not
        reach us, for every channel with local subscribers, before anything newer."""
        for channel in list(self._channels.values()):
            if channel.last_id is not None:
                await self._repair_gap(channel, channel.last_id + 1, None)

    # -- subscribing ---------------------------------------------------------------------------------
    async def subscribe(
        self, conn: Connection, channel_id: uuid.UUID, since: int | None, caller: Caller | None = None
    ) -> None:
        """Start delivering a channel to ``conn`` if ``caller`` (default: the socket's) may read it
        (NotFound otherwise); with ``since``, first replay every later message.

        The socket is registered (deliveries wait) before access is decided, and goes live only
        after a decision that no revocation overtook: a removal that races with this subscribe
        either makes the check fail or reaches the registered socket (see revoke_member)."""
        if channel_id in conn.channels:
            conn.send_subscribed(channel_id)
            return
        caller = caller or conn.caller
        channel = await self._channel(caller.tenant_id, channel_id)
        waiting = channel.waiting[conn] = _Waiting(caller)
        conn.channels[channel_id] = caller
        announced = False
        try:
            if not await self._authorize(conn, channel, waiting, fresh=False):
                return  # unsubscribed (or the channel revoked) while deciding: that answer stands
            conn.send_subscribed(channel_id)
            announced = True
            replayed: list[Entry] | None = []
            if since is not None:
                replayed = await self._replay(channel, since)
                if waiting.revoked and not await self._authorize(conn, channel, waiting, fresh=True):
                    return
        except NotFound:
            if channel.waiting.get(conn) is not waiting:
                return
            if announced:  # revoked during the replay: end it the way live revocations end
                self._drop(channel, conn)
                await self._release_if_unused(channel)
                return
            await self.unsubscribe(conn, channel_id)
            raise
        except BaseException:
            if channel.waiting.get(conn) is waiting:
                await self.unsubscribe(conn, channel_id)
            raise
        # From here on nothing awaits: the decision above is still the latest one.
        if replayed is None:
            conn.send_resync_required(channel_id)
            delivered = channel.last_id or since or 0
        else:
            for message in replayed:
                conn.send_entry(message, {})
            delivered = replayed[-1].id if replayed else (since or 0)
        self._go_live(conn, channel, waiting, delivered)

    async def _authorize(
        self, conn: Connection, channel: _Channel, waiting: _Waiting, *, fresh: bool
    ) -> bool:
        """Decide access until no revocation arrives during the decision. False when the socket
        stopped waiting meanwhile (unsubscribed, closed, or the channel was deleted)."""
        while True:
            waiting.revoked = False
            await self._access.readable(waiting.caller, channel.channel_id, fresh=fresh)
            if channel.waiting.get(conn) is not waiting:
                return False
            if not waiting.revoked:
                return True
            fresh = True  # the first answer may predate the revocation: ask what is committed now

    def _go_live(self, conn: Connection, channel: _Channel, waiting: _Waiting, delivered: int) -> None:
        del channel.waiting[conn]
        if waiting.overflowed:
            conn.send_resync_required(channel.channel_id)
        else:
            for message in waiting.buffer:
                if message.id > delivered:
                    conn.send_entry(message, {})
        channel.sockets.add(conn)

    async def _replay(self, channel: _Channel, since: int) -> list[Entry] | None:
        """Every message after ``since``, or None if a resync is needed."""
        if since + 1 < await self._log.first_sequence():
            return None  # older messages were aged out of the stream: refetch history instead
        messages, more = await self._log.read_channel(
            channel.tenant_id, channel.channel_id, start=since + 1, limit=self._replay_limit
        )
        return None if more else messages

    async def unsubscribe(self, conn: Connection, channel_id: uuid.UUID) -> None:
        caller = conn.channels.pop(channel_id, None)
        channel = self._channels.get((caller.tenant_id, channel_id)) if caller else None
        if channel is None:
            return
        channel.sockets.discard(conn)
        channel.waiting.pop(conn, None)
        await self._release_if_unused(channel)

    # -- revocations (called from the event listener; synchronous so nothing is delivered after) ----
    def revoke_channel(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> None:
        """The channel is gone: no local socket receives anything more of it."""
        channel = self._channels.get((tenant_id, channel_id))
        if channel is None:
            return
        for conn in [*channel.sockets, *channel.waiting]:
            self._drop(channel, conn)
        self._spawn(self._release_if_unused(channel))

    def revoke_member(self, tenant_id: uuid.UUID, channel_id: uuid.UUID, user_id: str) -> None:
        """``user_id`` may have lost the channel: their sockets' deliveries stop at once and resume
        only if the database says they may still read it (a public channel, say)."""
        channel = self._channels.get((tenant_id, channel_id))
        if channel is None:
            return
        for conn, waiting in channel.waiting.items():
            if conn.user_id == user_id:
                waiting.revoked = True  # whoever is deciding for it decides again
        for conn in [c for c in channel.sockets if c.user_id == user_id]:
            channel.sockets.discard(conn)
            held = channel.waiting[conn] = _Waiting(conn.channels[channel_id], revoked=True)
            self._spawn(self._recheck(conn, channel, held))

    def revoke_tenant(self, tenant_id: uuid.UUID, user_id: str | None) -> None:
        """``user_id`` (None: everybody) is no longer in the tenant: sockets bound to it are closed
        by the caller; sockets across workspaces lose its channels and are told (``on_tenant_lost``)."""
        for conn in [c for c in self._roaming if user_id is None or c.user_id == user_id]:
            for channel_id, caller in list(conn.channels.items()):
                channel = self._channels.get((tenant_id, channel_id))
                if caller.tenant_id == tenant_id and channel is not None:
                    self._drop(channel, conn)
                    self._spawn(self._release_if_unused(channel))
            if conn.on_tenant_lost is not None:
                conn.on_tenant_lost(tenant_id)

    async def _recheck(self, conn: Connection, channel: _Channel, waiting: _Waiting) -> None:
        try:
            if await self._authorize(conn, channel, waiting, fresh=True):
                self._go_live(conn, channel, waiting, delivered=0)
            return
        except NotFound:
            pass
        except EchonatsError as exc:
            # Fail closed: a client told `unsubscribed` can subscribe again, which checks access.
            log.warning("could not re-check access after a removal: %s", exc.message)
        if channel.waiting.get(conn) is waiting:
            self._drop(channel, conn)
            await self._release_if_unused(channel)

    def _drop(self, channel: _Channel, conn: Connection) -> None:
        channel.sockets.discard(conn)
        channel.waiting.pop(conn, None)
        conn.channels.pop(channel.channel_id, None)
        conn.send_unsubscribed(channel.channel_id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- channel interest ----------------------------------------------------------------------------
    async def _channel(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> _Channel:
        """The channel's entry, once its NATS interest is registered at the server: a replay must
        not read the stream before, or a message stored in between would be neither replayed nor
        delivered live. Concurrent subscribers wait for the same registration."""
        key = (tenant_id, channel_id)
        while True:
            channel = self._channels.get(key)
            if channel is None:
                channel = self._channels[key] = _Channel(tenant_id, channel_id)
                channel.listening = asyncio.ensure_future(self._listen(channel))
            assert channel.listening is not None
            try:
                await asyncio.shield(channel.listening)
            except BaseException:
                if self._channels.get(key) is channel and channel.unused:
                    del self._channels[key]
                raise
            if self._channels.get(key) is channel:
                return channel
            # released while we waited (its last socket left): register interest anew

    async def _listen(self, channel: _Channel) -> None:
        key = (channel.tenant_id, channel.channel_id)
        # Partials, not wrapper coroutines: one coroutine per delivered message, not two.
        on_message = functools.partial(self._on_live, channel)
        on_typing = functools.partial(self._on_typing, channel)
        try:
            channel.interest = await self._feed.watch_channel(
                channel.tenant_id, channel.channel_id, on_message, on_typing
            )
        except BaseException:
            if self._channels.get(key) is channel:
                del self._channels[key]
            raise
        if self._channels.get(key) is not channel:
            # Every subscriber gave up while we registered (their sockets closed): nobody releases it.
            await _cancel(channel.interest)

    async def _release_if_unused(self, channel: _Channel) -> None:
        key = (channel.tenant_id, channel.channel_id)
        if not channel.unused or self._channels.get(key) is not channel:
            return
        if channel.listening is not None and not channel.listening.done():
            return  # its subscriber is still waiting for the interest; it releases the channel itself
        del self._channels[key]
        await _cancel(channel.interest)

    # -- live feed callbacks ------------------------------------------------------------------------
    async def _on_live(self, channel: _Channel, message: Entry, previous_id: int) -> None:
        started = time.perf_counter()
        if channel.last_id is not None:
            if message.id <= channel.last_id:
                return  # already delivered (read back during a gap repair)
            if previous_id > channel.last_id:
                await self._repair_gap(channel, channel.last_id + 1, message.id)
                if message.id <= (channel.last_id or 0):
                    return  # a concurrent repair (a reconnect's catch-up) delivered it meanwhile
        self._deliver(channel, message)
        metrics.fanout_processed.inc()
        metrics.fanout_seconds.observe(time.perf_counter() - started)

    async def _repair_gap(self, channel: _Channel, start: int, stop: int | None) -> None:
        try:
            missed, _ = await self._log.read_channel(
                channel.tenant_id, channel.channel_id, start=start, limit=self._replay_limit
            )
        except EchonatsError as exc:
            log.warning("could not repair a gap in %s: %r", channel.channel_id, exc)
            return
        for message in missed:
            # Live delivery may have moved on while we read: never deliver anything twice.
            if (stop is None or message.id < stop) and message.id > (channel.last_id or 0):
                metrics.gaps_repaired.inc()
                self._deliver(channel, message)

    def _deliver(self, channel: _Channel, message: Entry) -> None:
        shared: SharedFrames = {}  # each protocol's frame is encoded once, however many sockets
        channel.last_id = message.id
        for conn in channel.sockets:
            conn.send_entry(message, shared)
        for waiting in channel.waiting.values():
            if len(waiting.buffer) < self._replay_limit:
                waiting.buffer.append(message)
            else:
                waiting.overflowed = True
        metrics.broadcast_total.inc(len(channel.sockets))

    def _on_typing(self, channel: _Channel, notice: TypingNotice) -> None:
        shared: SharedFrames = {}
        for conn in channel.sockets:
            if conn.user_id != notice.user_id:  # not echoed to the typist
                conn.send_typing(channel.channel_id, notice.user_id, notice.display_name, shared)

    def _on_presence(self, change: PresenceChange) -> None:
        tenant = self._tenants.get(change.tenant_id)
        if tenant is None:
            return
        shared: SharedFrames = {}
        for conn in tenant.sockets:
            conn.send_presence(change.user_id, change.status, shared)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for channel in list(self._channels.values()):
            await _cancel(channel.interest)
        for tenant in list(self._tenants.values()):
            await _cancel(tenant.interest)
        self._channels.clear()
        self._tenants.clear()


async def _cancel(interest: Interest | None) -> None:
    if interest is not None:
        await interest.cancel()
