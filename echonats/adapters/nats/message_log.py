"""The message log over JetStream: append (pipelined publish), and reads of what may not be
persisted yet (direct gets, batched)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid

import msgspec
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from echonats.adapters.nats import subjects
from echonats.adapters.nats.acks import AckedPublisher
from echonats.adapters.nats.direct import DirectReader
from echonats.adapters.nats.errors import NATS_ERRORS, unavailable
from echonats.adapters.nats.records import (
    CHANGE_HEADER,
    MessageRecord,
    change_record,
    decode_entry,
    message_encoder,
)
from echonats.adapters.nats.streams import PUBLISH_TIMEOUT_S
from echonats.adapters.nats.tails import TailCache
from echonats.core.ports import Appended
from echonats.model import Change, Entry, NewMessage
from echonats.model.errors import Unavailable
from echonats.model.timeline import change_dedupe_key

log = logging.getLogger(__name__)

_BATCH_GET = 500
# Unpersisted entries of one channel read per history call before giving up (only reached when
# the persist worker has been down for a long time under load).
MAX_TAIL_SCAN = 50_000
FLOOR_TIMEOUT_S = 1.0
FLOOR_REUSE_S = 0.1


class JetStreamMessageLog:
    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self._publisher = AckedPublisher(nc, subjects.MESSAGES_STREAM, timeout_s=PUBLISH_TIMEOUT_S)
        self._direct = DirectReader(nc)
        self._tails = TailCache()
        self._last_floor: int | None = None
        self._floor_read_at = -math.inf

    async def begin_append(self, message: NewMessage) -> asyncio.Future[Appended]:
        return await self._begin(
            message.tenant_id, message.channel_id, MessageRecord.of(message), message.dedupe_key, None
        )

    async def begin_change(self, change: Change) -> asyncio.Future[Appended]:
        return await self._begin(
            change.tenant_id,
            change.channel_id,
            change_record(change),
            change_dedupe_key(change),
            {CHANGE_HEADER: "1"},
        )

    async def _begin(
        self,
        tenant_id: uuid.UUID,
        channel_id: uuid.UUID,
        record: object,
        dedupe_key: str | None,
        headers: dict[str, str] | None,
    ) -> asyncio.Future[Appended]:
        if dedupe_key is not None:
            headers = {**headers, "Nats-Msg-Id": dedupe_key} if headers else {"Nats-Msg-Id": dedupe_key}
        return await self._publisher.publish(
            subjects.message_subject(tenant_id, channel_id), message_encoder.encode(record), headers
        )

    async def get(self, entry_id: int) -> Entry | None:
        with unavailable("JetStream"):
            try:
                raw = await self._js.get_msg(subjects.MESSAGES_STREAM, seq=entry_id, direct=True)
            except NotFoundError:
                return None
        if raw.data is None:
            return None
        try:
            return decode_entry(raw.data, raw.headers, entry_id)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Unavailable(f"JetStream: undecodable entry {entry_id}: {exc}") from exc

    async def persisted_floor(self) -> int:
        """Every message id at or below this is in PostgreSQL (the persist consumer's ack floor).

        While the consumer has no leader (a NATS node failed over) the last floor seen is used, or 0:
        the floor only rises, so a lower one merely means reading a longer tail from the stream
        (replicas serve those reads), never missing a message. For the same reason a floor read
        within the last ``FLOOR_REUSE_S`` is reused: under a burst of history reads the floor
        costs one JetStream API call per interval, not one per page."""
        if self._last_floor is not None and time.monotonic() - self._floor_read_at < FLOOR_REUSE_S:
            return self._last_floor
        read_at = time.monotonic()
        try:
            info = await self._js.consumer_info(
                subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER, timeout=FLOOR_TIMEOUT_S
            )
        except NotFoundError:
            floor = 0
        except NATS_ERRORS as exc:
            log.warning("persist consumer info unavailable (%r); using floor %s", exc, self._last_floor or 0)
            return self._last_floor or 0
        else:
            floor = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
        if self._last_floor is not None and floor < self._last_floor:
            # The floor only falls when the consumer (and likely the stream) was created anew: ids
            # may then be given again, so what was read of the old tails is not the stream's now.
            self._tails.clear()
        self._last_floor, self._floor_read_at = floor, read_at
        return floor

    async def tail(
        self, tenant_id: uuid.UUID, channel_id: uuid.UUID, *, above: int | None = None
    ) -> list[Entry]:
        """Every entry of the channel above the persist worker's ack floor (or ``above``), oldest first."""
        floor = await self.persisted_floor() if above is None else above
        key = (tenant_id, channel_id)
        known, start = self._tails.known(key, floor)
        if len(known) >= MAX_TAIL_SCAN:
            raise Unavailable("history is catching up: the persist worker is far behind, try again shortly")
        found, more = await self.read_channel(
            tenant_id, channel_id, start=start, limit=MAX_TAIL_SCAN - len(known)
        )
        if more:
            raise Unavailable("history is catching up: the persist worker is far behind, try again shortly")
        tail = known + found if known else found
        self._tails.update(key, found[-1].id if found else start - 1, tail)
        return tail

    async def read_channel(
        self, tenant_id: uuid.UUID, channel_id: uuid.UUID, *, start: int, limit: int
    ) -> tuple[list[Entry], bool]:
        """A channel's entries with id >= start, oldest first, at most ``limit``; and whether more exist."""
        subject = subjects.message_subject(tenant_id, channel_id)
        found: list[Entry] = []
        more = False
        while len(found) < limit:
            batch, more = await self._direct_batch(subject, start, min(_BATCH_GET, limit - len(found)))
            found.extend(batch)
            if not more or not batch:
                break
            start = batch[-1].id + 1
        return found, more

    async def first_sequence(self) -> int:
        """The oldest id the stream still holds (older ones were aged out)."""
        with unavailable("JetStream"):
            info = await self._js.stream_info(subjects.MESSAGES_STREAM)
        return int(info.state.first_seq)

    async def _direct_batch(self, subject: str, start: int, count: int) -> tuple[list[Entry], bool]:
        stored, more = await self._direct.batch(subjects.MESSAGES_STREAM, subject, start, count)
        try:
            return [decode_entry(s.data, s.headers, s.sequence) for s in stored], more
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Unavailable(f"JetStream: undecodable entry in {subject}: {exc}") from exc

    async def forget_channel(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> None:
        try:
            await self._js.purge_stream(
                subjects.MESSAGES_STREAM, subject=subjects.message_subject(tenant_id, channel_id)
            )
        except NATS_ERRORS as exc:
            log.warning("could not purge messages of deleted channel %s: %r", channel_id, exc)

    async def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        for stream, subject in (
            (subjects.MESSAGES_STREAM, subjects.tenant_message_subjects(tenant_id)),
            (subjects.EVENTS_STREAM, subjects.tenant_event_subjects(tenant_id)),
        ):
            try:
                await self._js.purge_stream(stream, subject=subject)
            except NATS_ERRORS as exc:
                log.warning("could not purge %s of deleted tenant %s: %r", stream, tenant_id, exc)
