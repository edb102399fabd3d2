"""Ports of the worker's pipelines: the persist loop's stream and sink, the outbox relay's store and
publisher. Adapters implement them (``adapters/nats/persist_stream.py``, ``adapters/postgres/``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from echonats.model import DomainEvent, Entry


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    """How far a durable stream consumer is behind: not yet delivered, and delivered but unacked."""

    pending: int
    ack_pending: int


class StoredMessageDelivery(Protocol):
    """One message the message log delivered to the persist pipeline, to be settled exactly once."""

    # The decoded entry (its id is its position in the log), or None when the payload cannot be
    # decoded; then ``undecodable_reason`` says why.
    entry: Entry | None
    undecodable_reason: str
    position: int

    @property
    def attempts(self) -> int:
        """Deliveries so far, this one included."""
        ...

    async def ack(self) -> None:
        """Stored: never deliver it again. ``Unavailable`` if the log cannot take the ack."""
        ...

    async def retry_later(self, delay_s: float) -> None:
        """Deliver it again after ``delay_s`` (an outage, not the message's fault)."""
        ...

    async def dead_letter(self, reason: str, detail: str) -> bool:
        """Set it aside with the reason, then never deliver it again. False (logged) when the dead
        letter could not be written: the message then comes back later."""
        ...


class MessageStream(Protocol):
    """The message log as the persist pipeline consumes it: one durable consumer shared by every worker."""

    name: str  # the consumer's name, for the lag metrics' label

    async def bind(self) -> None:
        """Create the durable consumer if missing and attach to it. ``Unavailable`` if the log is not
        reachable; binding again after a failure starts afresh."""
        ...

    async def fetch(self, max_messages: int, timeout_s: float) -> Sequence[StoredMessageDelivery]:
        """Up to ``max_messages``; empty when none came within ``timeout_s``. ``Unavailable`` on failure."""
        ...

    async def pending(self) -> ConsumerLag:
        """The consumer's lag (one round trip: call it every few seconds, not per batch)."""
        ...

    async def close(self) -> None:
        """Detach (best effort, never raises): a live pull subscription would stall shutdown."""
        ...


class PersistSink(Protocol):
    async def write(self, entries: Sequence[Entry]) -> Sequence[DomainEvent]:
        """Store these messages and apply these changes, in their order, idempotently by id (a
        replayed entry changes nothing), in one commit; entries of deleted channels are dropped.
        Returns the events committed with them (outbox rows: mentions), for publishing.
        ``TargetMissing`` when a change's message is not stored (yet), ``StorageRejected`` when the
        schema refuses a row (either way nothing of this call is stored), ``Unavailable`` when the
        store is out of reach."""
        ...


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A committed domain event as its outbox row holds it; ``payload`` is the event already encoded
    at commit time, published verbatim (so both publication paths send the same bytes)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    payload: bytes


class OutboxRelayStore(Protocol):
    def claim_due(self, grace: timedelta, limit: int) -> AbstractAsyncContextManager[list[StoredEvent]]:
        """Outbox rows older than ``grace`` (younger ones are left to publish-after-commit), oldest
        first, locked for the block and skipped by other relays while locked. They are removed when
        the block exits normally and stay when it raises. ``Unavailable`` on failure."""
        ...


class StoredEventPublisher(Protocol):
    async def publish_stored(self, events: Sequence[StoredEvent]) -> None:
        """Publish in order, deduplicated on the event id downstream. ``Unavailable`` on failure."""
        ...


class PublishedOutbox(Protocol):
    async def forget(self, event_ids: Sequence[uuid.UUID]) -> None:
        """Drop the outbox rows of events already published. ``EchonatsError`` on failure (harmless:
        the relay republishes them and downstream deduplication drops the copies)."""
        ...
