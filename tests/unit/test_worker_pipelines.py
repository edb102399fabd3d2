"""The persist worker and the outbox relay over fakes of their ports: commit before ack, outages
retried (never dead-lettered), poison rows isolated and dead-lettered, rebinding, the relay's claim."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from echonats import metrics
from echonats.core.event_sink import PublishThenForget
from echonats.core.pipeline_ports import StoredEvent
from echonats.model import DomainEvent
from echonats.model import events as ev
from echonats.model.errors import Unavailable
from echonats.workers.outbox import GRACE, OutboxRelay
from echonats.workers.persist import REBIND_AFTER_FAILURES, PersistWorker
from tests.unit.fake_pipelines import (
    FakeDelivery,
    FakeMessageStream,
    FakeOutbox,
    FakePersistSink,
    RecordingStoredPublisher,
    stored_message,
)
from tests.unit.fakes import EPOCH, RecordingPublisher


def _worker(sink: FakePersistSink, stream: FakeMessageStream | None = None) -> PersistWorker:
    return PersistWorker(stream or FakeMessageStream([], asyncio.Event()), sink)


def _deliveries(sink: FakePersistSink, *ids: int, attempts: int = 1) -> list[FakeDelivery]:
    return [FakeDelivery(stored_message(i), attempts=attempts, committed=sink.has) for i in ids]


# -- persist: one batch ------------------------------------------------------------------------------


async def test_a_batch_is_committed_in_one_write_before_any_ack() -> None:
    sink = FakePersistSink()
    batch = _deliveries(sink, 1, 2, 3)
    assert await _worker(sink).store(batch) is True
    assert sink.writes == [[1, 2, 3]]
    assert [d.settled for d in batch] == [[("ack",)]] * 3
    assert [d.committed_at_ack for d in batch] == [True] * 3


async def test_an_outage_retries_the_batch_later_and_never_dead_letters() -> None:
    sink = FakePersistSink()
    sink.outage = Unavailable("PostgreSQL: connection refused")
    first, long_outage = (
        FakeDelivery(stored_message(1), attempts=1),
        FakeDelivery(stored_message(2), attempts=9),
    )
    dead_before = metrics.dead_lettered.labels("rejected_by_schema")._value.get()
    assert await _worker(sink).store([first, long_outage]) is False
    # Growing delay with the deliveries, capped; a ninth attempt is still only a retry.
    assert first.settled == [("retry", 2.0)]
    assert long_outage.settled == [("retry", 30.0)]
    assert metrics.dead_lettered.labels("rejected_by_schema")._value.get() == dead_before
    assert sink.rows == {}


async def test_a_rejected_row_is_dead_lettered_and_the_rest_of_the_batch_stored() -> None:
    sink = FakePersistSink(rejects=[2])
    batch = _deliveries(sink, 1, 2, 3)
    assert await _worker(sink).store(batch) is True
    assert sink.writes == [[1, 2, 3], [1], [2], [3]]  # the batch, then one by one
    assert sorted(sink.rows) == [1, 3]
    assert batch[0].settled == [("ack",)]
    assert batch[2].settled == [("ack",)]
    assert [s[:2] for s in batch[1].settled] == [("dead", "rejected_by_schema")]
    assert "value too long" in str(batch[1].settled[0][2])
    assert batch[0].committed_at_ack
    assert batch[2].committed_at_ack


async def test_an_outage_while_isolating_a_rejected_row_retries_the_whole_batch() -> None:
    class FailsOnSecondWrite(FakePersistSink):
        async def write(self, messages: object) -> None:
            if len(self.writes) == 2:
                self.outage = Unavailable("PostgreSQL: gone")
            await super().write(messages)  # type: ignore[arg-type]

    sink = FailsOnSecondWrite(rejects=[1])
    batch = _deliveries(sink, 1, 2)
    assert await _worker(sink).store(batch) is False
    assert batch[1].settled == [("retry", 2.0)]
    assert ("ack",) not in batch[0].settled + batch[1].settled


async def test_an_undecodable_message_is_dead_lettered_without_reaching_the_store() -> None:
    sink = FakePersistSink()
    garbage = FakeDelivery(None, position=7, undecodable_reason="Expected `object`, got `int`")
    good = FakeDelivery(stored_message(8), committed=sink.has)
    assert await _worker(sink).store([garbage, good]) is True
    assert garbage.settled == [("dead", "undecodable", "Expected `object`, got `int`")]
    assert good.settled == [("ack",)]
    assert sink.writes == [[8]]


async def test_a_failed_dead_letter_leaves_the_message_unsettled_for_redelivery() -> None:
    sink = FakePersistSink(rejects=[1])
    poison = FakeDelivery(stored_message(1), dead_letter_fails=True)
    assert await _worker(sink).store([poison]) is True
    assert poison.settled == []  # neither acked nor terminated: it comes back after the ack wait


# -- persist: the loop -------------------------------------------------------------------------------


async def test_the_loop_binds_again_after_repeated_fetch_failures_only() -> None:
    stop = asyncio.Event()
    sink = FakePersistSink()
    down = Unavailable("NATS: connection closed")
    script = [down, [], down, down, *[down] * REBIND_AFTER_FAILURES, _deliveries(sink, 5)]
    stream = FakeMessageStream(script, stop, lag=42)
    await asyncio.wait_for(PersistWorker(stream, sink).run(stop), timeout=10)
    # An empty fetch (timeout) resets the count: 1 + 2 failures do not rebind, 3 in a row do.
    assert stream.binds == 2
    assert stream.closes == 2
    assert sorted(sink.rows) == [5]
    assert metrics.consumer_pending.labels("fake-persist")._value.get() == 42


# -- outbox relay ------------------------------------------------------------------------------------


def _stored_event(n: int) -> StoredEvent:
    return StoredEvent(uuid.UUID(int=n), uuid.UUID(int=1), "channel.created", b'{"n": %d}' % n)


async def test_the_relay_publishes_only_rows_older_than_the_grace_and_then_removes_them() -> None:
    outbox, publisher = FakeOutbox(), RecordingStoredPublisher()
    old, young = _stored_event(1), _stored_event(2)
    outbox.put(old, EPOCH - timedelta(minutes=1))
    outbox.put(young, EPOCH - GRACE / 2)
    relay = OutboxRelay(outbox, publisher)
    assert await relay.relay_once() == 1
    assert publisher.published == [old]  # the stored bytes, verbatim
    assert list(outbox.rows) == [young.id]
    assert await relay.relay_once() == 0


async def test_a_failed_relay_publish_keeps_every_claimed_row() -> None:
    outbox, publisher = FakeOutbox(), RecordingStoredPublisher()
    outbox.put(_stored_event(1), EPOCH - timedelta(minutes=1))
    publisher.fail_with = Unavailable("NATS down")
    with pytest.raises(Unavailable):
        await OutboxRelay(outbox, publisher).relay_once()
    assert len(outbox.rows) == 1


def _domain_event(n: int) -> DomainEvent:
    return ev.MemberJoined(
        id=uuid.UUID(int=n),
        tenant_id=uuid.UUID(int=1),
        occurred_at=EPOCH,
        payload=ev.MemberData(user_id=f"u{n}", display_name="U", role="member"),
    )


async def test_publish_then_forget_drops_the_rows_of_the_events_that_got_out() -> None:
    outbox = FakeOutbox()
    events = [_domain_event(n) for n in (1, 2)]
    for event in events:
        outbox.put(StoredEvent(event.id, event.tenant_id, event.type, b""), EPOCH)

    class FailsOnSecond(RecordingPublisher):
        async def publish(self, batch: object) -> None:
            if self.published:
                self.fail()
            await super().publish(batch)  # type: ignore[arg-type]

    with pytest.raises(Unavailable):
        await PublishThenForget(FailsOnSecond(), outbox).publish(events)
    assert list(outbox.rows) == [events[1].id]  # the second is left to the relay


async def test_a_partial_batch_lingers_and_is_written_with_what_came_meanwhile() -> None:
    sink = FakePersistSink()
    stop = asyncio.Event()
    first, later = _deliveries(sink, 1, 2), _deliveries(sink, 3)
    stream = FakeMessageStream([first, later], stop)
    worker = PersistWorker(stream, sink, batch_size=10, linger_s=0.001)
    await asyncio.wait_for(worker.run(stop), timeout=10)
    assert sink.writes == [[1, 2, 3]]  # one transaction, not two
    assert [d.settled for d in (*first, *later)] == [[("ack",)]] * 3


async def test_a_failed_lingering_fetch_still_writes_the_first_part() -> None:
    sink = FakePersistSink()
    stop = asyncio.Event()
    first = _deliveries(sink, 1, 2)
    stream = FakeMessageStream([first, Unavailable("NATS: timeout")], stop)
    worker = PersistWorker(stream, sink, batch_size=10, linger_s=0.001)
    await asyncio.wait_for(worker.run(stop), timeout=10)
    assert sink.writes == [[1, 2]]
    assert [d.settled for d in first] == [[("ack",)]] * 2
