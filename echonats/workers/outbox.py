"""Outbox relay: publishes domain events whose fast-path publication after commit did not happen
(gateway crashed between commit and publish, or NATS was down). JetStream dedupes on the event id,
so an event published by both paths is stored once."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import asyncpg
from nats.aio.client import Client as NatsClient

from echonats import metrics
from echonats.adapters.nats import subjects
from echonats.adapters.nats.errors import NATS_ERRORS
from echonats.adapters.nats.streams import PUBLISH_TIMEOUT_S

log = logging.getLogger(__name__)

# Rows younger than this are left to the gateway's own publish-after-commit.
GRACE = timedelta(seconds=5)
INTERVAL_S = 2.0
BATCH = 200


class OutboxRelay:
    def __init__(self, nc: NatsClient, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self._pool = pool

    async def relay_once(self, grace: timedelta = GRACE) -> int:
        """Publish and delete due rows; several relays may run (SKIP LOCKED). Returns rows relayed."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, tenant_id, type, payload FROM event_outbox "
                "WHERE created_at < now() - $1::interval ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                grace,
                BATCH,
            )
            for row in rows:
                await self._js.publish(
                    subjects.event_subject(row["tenant_id"], row["type"]),
                    row["payload"],
                    timeout=PUBLISH_TIMEOUT_S,
                    stream=subjects.EVENTS_STREAM,
                    headers={"Nats-Msg-Id": str(row["id"])},
                )
            if rows:
                await conn.execute(
                    "DELETE FROM event_outbox WHERE id = ANY($1::uuid[])", [r["id"] for r in rows]
                )
        metrics.outbox_relayed.inc(len(rows))
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                relayed = await self.relay_once()
                if relayed:
                    log.info("outbox relay published %d deferred events", relayed)
            except (*NATS_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("outbox relay failed, will retry: %r", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=INTERVAL_S)
            except TimeoutError:
                continue
