"""The per-user live feed: what happens in a tenant that concerns a socket's user (added to or
removed from a channel, public channels created/renamed/deleted, DMs opened, read state, mentions).

One interest per tenant with local sockets follows the tenant's domain events as the event stream
republishes them, with their position (``feedId``); each event is rendered once and offered to the
sockets it concerns (``feed_frames.audience``). A socket that reconnects asks for what it missed
with ``{"type":"feed","since":<feedId>}``: live frames wait while the stream is read back, so it gets
each once, in order; more than the replay limit, or older than the stream keeps, gets
``feed_resync_required`` instead.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from echonats.core.ports import FeedLog, Interest, LiveFeed
from echonats.gateway import feed_frames as ff
from echonats.gateway.connection import Connection
from echonats.gateway.protocol import encode
from echonats.gateway.ws_framing import text_frame
from echonats.model import DomainEvent

log = logging.getLogger(__name__)

_RESYNC = encode(ff.FeedResyncRequired())


@dataclass(eq=False, slots=True)
class _Socket:
    conn: Connection
    last_id: int = 0  # the last feed id delivered
    replaying: bool = False
    held: list[tuple[int, bytes]] = field(default_factory=list)  # live frames during a replay


@dataclass(eq=False, slots=True)
class _Tenant:
    sockets: dict[Connection, _Socket] = field(default_factory=dict)
    interest: Interest | None = None


class FeedRouter:
    def __init__(
        self,
        feed: LiveFeed,
        events: FeedLog,
        *,
        replay_limit: int,
        receives: Callable[[Connection, uuid.UUID], bool],
    ) -> None:
        self._feed = feed
        self._events = events
        self._replay_limit = replay_limit
        # Whether a socket is receiving a channel (live, access checked): who hears of a private
        # channel's rename or deletion besides whoever did it.
        self._receives = receives
        self._tenants: dict[uuid.UUID, _Tenant] = {}

    async def attach(self, conn: Connection) -> None:
        tenant = self._tenants.get(conn.tenant_id)
        if tenant is None:
            tenant = self._tenants[conn.tenant_id] = _Tenant()
            tenant_id = conn.tenant_id
            try:
                tenant.interest = await self._feed.watch_feed(
                    tenant_id, lambda event, position: self._on_event(tenant_id, event, position)
                )
            except BaseException:
                if self._tenants.get(tenant_id) is tenant and not tenant.sockets:
                    del self._tenants[tenant_id]
                raise
        tenant.sockets[conn] = _Socket(conn)

    async def detach(self, conn: Connection) -> None:
        tenant = self._tenants.get(conn.tenant_id)
        if tenant is None:
            return
        tenant.sockets.pop(conn, None)
        if not tenant.sockets:
            del self._tenants[conn.tenant_id]
            if tenant.interest is not None:
                await tenant.interest.cancel()

    def _on_event(self, tenant_id: uuid.UUID, event: DomainEvent, position: int) -> None:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            return
        frame: bytes | None = None
        for socket in tenant.sockets.values():
            if not ff.audience(event, socket.conn.user_id, functools.partial(self._receives, socket.conn)):
                continue
            if frame is None:
                rendered = ff.render(event, position)
                if rendered is None:
                    return
                frame = text_frame(rendered)
            if socket.replaying:
                socket.held.append((position, frame))
            elif position > socket.last_id:
                socket.last_id = position
                socket.conn.offer_frame(frame)

    async def resume(self, conn: Connection, since: int) -> None:
        """Replay what ``conn`` missed after ``since``, then go on live (``Unavailable`` if the
        event log cannot be read: the socket stays live, the client may ask again)."""
        tenant = self._tenants.get(conn.tenant_id)
        socket = tenant.sockets.get(conn) if tenant is not None else None
        if socket is None or socket.replaying:
            return
        socket.replaying = True
        try:
            replayed = await self._replay(conn, since)
        finally:
            socket.replaying = False
        if replayed is None:
            conn.offer(_RESYNC)
            socket.last_id = max(socket.last_id, since)
        else:
            for position, frame in replayed:
                if position > socket.last_id:
                    socket.last_id = position
                    conn.offer_frame(frame)
        held, socket.held = socket.held, []
        for position, frame in held:
            if position > socket.last_id:
                socket.last_id = position
                conn.offer_frame(frame)

    async def _replay(self, conn: Connection, since: int) -> list[tuple[int, bytes]] | None:
        if since + 1 < await self._events.first_feed_position():
            return None  # older events are gone
        events, more = await self._events.read_feed(conn.tenant_id, start=since + 1, limit=self._replay_limit)
        if more:
            return None
        frames: list[tuple[int, bytes]] = []
        for position, event in events:
            if ff.audience(event, conn.user_id, functools.partial(self._receives, conn)):
                rendered = ff.render(event, position)
                if rendered is not None:
                    frames.append((position, text_frame(rendered)))
        return frames

    async def close(self) -> None:
        for tenant in list(self._tenants.values()):
            if tenant.interest is not None:
                await tenant.interest.cancel()
        self._tenants.clear()
