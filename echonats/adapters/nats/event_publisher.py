"""Domain event publication on JetStream, deduplicated on the event id: the fast path after commit
(``publish``) and the outbox relay (``publish_stored``) send the same bytes to the same subject."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from nats.aio.client import Client as NatsClient

from echonats.adapters.nats import subjects
from echonats.adapters.nats.errors import unavailable
from echonats.adapters.nats.streams import PUBLISH_TIMEOUT_S
from echonats.core.pipeline_ports import StoredEvent
from echonats.model import DomainEvent
from echonats.model.events import encode_event


class JetStreamEventPublisher:
    """``EventPublisher`` and ``StoredEventPublisher``. Publishes only: the outbox rows are the
    store's to drop (``core.event_sink.PublishThenForget``, the relay's claim)."""

    def __init__(self, nc: NatsClient) -> None:
        self._js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)

    async def publish(self, events: Sequence[DomainEvent]) -> None:
        with unavailable("events not published yet"):
            for event in events:
                await self._send(event.id, event.tenant_id, event.type, encode_event(event))

    async def publish_stored(self, events: Sequence[StoredEvent]) -> None:
        with unavailable("outbox events not published yet"):
            for event in events:
                await self._send(event.id, event.tenant_id, event.type, event.payload)

    async def _send(self, event_id: uuid.UUID, tenant_id: uuid.UUID, event_type: str, payload: bytes) -> None:
        await self._js.publish(
            subjects.event_subject(tenant_id, event_type),
            payload,
            timeout=PUBLISH_TIMEOUT_S,
            stream=subjects.EVENTS_STREAM,
            headers={"Nats-Msg-Id": str(event_id)},
        )
