"""The per-user live feed: who gets which frame, and a catch-up that neither skips nor repeats."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from echonats.gateway import feed_frames as ff
from echonats.gateway.feed import FeedRouter
from echonats.model import DomainEvent
from echonats.model import events as ev
from tests.unit.fake_live import FakeLiveFeed
from tests.unit.fakes import EPOCH

T = uuid.UUID(int=1)
PRIVATE = ev.ChannelData(
    channel_id=uuid.UUID(int=9), name="secret", topic="", is_private=True, created_by="ann"
)
PUBLIC = ev.ChannelData(
    channel_id=uuid.UUID(int=8), name="town", topic="", is_private=False, created_by="ann"
)


def _never(channel_id: uuid.UUID) -> bool:
    return False


def test_nothing_of_a_private_channel_or_a_dm_reaches_a_non_member() -> None:
    def created(channel: ev.ChannelData) -> DomainEvent:
        return ev.ChannelCreated(tenant_id=T, occurred_at=EPOCH, actor_id="ann", payload=channel)

    renamed = ev.ChannelUpdated(tenant_id=T, occurred_at=EPOCH, actor_id="ann", payload=PRIVATE)
    added = ev.ChannelMemberAdded(
        tenant_id=T,
        occurred_at=EPOCH,
        payload=ev.ChannelMemberAddedData(channel_id=PRIVATE.channel_id, user_id="cy", added_by="ann"),
    )
    dm = ev.DmOpened(
        tenant_id=T, occurred_at=EPOCH, payload=ev.DmData(channel=PRIVATE, member_ids=("ann", "cy"))
    )
    read = ev.ReadStateChanged(
        tenant_id=T,
        occurred_at=EPOCH,
        payload=ev.ReadStateData(user_id="cy", channel_id=PUBLIC.channel_id, last_read_id=3),
    )
    for event, recipients in (
        (created(PUBLIC), {"ann", "bob", "cy"}),
        (created(PRIVATE), {"ann"}),
        (renamed, {"ann"}),  # and whoever receives the channel, below
        (added, {"cy"}),
        (dm, {"ann", "cy"}),
        (read, {"cy"}),
    ):
        assert {u for u in ("ann", "bob", "cy") if ff.audience(event, u, _never)} == recipients, event.type
    assert ff.audience(renamed, "bob", lambda channel_id: channel_id == PRIVATE.channel_id)


class _Socket:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.tenant_id = T
        self.frames: list[dict[str, Any]] = []

    def offer_frame(self, frame: bytes, *, ephemeral: bool = False) -> None:
        self.frames.append(json.loads(frame[frame.index(b"{") :]))  # past the WebSocket header

    def offer(self, text: str, *, ephemeral: bool = False) -> None:
        self.frames.append(json.loads(text))


def _read(position: int) -> DomainEvent:
    data = ev.ReadStateData(user_id="cy", channel_id=PUBLIC.channel_id, last_read_id=position)
    return ev.ReadStateChanged(tenant_id=T, occurred_at=EPOCH, payload=data)


class _Log:
    """The event log: positions 1..n; ``during_read`` runs while a read is under way (what the
    live feed delivers meanwhile)."""

    def __init__(self, events: dict[int, DomainEvent]) -> None:
        self.events = events
        self.during_read: Callable[[], None] = lambda: None

    async def read_feed(
        self, tenant_id: uuid.UUID, *, start: int, limit: int
    ) -> tuple[list[tuple[int, DomainEvent]], bool]:
        self.during_read()
        found = [(p, e) for p, e in sorted(self.events.items()) if p >= start]
        return found[:limit], len(found) > limit

    async def first_feed_position(self) -> int:
        return min(self.events, default=1)


async def test_a_catch_up_replays_the_missed_frames_then_the_live_ones_each_once_in_order() -> None:
    live = FakeLiveFeed()
    log = _Log({p: _read(p) for p in range(1, 6)})
    router = FeedRouter(live, log, replay_limit=100, receives=lambda conn, channel_id: False)
    cy = _Socket("cy")
    await router.attach(cy)  # type: ignore[arg-type]
    on_feed = live.watching[("feed", T)][0]

    def live_meanwhile() -> None:
        for position in (5, 6):  # 5 is in the log too, 6 is stored just now
            log.events[position] = _read(position)
            on_feed(_read(position), position)  # type: ignore[operator]
        assert cy.frames == []  # held while replaying

    log.during_read = live_meanwhile
    await router.resume(cy, since=2)  # type: ignore[arg-type]
    assert [f["feedId"] for f in cy.frames] == [3, 4, 5, 6]
    on_feed(_read(6), 6)  # type: ignore[operator]  # a duplicate delivery changes nothing
    assert [f["feedId"] for f in cy.frames] == [3, 4, 5, 6]


async def test_too_much_missed_asks_for_a_resync() -> None:
    live = FakeLiveFeed()
    router = FeedRouter(
        live, _Log({p: _read(p) for p in range(1, 50)}), replay_limit=10, receives=lambda c, i: False
    )
    cy = _Socket("cy")
    await router.attach(cy)  # type: ignore[arg-type]
    await router.resume(cy, since=0)  # type: ignore[arg-type]
    assert [f["type"] for f in cy.frames] == ["feed_resync_required"]
