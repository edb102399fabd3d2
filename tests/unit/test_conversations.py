"""ConversationService and StatusService on the fakes: DMs, read state, counts, mentions, status."""

from __future__ import annotations

from datetime import timedelta

import pytest

from echonats.core.caller import Caller
from echonats.model import ManualPresence, PresenceStatus, Role
from echonats.model.errors import Conflict, Forbidden, NotFound, ValidationFailed
from tests.unit.fakes import Harness


@pytest.fixture
def h() -> Harness:
    return Harness.build(first_message_id=100)


async def _people(h: Harness) -> tuple[Caller, Caller, Caller]:
    owner = await h.new_tenant()
    return owner, await h.member(owner, "ann"), await h.member(owner, "bob")


async def test_the_same_member_set_opens_the_same_dm_and_its_membership_is_fixed(h: Harness) -> None:
    owner, ann, bob = await _people(h)
    first = await h.services.conversations.open_dm(ann, ["bob", owner.user_id])
    again = await h.services.conversations.open_dm(bob, [owner.user_id, "ann", "ann"])
    assert first.channel.id == again.channel.id
    assert first.member_ids == tuple(sorted(["ann", "bob", owner.user_id]))
    assert (await h.services.conversations.open_dm(ann, ["bob"])).channel.id != first.channel.id
    assert first.channel.id not in {c.id for c in await h.services.channels.list_visible(ann)}
    for attempt in (
        h.services.channels.leave(ann, first.channel.id),
        h.services.channels.update(ann, first.channel.id, name="x", topic=None),
        h.services.channels.add_member(ann, first.channel.id, "bob"),
    ):
        with pytest.raises(Forbidden):
            await attempt
    with pytest.raises(NotFound):
        await h.services.conversations.open_dm(ann, ["nobody"])
    for i in range(9):
        await h.member(owner, f"u{i}")
    with pytest.raises(ValidationFailed):
        await h.services.conversations.open_dm(ann, [f"u{i}" for i in range(9)])
    assert "dm.opened" in h.publisher.types


async def test_read_state_moves_forward_unless_marked_unread_and_counts_follow(h: Harness) -> None:
    owner, ann, bob = await _people(h)
    general = await h.services.channels.create(owner, name="general", is_private=False)
    for user in (ann, bob):
        await h.services.channels.join(user, general.id)
    sent = [
        await h.services.messaging.send(bob, general.id, body=body, nonce=None)
        for body in ("one", "<@ann> two", "@channel three", "four")
    ]
    await h.services.messaging.send(ann, general.id, body="mine", nonce=None)
    h.log.persist_all()
    [state] = [u for u in await h.services.conversations.unreads(ann) if u.channel_id == general.id]
    assert (state.unread, state.mentions, state.last_read_id) == (4, 2, 0)
    assert await h.services.conversations.mark_read(ann, general.id, sent[2].id) == sent[2].id
    assert await h.services.conversations.mark_read(ann, general.id, sent[0].id) == sent[2].id  # forward only
    [state] = [u for u in await h.services.conversations.unreads(ann) if u.channel_id == general.id]
    assert (state.unread, state.mentions) == (1, 0)
    assert (
        await h.services.conversations.mark_read(ann, general.id, sent[1].id, unread_from=True) == sent[0].id
    )
    [state] = [u for u in await h.services.conversations.unreads(ann) if u.channel_id == general.id]
    assert (state.unread, state.mentions) == (3, 2)
    mentions, cursor = await h.services.conversations.mentions(ann, before=None, limit=10)
    assert ([m.id for m in mentions], cursor) == ([sent[2].id, sent[1].id], None)
    outsider = await h.member(owner, "cy")
    with pytest.raises(Conflict):  # a public channel cy may read but has not joined
        await h.services.conversations.mark_read(outsider, general.id, sent[0].id)


async def test_at_channel_notifies_only_where_the_sender_may(h: Harness) -> None:
    owner, ann, _ = await _people(h)
    big = await h.services.channels.create(owner, name="big", is_private=False)
    for i in range(101):
        await h.services.channels.join(await h.member(owner, f"m{i}"), big.id)
    await h.services.channels.join(ann, big.id)
    plain = await h.services.messaging.check(ann, big.id, body="@here hello <@m1> <@ann>", nonce=None)
    assert (plain.mentions_channel, plain.mentions) == (False, ("m1",))  # a member, 102 members: plain text
    admin = await h.member(owner, "boss", Role.ADMIN)
    await h.services.channels.join(admin, big.id)
    assert (await h.services.messaging.check(admin, big.id, body="@channel", nonce=None)).mentions_channel


async def test_a_status_is_set_shown_until_it_expires_and_cleared(h: Harness) -> None:
    owner, ann, _ = await _people(h)
    until = h.clock.now() + timedelta(minutes=30)
    status = await h.services.status.set_status(
        ann, presence=ManualPresence.DND, text=" focus ", expires_at=until
    )
    assert status is not None
    assert status.text == "focus"
    assert h.publisher.types[-1] == "member.status_changed"

    class NoConnections:
        async def statuses(self, tenant_id: object, user_ids: list[str]) -> dict[str, PresenceStatus]:
            return {}

    [view] = await h.services.status.views(owner, NoConnections(), ["ann"])  # type: ignore[arg-type]
    assert (view.status, view.own) == (PresenceStatus.OFFLINE, status)
    h.clock.advance(31 * 60)
    [view] = await h.services.status.views(owner, NoConnections(), ["ann"])  # type: ignore[arg-type]
    assert view.own is None  # expired
    assert await h.services.status.set_status(ann, presence=None, text="", expires_at=None) is None
    with pytest.raises(ValidationFailed):
        await h.services.status.set_status(
            ann, presence=ManualPresence.AWAY, text="", expires_at=h.clock.now()
        )
