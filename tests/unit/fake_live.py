"""A fake live feed (``core.ports.LiveFeed``): registered callbacks that tests call as NATS would."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from echonats.core.ports import (
    OnEntry,
    OnEvent,
    OnFeed,
    OnPresence,
    OnTyping,
)
from echonats.model import (
    Message,
)

# -- live feed --------------------------------------------------------------------------------------


class FakeInterest:
    def __init__(self, feed: FakeLiveFeed, key: object) -> None:
        self._feed = feed
        self._key = key

    async def cancel(self) -> None:
        self._feed.watching.pop(self._key, None)


class FakeLiveFeed:
    """The live feed: ``watching`` holds the registered callbacks by what they watch (a
    ``(tenant_id, channel_id)``, a tenant id for presence, ``("events", tenant_id)``); tests deliver
    by calling them (``deliver``) as the stream's RePublish would."""

    def __init__(self) -> None:
        self.watching: dict[object, tuple[object, ...]] = {}

    async def watch_channel(
        self, tenant_id: uuid.UUID, channel_id: uuid.UUID, on_entry: OnEntry, on_typing: OnTyping
    ) -> FakeInterest:
        return self._watch((tenant_id, channel_id), on_entry, on_typing)

    async def watch_presence(self, tenant_id: uuid.UUID, on_presence: OnPresence) -> FakeInterest:
        return self._watch(tenant_id, on_presence)

    async def watch_events(
        self, tenant_id: uuid.UUID | None, event_types: Sequence[str], on_event: OnEvent
    ) -> FakeInterest:
        return self._watch(("events", tenant_id), tuple(event_types), on_event)

    async def watch_feed(self, tenant_id: uuid.UUID, on_feed: OnFeed) -> FakeInterest:
        return self._watch(("feed", tenant_id), on_feed)

    def _watch(self, key: object, *callbacks: object) -> FakeInterest:
        self.watching[key] = callbacks
        return FakeInterest(self, key)

    async def deliver(self, message: Message, previous_id: int) -> None:
        on_message = self.watching[(message.tenant_id, message.channel_id)][0]
        await on_message(message, previous_id)  # type: ignore[operator]
