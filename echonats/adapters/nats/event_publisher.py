"""Domain event publication on JetStream (deduped on the event id), then the outbox rows go."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import asyncpg
from nats.aio.client import Client as NatsClient

from echonats.adapters.nats import subjects
from echonats.adapters.nats.errors import NATS_ERRORS
from echonats.adapters.nats.records import encode_event
from echonats.adapters.nats.streams import PUBLISH_TIMEOUT_S
from echonats.model import DomainEvent
from echonats.model.errors import Unavailable

log = logging.getLogger(__name__)


class JetStreamEventPublisher:
    """Publishes committed events (JetStream dedupes on the event id), then drops their outbox rows."""

    def __init__(self, nc: NatsClient, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self._pool = pool

    async def publish(self, events: Sequence[DomainEvent]) -> None:
        published: list[uuid.UUID] = []
        try:
            for event in events:
                await self._js.publish(
                    subjects.event_subject(event.tenant_id, event.type),
                    encode_event(event),
                    timeout=PUBLISH_TIMEOUT_S,
                    stream=subjects.EVENTS_STREAM,
                    headers={"Nats-Msg-Id": str(event.id)},
                )
                published.append(event.id)
        except NATS_ERRORS as exc:
            raise Unavailable(f"events not published yet: {exc!r}") from exc
        finally:
            if published:
                try:
                    await self._pool.execute("DELETE FROM event_outbox WHERE id = ANY($1::uuid[])", published)
                except (OSError, asyncpg.PostgresError) as exc:
                    # Harmless: the relay republishes them and JetStream drops the duplicates.
                    log.warning("outbox rows not deleted: %r", exc)
