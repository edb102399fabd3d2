"""The event_outbox table, every statement on it: rows added in the use case's transaction, rows
claimed by the relay (SKIP LOCKED, so several relays share the work), rows dropped once published."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg

from echonats.adapters.postgres.connection import Conn
from echonats.adapters.postgres.errors import pipeline_error, translated
from echonats.core.pipeline_ports import StoredEvent
from echonats.model import DomainEvent
from echonats.model.events import encode_event

_DUE = (
    "SELECT id, tenant_id, type, payload FROM event_outbox "
    "WHERE created_at < now() - $1::interval ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED"
)
_DELETE = "DELETE FROM event_outbox WHERE id = ANY($1::uuid[])"


class OutboxWriter:
    """The ``Outbox`` of a store transaction: the event's row commits (or not) with the change."""

    def __init__(self, conn: Conn) -> None:
        self._c = conn

    async def add(self, event: DomainEvent) -> None:
        await self._c.execute(
            "INSERT INTO event_outbox (id, tenant_id, type, payload) VALUES ($1, $2, $3, $4)",
            event.id,
            event.tenant_id,
            event.type,
            encode_event(event),
        )


class PostgresOutbox:
    """The relay's side (``OutboxRelayStore``) and the fast path's cleanup (``PublishedOutbox``)."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    @asynccontextmanager
    async def claim_due(self, grace: timedelta, limit: int) -> AsyncIterator[list[StoredEvent]]:
        # The rows stay locked while the caller publishes them; a failure rolls the claim back.
        with translated(pipeline_error):
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(_DUE, grace, limit)
                due = [StoredEvent(r["id"], r["tenant_id"], r["type"], r["payload"]) for r in rows]
                yield due
                if due:
                    await conn.execute(_DELETE, [e.id for e in due])

    async def forget(self, event_ids: Sequence[uuid.UUID]) -> None:
        with translated(pipeline_error):
            await self._pool.execute(_DELETE, list(event_ids))
