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
from echonats.adapters.nats.pull import PullRequests
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


def _ack_fields(reply: str) -> tuple[int, int]:
    """(stream sequence, deliveries) from a JetStream ack subject: ``$JS.ACK.<stream>.<consumer>.
    <delivered>.<stream seq>.<consumer seq>.<time>.<pending>``, or the 12-token form with a domain
    and an account hash after ``$JS.ACK`` (what nats-py's ``Msg.metadata`` builds a dataclass for
    on every access)."""
    tokens = reply.split(".")
    base = 2 if len(tokens) == 9 else 4
    if len(tokens) not in (9, 11, 12) or tokens[0] != "$JS" or tokens[1] != "ACK":
        raise ValueError(f"not a JetStream ack subject: {reply[:120]!r}")
    return int(tokens[base + 3]), int(tokens[base + 2])


class JetStreamDelivery:
    """One message of the stream (``StoredMessageDelivery``), decoded once on arrival."""

    __slots__ = ("_js", "_msg", "_nc", "attempts", "entry", "position", "undecodable_reason")

    def __init__(self, js: JetStreamContext, nc: NatsClient, msg: Msg) -> None:
        self._js = js
        self._nc = nc
        self._msg = msg
        self.position, self.attempts = _ack_fields(msg.reply)
        self.undecodable_reason = ""
        self.entry: Entry | None
        try:
            # The display name as sent (possibly empty), not the readers' fallback to the sender id:
            # the row keeps what the stream holds, and reads apply the fallback.
            self.entry = decode_entry(msg.data, msg.headers, self.position, display_name_fallback=False)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.entry = None
            self.undecodable_reason = str(exc)

    async def ack(self) -> None:
        with unavailable("ack"):
            await self._nc.publish(self._msg.reply, b"+ACK")

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
        self._nc = nc
        self._js = nc.jetstream()
        self._pull: PullRequests | None = None

    async def bind(self) -> None:
        await self.close()
        with unavailable("persist consumer not bound"):
            try:
                await self._js.consumer_info(subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER)
            except NotFoundError:
                await self._js.add_consumer(subjects.MESSAGES_STREAM, _consumer_config())
            self._pull = await PullRequests.open(
                self._nc, subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER
            )

    async def fetch(self, max_messages: int, timeout_s: float) -> Sequence[JetStreamDelivery]:
        if self._pull is None:
            raise RuntimeError("fetch before bind")
        with unavailable("persist fetch failed"):
            batch = await self._pull.fetch(max_messages, timeout_s)
        return self.deliveries(batch)

    def deliveries(self, batch: Sequence[Msg]) -> list[JetStreamDelivery]:
        return [JetStreamDelivery(self._js, self._nc, msg) for msg in batch]

    async def pending(self) -> ConsumerLag:
        with unavailable("consumer info unavailable"):
            info = await self._js.consumer_info(subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER)
        return ConsumerLag(info.num_pending or 0, info.num_ack_pending or 0)

    async def close(self) -> None:
        pull, self._pull = self._pull, None
        if pull is not None:
            with contextlib.suppress(*NATS_ERRORS):
                await pull.close()
