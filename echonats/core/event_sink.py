"""Commit-then-publish: events collected in a transaction (outbox rows) go out after commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from echonats.core.pipeline_ports import PublishedOutbox
from echonats.core.ports import EventPublisher, Store, Transaction
from echonats.model import DomainEvent
from echonats.model.errors import EchonatsError

log = logging.getLogger(__name__)


class UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class EventSink:
    """Collects events inside a transaction (outbox rows) and publishes them after commit."""

    def __init__(self, store: Store, publisher: EventPublisher) -> None:
        self._store = store
        self._publisher = publisher

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[tuple[Transaction, list[DomainEvent]]]:
        pending: list[DomainEvent] = []
        async with self._store.transaction() as tx:
            yield tx, pending
            for item in pending:
                await tx.outbox.add(item)
        # Committed: now, and only now, tell the world. A failure here is not the caller's
        # failure: the outbox rows stay and the worker's relay publishes them later.
        await self.publish_committed(pending)

    async def publish_committed(self, events: Sequence[DomainEvent]) -> None:
        if not events:
            return
        try:
            await self._publisher.publish(events)
        except EchonatsError as exc:
            log.warning("event publish deferred to the outbox relay: %s", exc.message)
        except Exception:
            log.exception("event publish failed unexpectedly; deferred to the outbox relay")


class PublishThenForget:
    """An ``EventPublisher`` that drops the outbox rows of the events it got out, even when a later
    one fails: only what is left there is the relay's to republish."""

    def __init__(self, publisher: EventPublisher, outbox: PublishedOutbox) -> None:
        self._publisher = publisher
        self._outbox = outbox

    async def publish(self, events: Sequence[DomainEvent]) -> None:
        published: list[uuid.UUID] = []
        try:
            for event in events:
                await self._publisher.publish((event,))
                published.append(event.id)
        finally:
            if published:
                try:
                    await self._outbox.forget(published)
                except EchonatsError as exc:
                    # Harmless: the relay republishes them and the event stream drops the copies.
                    log.warning("outbox rows not deleted: %s", exc.message)
