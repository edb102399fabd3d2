"""Domain event publication on JetStream, deduplicated on the event id: the fast path after commit
(``publish``) and the outbox relay (``publish_stored``) send the same bytes to the same subject."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec
from nats.aio.client import Client as NatsClient

from echonats.adapters.nats import subjects
from echonats.adapters.nats.direct import DirectReader
from echonats.adapters.nats.errors import unavailable
from echonats.adapters.nats.streams import PUBLISH_TIMEOUT_S
from echonats.core.pipeline_ports import StoredEvent
from echonats.model import DomainEvent
from echonats.model.events import decode_event, encode_event


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


class JetStreamFeedLog:
    """``FeedLog`` over the events stream: batched direct gets by the tenant's subject filter."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self._direct = DirectReader(nc)

    async def read_feed(
        self, tenant_id: uuid.UUID, *, start: int, limit: int
    ) -> tuple[list[tuple[int, DomainEvent]], bool]:
        stored, more = await self._direct.batch(
            subjects.EVENTS_STREAM, subjects.tenant_event_subjects(tenant_id), start, limit
        )
        found: list[tuple[int, DomainEvent]] = []
        for record in stored:
            try:
                found.append((record.sequence, decode_event(record.data)))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # written by a newer version, say: not this socket's to see
        return found, more

    async def first_feed_position(self) -> int:
        with unavailable("JetStream"):
            info = await self._js.stream_info(subjects.EVENTS_STREAM)
        return int(info.state.first_seq)
