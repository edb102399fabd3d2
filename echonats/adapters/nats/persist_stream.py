"""The messages stream as the persist worker consumes it: one JetStream durable pull consumer shared
by every worker process, explicit acks, and a dead-letter stream for what cannot be stored."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from echonats.adapters.nats import subjects
from echonats.adapters.nats.errors import NATS_ERRORS, unavailable
from echonats.adapters.nats.records import decode_entry
from echonats.core.pipeline_ports import ConsumerLag
from echonats.model import Entry

log = logging.getLogger(__name__)

DEAD_LETTER_SUBJECT = f"{subjects.DEAD_LETTER_PREFIX}.messages"
_DETAIL_MAX = 300


def _consumer_config() -> js_api.ConsumerConfig:
    return js_api.ConsumerConfig(
        durable_name=subjects.PERSIST_CONSUMER,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_wait=10,  # a crashed worker's unacked batch comes back in 10 s (inserts are idempotent)
        max_ack_pending=20_000,
        max_deliver=-1,  # attempts are counted by the worker, so poison goes to the dead-letter subject
    )


class JetStreamDelivery:
    """One message of the stream (``StoredMessageDelivery``), decoded once on arrival."""

    __slots__ = ("_js", "_msg", "entry", "position", "undecodable_reason")

    def __init__(self, js: JetStreamContext, msg: Msg) -> None:
        self._js = js
        self._msg = msg
        self.position: int = msg.metadata.sequence.stream
        self.undecodable_reason = ""
        self.entry: Entry | None
        try:
            # The display name as sent (possibly empty), not the readers' fallback to the sender id:
            # the row keeps what the stream holds, and reads apply the fallback.
            self.entry = decode_entry(msg.data, msg.headers, self.position, display_name_fallback=False)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.entry = None
            self.undecodable_reason = str(exc)

    @property
    def attempts(self) -> int:
        return self._msg.metadata.num_delivered

    async def ack(self) -> None:
        with unavailable("ack"):
            await self._msg.ack()

    async def retry_later(self, delay_s: float) -> None:
        with unavailable("nak"):
            await self._msg.nak(delay=delay_s)

    async def dead_letter(self, reason: str, detail: str) -> bool:
        headers = {
            "Echonats-Dead-Letter-Reason": reason,
            "Echonats-Detail": detail.replace("\r", " ").replace("\n", " ")[:_DETAIL_MAX],
            "Echonats-Original-Subject": self._msg.subject,
            "Echonats-Stream-Sequence": str(self.position),
        }
        try:
            await self._js.publish(
                DEAD_LETTER_SUBJECT, self._msg.data, headers=headers, stream=subjects.DEAD_LETTER_STREAM
            )
        except NATS_ERRORS as exc:
            log.warning("dead-letter publish failed, message %d will be redelivered: %r", self.position, exc)
            return False
        with unavailable("term"):
            await self._msg.term()
        return True


class JetStreamPersistStream:
    """``MessageStream`` over the persist consumer of the messages stream."""

    name = subjects.PERSIST_CONSUMER

    def __init__(self, nc: NatsClient) -> None:
        self._js = nc.jetstream()
        self._sub: JetStreamContext.PullSubscription | None = None

    async def bind(self) -> None:
        await self.close()
        with unavailable("persist consumer not bound"):
            try:
                await self._js.consumer_info(subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER)
            except NotFoundError:
                await self._js.add_consumer(subjects.MESSAGES_STREAM, _consumer_config())
            self._sub = await self._js.pull_subscribe_bind(
                subjects.PERSIST_CONSUMER, stream=subjects.MESSAGES_STREAM
            )

    async def fetch(self, max_messages: int, timeout_s: float) -> Sequence[JetStreamDelivery]:
        if self._sub is None:
            raise RuntimeError("fetch before bind")
        with unavailable("persist fetch failed"):
            try:
                batch = await self._sub.fetch(max_messages, timeout=timeout_s)
            except TimeoutError:
                return []  # nothing new within the timeout: not a failure
        return self.deliveries(batch)

    def deliveries(self, batch: Sequence[Msg]) -> list[JetStreamDelivery]:
        return [JetStreamDelivery(self._js, msg) for msg in batch]

    async def pending(self) -> ConsumerLag:
        with unavailable("consumer info unavailable"):
            info = await self._js.consumer_info(subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER)
        return ConsumerLag(info.num_pending or 0, info.num_ack_pending or 0)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            # A live pull subscription makes drain() hang: unsubscribe it first.
            with contextlib.suppress(*NATS_ERRORS):
                await sub.unsubscribe()
