"""The live side over core NATS: what a gateway subscribes to (stored messages as the stream
republishes them, typing, presence, domain events) and what it publishes (typing, presence).

Each delivery is decoded once here; an undecodable one is logged and dropped, never raised into
nats-py's subscription task. Interests register at the server before ``watch_*`` returns (a flush),
so a replay read afterwards cannot miss a message published in between.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from echonats.adapters.nats import subjects
from echonats.adapters.nats.errors import NATS_ERRORS, unavailable
from echonats.adapters.nats.records import (
    PresenceRecord,
    TypingRecord,
    decode_entry,
    message_encoder,
    presence_decoder,
    typing_decoder,
)
from echonats.core.ports import OnEntry, OnEvent, OnFeed, OnPresence, OnTyping, TypingNotice
from echonats.model import PresenceChange
from echonats.model.events import decode_event

log = logging.getLogger(__name__)

_UNDECODABLE = (KeyError, ValueError, msgspec.DecodeError, msgspec.ValidationError)
_Callback = Callable[[Msg], Awaitable[None]]


class NatsInterest:
    """One or more subscriptions that end together."""

    __slots__ = ("_subscriptions",)

    def __init__(self, subscriptions: list[Subscription]) -> None:
        self._subscriptions = subscriptions

    async def cancel(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            try:
                await subscription.unsubscribe()
            except NATS_ERRORS:
                log.debug("unsubscribe failed (connection closing)")


class NatsLiveFeed:
    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc

    async def watch_channel(
        self, tenant_id: uuid.UUID, channel_id: uuid.UUID, on_entry: OnEntry, on_typing: OnTyping
    ) -> NatsInterest:
        async def live(msg: Msg) -> None:
            try:
                headers = msg.headers or {}
                entry_id = int(headers["Nats-Sequence"])
                previous = int(headers.get("Nats-Last-Sequence", "0"))
                entry = decode_entry(msg.data, headers, entry_id)
            except _UNDECODABLE as exc:
                log.warning("dropped an undecodable live entry on %s: %s", msg.subject, exc)
                return
            await on_entry(entry, previous)

        async def typing(msg: Msg) -> None:
            try:
                record = typing_decoder.decode(msg.data)
            except _UNDECODABLE:
                return
            on_typing(TypingNotice(record.user_id, record.display_name))

        return await self._watch(
            (subjects.live_subject(tenant_id, channel_id), live),
            (subjects.typing_subject(tenant_id, channel_id), typing),
        )

    async def watch_presence(self, tenant_id: uuid.UUID, on_presence: OnPresence) -> NatsInterest:
        async def presence(msg: Msg) -> None:
            try:
                record = presence_decoder.decode(msg.data)
            except _UNDECODABLE:
                return
            if record.tenant_id == tenant_id:  # the subject says so too; the payload must agree
                on_presence(record.to_change())

        return await self._watch((subjects.tenant_presence_subjects(tenant_id), presence))

    async def watch_events(
        self, tenant_id: uuid.UUID | None, event_types: Sequence[str], on_event: OnEvent
    ) -> NatsInterest:
        async def event(msg: Msg) -> None:
            try:
                decoded = decode_event(msg.data)
            except _UNDECODABLE as exc:
                log.warning("ignored an undecodable event on %s: %s", msg.subject, exc)
                return
            on_event(decoded)

        return await self._watch(*((subjects.event_subjects(tenant_id, t), event) for t in event_types))

    async def watch_feed(self, tenant_id: uuid.UUID, on_feed: OnFeed) -> NatsInterest:
        async def feed(msg: Msg) -> None:
            try:
                position = int((msg.headers or {})["Nats-Sequence"])
                decoded = decode_event(msg.data)
            except _UNDECODABLE as exc:
                log.debug("ignored an undecodable feed event on %s: %s", msg.subject, exc)
                return
            if decoded.tenant_id == tenant_id:  # the subject says so too; the payload must agree
                on_feed(decoded, position)

        return await self._watch((subjects.feed_subjects(tenant_id), feed))

    async def _watch(self, *wanted: tuple[str, _Callback]) -> NatsInterest:
        subscriptions: list[Subscription] = []
        try:
            with unavailable("NATS: cannot subscribe"):
                for subject, cb in wanted:
                    subscriptions.append(await self._nc.subscribe(subject, cb=cb))
                await self._nc.flush()
        except BaseException:
            await NatsInterest(subscriptions).cancel()
            raise
        return NatsInterest(subscriptions)


class NatsAnnouncer:
    """Typing and presence announcements: core NATS, ephemeral (a client that misses one asks for
    the current state when it reconnects)."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc

    async def publish_typing(self, tenant_id: uuid.UUID, channel_id: uuid.UUID, notice: TypingNotice) -> None:
        record = TypingRecord(user_id=notice.user_id, display_name=notice.display_name)
        with unavailable("NATS: typing not sent"):
            await self._nc.publish(
                subjects.typing_subject(tenant_id, channel_id), message_encoder.encode(record)
            )

    async def publish_presence(self, change: PresenceChange) -> None:
        payload = message_encoder.encode(PresenceRecord.of(change))
        with unavailable("NATS: presence not announced"):
            await self._nc.publish(subjects.presence_subject(change.tenant_id, change.user_id), payload)
