"""What every use case shares: the caller, the clock, and commit-then-publish of events."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from echonats.core.ports import EventPublisher, Store, Transaction
from echonats.errors import EchonatsError, Forbidden
from echonats.model import DomainEvent, Member, Principal, Role

log = logging.getLogger(__name__)


class UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated principal with an active membership in its tenant."""

    principal: Principal
    member: Member

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.member.tenant_id

    @property
    def user_id(self) -> str:
        return self.member.user_id

    @property
    def role(self) -> Role:
        return self.member.role

    def require_admin(self, action: str) -> None:
        if not self.role.can_administer:
            raise Forbidden(f"only workspace owners and admins may {action}")


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
