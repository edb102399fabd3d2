"""Fakes of the worker pipelines' ports (``core/pipeline_ports.py``): scripted deliveries that record
how they were settled, an idempotent sink, the outbox relay's rows and publisher."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from echonats.core.pipeline_ports import ConsumerLag, StoredEvent
from echonats.model import Entry, Message
from echonats.model.errors import EchonatsError, StorageRejected, Unavailable
from tests.unit.fakes import EPOCH

# -- the worker's pipelines (persist, outbox relay) --------------------------------------------------


def stored_message(message_id: int, body: str = "hello") -> Message:
    return Message(message_id, uuid.UUID(int=1), uuid.UUID(int=2), "sender", "Sender", body, None, EPOCH)


class FakeDelivery:
    """One delivery of the message log (``StoredMessageDelivery``); records how it was settled.

    ``committed`` (if given) is asked at ack time whether the message is in the store already."""

    def __init__(
        self,
        entry: Entry | None,
        *,
        position: int | None = None,
        attempts: int = 1,
        undecodable_reason: str = "",
        committed: Callable[[int], bool] | None = None,
        dead_letter_fails: bool = False,
    ) -> None:
        self.entry = entry
        self.position = position if position is not None else (entry.id if entry else 0)
        self.undecodable_reason = undecodable_reason
        self._attempts = attempts
        self._committed = committed
        self._dead_letter_fails = dead_letter_fails
        self.settled: list[tuple[object, ...]] = []  # ("ack",), ("retry", delay), ("dead", reason, detail)
        self.committed_at_ack: bool | None = None

    @property
    def attempts(self) -> int:
        return self._attempts

    async def ack(self) -> None:
        if self._committed is not None:
            self.committed_at_ack = self._committed(self.position)
        self.settled.append(("ack",))

    async def retry_later(self, delay_s: float) -> None:
        self.settled.append(("retry", delay_s))

    async def dead_letter(self, reason: str, detail: str) -> bool:
        if self._dead_letter_fails:
            return False
        self.settled.append(("dead", reason, detail))
        return True


class FakePersistSink:
    """The store's messages table (``PersistSink``): idempotent by id, all or nothing per call.

    Ids in ``rejects`` are refused by the "schema" (``StorageRejected``); ``outage`` makes every
    write fail with it until cleared."""

    def __init__(self, *, rejects: Sequence[int] = ()) -> None:
        self.rows: dict[int, Message] = {}
        self.rejects = set(rejects)
        self.outage: Unavailable | None = None
        self.writes: list[list[int]] = []

    async def write(self, messages: Sequence[Entry]) -> None:
        self.writes.append([m.id for m in messages])
        if self.outage is not None:
            raise self.outage
        refused = [m.id for m in messages if m.id in self.rejects]
        if refused:
            raise StorageRejected(f"value too long for type character varying (ids {refused})")
        for m in messages:
            self.rows.setdefault(m.id, m)

    def has(self, message_id: int) -> bool:
        return message_id in self.rows


class FakeMessageStream:
    """The log's durable consumer (``MessageStream``), scripted: each fetch takes the next step, a
    batch or an ``Unavailable`` to raise. When the script is done it sets ``stop`` (the worker ends)."""

    name = "fake-persist"

    def __init__(
        self, script: Sequence[Sequence[FakeDelivery] | Unavailable], stop: asyncio.Event, *, lag: int = 0
    ) -> None:
        self._script = collections.deque(script)
        self._stop = stop
        self._lag = lag
        self.binds = 0
        self.closes = 0
        self.fetches = 0

    async def bind(self) -> None:
        self.binds += 1

    async def fetch(self, max_messages: int, timeout_s: float) -> Sequence[FakeDelivery]:
        self.fetches += 1
        if not self._script:
            self._stop.set()
            return []
        step = self._script.popleft()
        if isinstance(step, Unavailable):
            raise step
        return step[:max_messages]

    async def pending(self) -> ConsumerLag:
        return ConsumerLag(self._lag, 0)

    async def close(self) -> None:
        self.closes += 1


class FakeOutbox:
    """The outbox table as the relay (``OutboxRelayStore``) and the fast path (``PublishedOutbox``)
    see it: claimed rows go when the block exits normally and stay when it raises."""

    def __init__(self, now: datetime = EPOCH) -> None:
        self.now = now
        self.rows: dict[uuid.UUID, tuple[datetime, StoredEvent]] = {}

    def put(self, event: StoredEvent, created_at: datetime) -> None:
        self.rows[event.id] = (created_at, event)

    @asynccontextmanager
    async def claim_due(self, grace: timedelta, limit: int) -> AsyncIterator[list[StoredEvent]]:
        due = sorted((c, e.id) for c, e in self.rows.values() if c < self.now - grace)
        claimed = [self.rows[event_id][1] for _, event_id in due[:limit]]
        yield claimed
        for event in claimed:
            del self.rows[event.id]

    async def forget(self, event_ids: Sequence[uuid.UUID]) -> None:
        for event_id in event_ids:
            self.rows.pop(event_id, None)


class RecordingStoredPublisher:
    """``StoredEventPublisher`` that records what it sent, or fails with ``fail_with``."""

    def __init__(self) -> None:
        self.published: list[StoredEvent] = []
        self.fail_with: EchonatsError | None = None

    async def publish_stored(self, events: Sequence[StoredEvent]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.published.extend(events)
