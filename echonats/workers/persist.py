"""Persist worker: JetStream messages stream -> PostgreSQL, in batches, idempotently.

At-least-once: rows are committed before the messages are acked, and a replayed message hits
``ON CONFLICT (id) DO NOTHING``. Several worker processes share one durable pull consumer.
A message that cannot be stored (undecodable, or rejected by the schema) goes to the dead-letter
subject with the reason and is terminated, so it never blocks the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from echonats import metrics
from echonats.adapters.nats import subjects
from echonats.adapters.nats.errors import NATS_ERRORS
from echonats.adapters.nats.records import MessageRecord, message_decoder

log = logging.getLogger(__name__)

_INSERT = """
INSERT INTO messages (id, tenant_id, channel_id, sender_id, sender_display_name, body, nonce, created_at)
SELECT r.id, r.tenant_id, r.channel_id, r.sender_id, r.sender_display_name, r.body, r.nonce, r.created_at
FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[])
     AS r(id, tenant_id, channel_id, sender_id, sender_display_name, body, nonce, created_at)
JOIN channels c ON c.id = r.channel_id AND c.tenant_id = r.tenant_id  -- drop messages of deleted channels
ON CONFLICT (id) DO NOTHING
"""
# PostgreSQL down, restarting, or a connection cut mid-statement: retry the batch later.
DB_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
LAG_REPORT_INTERVAL_S = 5.0
REBIND_AFTER_FAILURES = 3


@dataclass(frozen=True, slots=True)
class _Decoded:
    msg: Msg
    seq: int
    record: MessageRecord


def _row(item: _Decoded) -> tuple[int, uuid.UUID, uuid.UUID, str, str, str, str | None, datetime]:
    r = item.record
    return (
        item.seq,
        r.tenant_id,
        r.channel_id,
        r.sender_id,
        r.sender_display_name,
        r.body,
        r.nonce,
        r.created_at,
    )


class PersistWorker:
    def __init__(
        self,
        nc: NatsClient,
        pool: asyncpg.Pool[asyncpg.Record],
        *,
        batch_size: int = 500,
        fetch_timeout_s: float = 1.0,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._pool = pool
        self._batch_size = batch_size
        self._fetch_timeout_s = fetch_timeout_s

    async def ensure_consumer(self) -> None:
        config = js_api.ConsumerConfig(
            durable_name=subjects.PERSIST_CONSUMER,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_wait=10,  # a crashed worker's unacked batch comes back in 10 s (inserts are idempotent)
            max_ack_pending=20_000,
            max_deliver=-1,  # attempts are counted here, so poison goes to the dead-letter subject
        )
        try:
            await self._js.consumer_info(subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER)
        except NotFoundError:
            await self._js.add_consumer(subjects.MESSAGES_STREAM, config)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; survives NATS outages by binding the consumer again."""
        backoff = _Backoff()
        while not stop.is_set():
            try:
                await self.ensure_consumer()
                sub = await self._js.pull_subscribe_bind(
                    subjects.PERSIST_CONSUMER, stream=subjects.MESSAGES_STREAM
                )
            except NATS_ERRORS as exc:
                log.warning("persist consumer not bound yet, retrying: %r", exc)
                await _wait(stop, backoff.next())
                continue
            try:
                await self._consume(sub, stop, backoff)
            finally:
                # A live pull subscription makes drain() hang: unsubscribe it first.
                with contextlib.suppress(*NATS_ERRORS):
                    await sub.unsubscribe()

    async def _consume(
        self, sub: JetStreamContext.PullSubscription, stop: asyncio.Event, backoff: _Backoff
    ) -> None:
        failures = 0
        next_report = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + LAG_REPORT_INTERVAL_S
                await self._report_pending()
            try:
                batch = await sub.fetch(self._batch_size, timeout=self._fetch_timeout_s)
            except TimeoutError:
                failures = 0
                continue
            except NATS_ERRORS as exc:
                failures += 1
                log.warning("persist fetch failed (%d in a row): %r", failures, exc)
                if failures >= REBIND_AFTER_FAILURES:
                    return  # bind again: the consumer or our subscription may be gone
                await _wait(stop, backoff.next())
                continue
            failures = 0
            if await self.store(batch):
                backoff.reset()
            else:
                await _wait(stop, backoff.next())

    async def _report_pending(self) -> None:
        """Export how far behind the consumer is (one API call every few seconds, not per batch)."""
        try:
            info = await self._js.consumer_info(subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER)
        except NATS_ERRORS as exc:
            log.debug("consumer info unavailable: %r", exc)
            return
        metrics.consumer_pending.labels(subjects.PERSIST_CONSUMER).set(info.num_pending or 0)
        metrics.consumer_ack_pending.labels(subjects.PERSIST_CONSUMER).set(info.num_ack_pending or 0)

    async def store(self, batch: list[Msg]) -> bool:
        """Write one fetched batch; True when every message was settled (acked or dead-lettered)."""
        decoded: list[_Decoded] = []
        for msg in batch:
            try:
                decoded.append(_Decoded(msg, msg.metadata.sequence.stream, message_decoder.decode(msg.data)))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self._dead_letter(msg, "undecodable", str(exc))
        if not decoded:
            return True
        try:
            await self._pool.execute(_INSERT, *zip(*(_row(d) for d in decoded), strict=True))
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
            try:
                return await self._store_one_by_one(decoded)
            except DB_ERRORS as exc:
                return await self._retry_later(decoded, exc)
        except DB_ERRORS as exc:
            return await self._retry_later(decoded, exc)
        await self._settle(decoded)
        return True

    async def _retry_later(self, decoded: list[_Decoded], exc: BaseException) -> bool:
        """PostgreSQL is unavailable: nak the batch with a growing delay. An outage is not the
        message's fault, so it never counts towards dead-lettering, however long it lasts."""
        log.warning("persist batch of %d failed, will retry: %r", len(decoded), exc)
        for item in decoded:
            await item.msg.nak(delay=min(2 ** min(item.msg.metadata.num_delivered, 5), 30))
        return False

    async def _store_one_by_one(self, decoded: list[_Decoded]) -> bool:
        stored: list[_Decoded] = []
        for item in decoded:
            try:
                await self._pool.execute(_INSERT, *([v] for v in _row(item)))
                stored.append(item)
            except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
                await self._dead_letter(item.msg, "rejected_by_schema", str(exc))
        await self._settle(stored)
        return True

    async def _settle(self, stored: list[_Decoded]) -> None:
        now = datetime.now(UTC)
        for item in stored:
            await item.msg.ack()
            metrics.persist_lag_seconds.observe(max(0.0, (now - item.record.created_at).total_seconds()))
        metrics.persisted.inc(len(stored))
        metrics.persist_batches.observe(len(stored))

    async def _dead_letter(self, msg: Msg, reason: str, detail: str) -> None:
        headers = {
            "Echonats-Dead-Letter-Reason": reason,
            "Echonats-Detail": detail.replace("\r", " ").replace("\n", " ")[:300],
            "Echonats-Original-Subject": msg.subject,
            "Echonats-Stream-Sequence": str(msg.metadata.sequence.stream),
        }
        try:
            await self._js.publish(
                f"{subjects.DEAD_LETTER_PREFIX}.messages",
                msg.data,
                headers=headers,
                stream=subjects.DEAD_LETTER_STREAM,
            )
        except NATS_ERRORS as exc:
            log.warning(
                "dead-letter publish failed, message %d will be redelivered: %r",
                msg.metadata.sequence.stream,
                exc,
            )
            return
        await msg.term()
        metrics.dead_lettered.labels(reason).inc()
        log.error("message %d dead-lettered: %s", msg.metadata.sequence.stream, reason)


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
