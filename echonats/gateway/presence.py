"""Gateway side of presence: reports its sockets to the presence store and heartbeats them.

One Redis round trip per connect/disconnect and one pipelined heartbeat per interval for all of
this gateway's sockets; never per message. If this gateway dies, its sockets' heartbeats lapse and
the worker's sweeper turns their users offline within the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from echonats.core.ports import ConnectionBeat, PresencePublisher, PresenceStore
from echonats.gateway.connection import Connection
from echonats.model import PresenceChange
from echonats.model.errors import Unavailable

log = logging.getLogger(__name__)


class PresenceTracker:
    def __init__(self, store: PresenceStore, publisher: PresencePublisher, *, heartbeat_s: float) -> None:
        self.store = store
        self._publisher = publisher
        self._heartbeat_s = heartbeat_s
        self._connections: set[Connection] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeats(), name="presence-heartbeats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def connected(self, conn: Connection) -> None:
        if conn.home is None:
            return  # a socket across workspaces (STOMP) is online in none of them in particular
        self._connections.add(conn)
        try:
            change = await self.store.connect(_beat(conn))
        except Unavailable as exc:
            log.warning("presence not updated: %s", exc.message)  # best effort: chat goes on
            return
        await self._publish([change] if change else [])

    async def disconnected(self, conn: Connection) -> None:
        if conn.home is None:
            return
        self._connections.discard(conn)
        try:
            change = await self.store.disconnect(conn.tenant_id, conn.user_id, conn.id)
        except Unavailable as exc:
            log.warning("presence not updated: %s", exc.message)
            return
        await self._publish([change] if change else [])

    async def _publish(self, changes: list[PresenceChange]) -> None:
        for change in changes:
            try:
                await self._publisher.publish_presence(change)
            except Unavailable as exc:
                log.warning("presence change not published: %s", exc.message)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)  # the heartbeat period itself, not a synchronisation
            if not self._connections:
                continue
            try:
                changes = await self.store.heartbeat([_beat(c) for c in self._connections])
            except Unavailable as exc:
                log.warning("presence heartbeat failed: %s", exc.message)
                continue
            await self._publish(changes)


def _beat(conn: Connection) -> ConnectionBeat:
    return ConnectionBeat(conn.tenant_id, conn.user_id, conn.id, conn.last_active)
