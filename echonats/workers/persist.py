"""Persist worker: the message log -> the store, in batches, idempotently.

At-least-once: rows are committed before the entries are acked, and a replayed entry changes
nothing (the sink is idempotent by id). Several worker processes share one durable consumer.
An entry that cannot be stored (undecodable, or rejected by the schema) goes to the dead letters
with the reason, so it never blocks the stream. An outage of the store is never the entry's fault.
A change whose message is not stored yet (another worker still writing it) is retried a few
times, then set aside like a rejected one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from echonats import metrics
from echonats.core.pipeline_ports import MessageStream, PersistSink, StoredMessageDelivery
from echonats.core.ports import EventPublisher
from echonats.model import DomainEvent, Entry, Message
from echonats.model.errors import EchonatsError, StorageRejected, TargetMissing, Unavailable

log = logging.getLogger(__name__)

LAG_REPORT_INTERVAL_S = 5.0
REBIND_AFTER_FAILURES = 3
RETRY_DELAY_CAP_S = 30
# Deliveries of a change whose message is missing before it is dead-lettered: a message another
# worker is writing lands within a batch's time; one that never lands (it was dead-lettered) never will.
TARGET_MISSING_ATTEMPTS = 6
# The second fetch of a lingering batch takes what is there: it must not wait for more.
LINGER_FETCH_TIMEOUT_S = 0.005
# How long a partial batch waits for more (see PersistWorker): tens of rows per batch at 1,000 msg/s.
PERSIST_LINGER_S = 0.02


def retry_delay_s(attempts: int) -> float:
    """Nak delay for a message whose batch the store could not take: grows with its deliveries."""
    return float(min(2 ** min(attempts, 5), RETRY_DELAY_CAP_S))


@dataclass(frozen=True, slots=True)
class _Decoded:
    delivery: StoredMessageDelivery
    entry: Entry


class PersistWorker:
    def __init__(
        self,
        stream: MessageStream,
        sink: PersistSink,
        *,
        publisher: EventPublisher | None = None,
        batch_size: int = 500,
        fetch_timeout_s: float = 1.0,
        linger_s: float = 0.0,
    ) -> None:
        self._stream = stream
        self._sink = sink
        # Publishes what the sink committed with a batch (mention events) once it is acked; what it
        # cannot publish stays in the outbox for the relay.
        self._publisher = publisher
        self._batch_size = batch_size
        self._fetch_timeout_s = fetch_timeout_s
        # A batch costs a transaction (three round trips) and its Python overhead whatever its size:
        # when a fetch brings less than a full batch, wait this long and fetch the rest, so a
        # moderate rate is written in batches of tens, not of one or two. Only the persist lag
        # grows: acks and deliveries come from the log, and reads fold its unpersisted tail.
        self._linger_s = linger_s

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; survives outages of the log by binding the consumer again."""
        backoff = _Backoff()
        while not stop.is_set():
            try:
                await self._stream.bind()
            except Unavailable as exc:
                log.warning("persist consumer not bound yet, retrying: %s", exc.message)
                await _wait(stop, backoff.next())
                continue
            try:
                await self._consume(stop, backoff)
            finally:
                await self._stream.close()

    async def _consume(self, stop: asyncio.Event, backoff: _Backoff) -> None:
        failures = 0
        next_report = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + LAG_REPORT_INTERVAL_S
                await self._report_pending()
            try:
                batch = await self._fetch(stop)
            except Unavailable as exc:
                failures += 1
                log.warning("persist fetch failed (%d in a row): %s", failures, exc.message)
                if failures >= REBIND_AFTER_FAILURES:
                    return  # bind again: the consumer or our subscription may be gone
                await _wait(stop, backoff.next())
                continue
            failures = 0
            if not batch:
                continue
            if await self.store(batch):
                backoff.reset()
            else:
                await _wait(stop, backoff.next())

    async def _fetch(self, stop: asyncio.Event) -> list[StoredMessageDelivery]:
        batch = list(await self._stream.fetch(self._batch_size, self._fetch_timeout_s))
        if batch and len(batch) < self._batch_size and self._linger_s > 0:
            await _wait(stop, self._linger_s)
            if not stop.is_set():
                try:
                    batch += await self._stream.fetch(self._batch_size - len(batch), LINGER_FETCH_TIMEOUT_S)
                except Unavailable as exc:  # the first part is in hand: store it now
                    log.debug("lingering fetch failed: %s", exc.message)
        return batch

    async def _report_pending(self) -> None:
        """Export how far behind the consumer is (every few seconds, not per batch)."""
        try:
            lag = await self._stream.pending()
        except Unavailable as exc:
            log.debug("consumer lag unavailable: %s", exc.message)
            return
        metrics.consumer_pending.labels(self._stream.name).set(lag.pending)
        metrics.consumer_ack_pending.labels(self._stream.name).set(lag.ack_pending)

    async def store(self, batch: Sequence[StoredMessageDelivery]) -> bool:
        """Write one fetched batch; True when every message was settled (acked or dead-lettered)."""
        decoded: list[_Decoded] = []
        for delivery in batch:
            if delivery.entry is None:
                await self._dead_letter(delivery, "undecodable", delivery.undecodable_reason)
            else:
                decoded.append(_Decoded(delivery, delivery.entry))
        if not decoded:
            return True
        try:
            try:
                events = await self._sink.write([d.entry for d in decoded])
            except StorageRejected:
                return await self._store_one_by_one(decoded)
        except Unavailable as exc:
            return await self._retry_later(decoded, exc)
        await self._settle(decoded)
        await self._publish(events)
        return True

    async def _publish(self, events: Sequence[DomainEvent]) -> None:
        if not events or self._publisher is None:
            return
        try:
            await self._publisher.publish(events)
        except EchonatsError as exc:
            log.warning("%d events left to the outbox relay: %s", len(events), exc.message)

    async def _retry_later(self, decoded: list[_Decoded], exc: Unavailable) -> bool:
        """The store is unavailable: retry the batch later with a growing delay. An outage is not the
        message's fault, so it never counts towards dead-lettering, however long it lasts."""
        log.warning("persist batch of %d failed, will retry: %s", len(decoded), exc.message)
        for item in decoded:
            await item.delivery.retry_later(retry_delay_s(item.delivery.attempts))
        return False

    async def _store_one_by_one(self, decoded: list[_Decoded]) -> bool:
        """Some entry of the batch is refused: write them singly, so only the refused ones go aside
        (or, a change whose message is missing, come back later)."""
        stored: list[_Decoded] = []
        for item in decoded:
            try:
                await self._publish(await self._sink.write([item.entry]))
                stored.append(item)
            except TargetMissing as exc:
                if item.delivery.attempts >= TARGET_MISSING_ATTEMPTS:
                    await self._dead_letter(item.delivery, "target_missing", exc.message)
                else:
                    await item.delivery.retry_later(retry_delay_s(item.delivery.attempts))
            except StorageRejected as exc:
                await self._dead_letter(item.delivery, "rejected_by_schema", exc.message)
        await self._settle(stored)
        return True

    async def _settle(self, stored: list[_Decoded]) -> None:
        now = datetime.now(UTC)
        for item in stored:
            await item.delivery.ack()
            entry = item.entry
            written_at = entry.created_at if isinstance(entry, Message) else entry.at
            metrics.persist_lag_seconds.observe(max(0.0, (now - written_at).total_seconds()))
        metrics.persisted.inc(len(stored))
        metrics.persist_batches.observe(len(stored))

    async def _dead_letter(self, delivery: StoredMessageDelivery, reason: str, detail: str) -> None:
        if await delivery.dead_letter(reason, detail):
            metrics.dead_lettered.labels(reason).inc()
            log.error("message %d dead-lettered: %s", delivery.position, reason)


class _Backoff:
    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self._first = first
        self._cap = cap
        self._current = first

    def next(self) -> float:
        value = self._current
        self._current = min(self._current * 2, self._cap)
        return value

    def reset(self) -> None:
        self._current = self._first


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Back off, but wake immediately on shutdown."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
