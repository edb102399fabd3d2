"""Edits, deletions, reactions, threads and pins: rules, permissions, and the same latest state
whether read from the log's tail (worker behind or stopped), from the store, or from both."""

from __future__ import annotations

import random
import uuid

import pytest

from echonats.core.caller import Caller
from echonats.core.messaging import Written
from echonats.model import Message, Reaction, Role, Unchanged
from echonats.model.errors import Forbidden, LimitExceeded, MessageGone, NotFound, ValidationFailed
from tests.unit.fakes import Harness


@pytest.fixture
def h() -> Harness:
    return Harness.build(first_message_id=1000)


async def _world(h: Harness) -> tuple[Caller, Caller, Caller, uuid.UUID]:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    bob = await h.member(owner, "bob")
    general = await h.services.channels.create(owner, name="general", is_private=False)
    return owner, ann, bob, general.id


async def _edit(h: Harness, caller: Caller, channel: uuid.UUID, message_id: int, body: str) -> Written:
    change = await h.services.changes.check_edit(caller, channel, message_id, body=body, nonce=None)
    return await h.services.messaging.write(caller, change)


async def _delete(h: Harness, caller: Caller, channel: uuid.UUID, message_id: int) -> Written:
    change = await h.services.changes.check_delete(caller, channel, message_id, nonce=None)
    return await h.services.messaging.write(caller, change)


async def _react(
    h: Harness, caller: Caller, channel: uuid.UUID, message_id: int, emoji: str, added: bool = True
) -> Written:
    change = await h.services.changes.check_reaction(
        caller, channel, message_id, emoji=emoji, added=added, nonce=None
    )
    return await h.services.messaging.write(caller, change)


async def _pin(
    h: Harness, caller: Caller, channel: uuid.UUID, message_id: int, pinned: bool = True
) -> Written:
    change = await h.services.changes.check_pin(caller, channel, message_id, pinned=pinned, nonce=None)
    return await h.services.messaging.write(caller, change)


async def _message(h: Harness, caller: Caller, channel: uuid.UUID, message_id: int) -> Message:
    return await h.services.messaging.message(caller, channel, message_id)


async def test_an_edit_is_its_own_entry_and_history_shows_the_latest_body(h: Harness) -> None:
    _, ann, bob, channel = await _world(h)
    sent = await h.services.messaging.send(ann, channel, body="helo", nonce=None)
    edit = await _edit(h, ann, channel, sent.id, "  hello  ")
    assert not isinstance(edit, Unchanged)
    assert edit.id > sent.id
    for persisted in (False, True):
        if persisted:
            h.log.persist_all()
        seen = await _message(h, bob, channel, sent.id)
        assert (seen.body, seen.edited_at is not None) == ("hello", True)
    with pytest.raises(Forbidden):
        await h.services.changes.check_edit(bob, channel, sent.id, body="mine now", nonce=None)
    with pytest.raises(ValidationFailed):
        await h.services.changes.check_edit(ann, channel, sent.id, body="   ", nonce=None)


async def test_delete_leaves_a_tombstone_and_only_authors_and_moderators_may(h: Harness) -> None:
    owner, ann, bob, channel = await _world(h)
    first = await h.services.messaging.send(ann, channel, body="one", nonce=None)
    second = await h.services.messaging.send(ann, channel, body="two", nonce=None)
    await _react(h, bob, channel, first.id, "👍")
    await _pin(h, bob, channel, first.id)
    with pytest.raises(Forbidden):
        await h.services.changes.check_delete(bob, channel, first.id, nonce=None)
    await _delete(h, ann, channel, first.id)  # the author
    await _delete(h, owner, channel, second.id)  # a workspace owner
    assert isinstance(await _delete(h, ann, channel, first.id), Unchanged)  # idempotent
    for persisted in (False, True):
        if persisted:
            h.log.persist_all()
        tomb = await _message(h, bob, channel, first.id)
        assert (tomb.deleted, tomb.body, tomb.reactions, tomb.pinned) == (True, "", (), False)
        page = await h.services.messaging.history(bob, channel)
        assert [m.id for m in page.items] == [second.id, first.id]  # kept in place
        assert await h.services.messaging.pins(bob, channel) == []
    with pytest.raises(MessageGone):
        await h.services.changes.check_edit(ann, channel, first.id, body="back", nonce=None)
    with pytest.raises(MessageGone):
        await h.services.changes.check_reaction(bob, channel, first.id, emoji="🎉", added=True, nonce=None)


async def test_a_channel_admin_may_delete_others_messages(h: Harness) -> None:
    owner, ann, bob, _ = await _world(h)
    room = await h.services.channels.create(bob, name="bobs-room", is_private=False)  # bob owns it
    await h.services.channels.join(ann, room.id)
    sent = await h.services.messaging.send(ann, room.id, body="hi", nonce=None)
    await _delete(h, bob, room.id, sent.id)
    assert (await _message(h, owner, room.id, sent.id)).deleted


async def test_reactions_count_per_emoji_with_me_and_are_idempotent(h: Harness) -> None:
    _, ann, bob, channel = await _world(h)
    sent = await h.services.messaging.send(ann, channel, body="vote", nonce=None)
    await _react(h, ann, channel, sent.id, "👍")
    await _react(h, bob, channel, sent.id, "👍")
    await _react(h, bob, channel, sent.id, ":tada:")
    assert isinstance(await _react(h, bob, channel, sent.id, "👍"), Unchanged)
    assert isinstance(await _react(h, ann, channel, sent.id, "🎉", added=False), Unchanged)
    h.log.persist_up_to(h.log.last_id - 1)  # the store has some, the tail the rest
    assert (await _message(h, ann, channel, sent.id)).reactions == (  # in emoji (code point) order
        Reaction(":tada:", 1, False),
        Reaction("👍", 2, True),
    )
    await _react(h, bob, channel, sent.id, "👍", added=False)
    for persisted in (False, True):
        if persisted:
            h.log.persist_all()
        assert (await _message(h, bob, channel, sent.id)).reactions == (
            Reaction(":tada:", 1, True),
            Reaction("👍", 1, False),
        )
    with pytest.raises(ValidationFailed):
        await h.services.changes.check_reaction(ann, channel, sent.id, emoji="no", added=True, nonce=None)


async def test_at_most_twenty_distinct_emoji_per_message(h: Harness) -> None:
    _, ann, _, channel = await _world(h)
    sent = await h.services.messaging.send(ann, channel, body="many", nonce=None)
    for i in range(20):
        await _react(h, ann, channel, sent.id, f":e{i}:")
    with pytest.raises(LimitExceeded):
        await h.services.changes.check_reaction(ann, channel, sent.id, emoji=":e20:", added=True, nonce=None)
    await _react(h, ann, channel, sent.id, ":e3:", added=False)  # taking one back is always allowed
    await _react(h, ann, channel, sent.id, ":e20:")


async def test_threads_count_replies_and_stay_out_of_the_channel_listing(h: Harness) -> None:
    _, ann, bob, channel = await _world(h)
    root = await h.services.messaging.send(ann, channel, body="root", nonce=None)
    r1 = await h.services.messaging.send(bob, channel, body="r1", nonce=None, thread_id=root.id)
    r2 = await h.services.messaging.send(
        bob, channel, body="r2", nonce=None, thread_id=root.id, also_to_channel=True
    )
    r3 = await h.services.messaging.send(ann, channel, body="r3", nonce=None, thread_id=root.id)
    await _delete(h, ann, channel, r3.id)
    for persisted in (False, True):
        if persisted:
            h.log.persist_all()
        listing = await h.services.messaging.history(bob, channel)
        assert [m.id for m in listing.items] == [r2.id, root.id]
        got_root, replies = await h.services.messaging.thread(bob, channel, root.id)
        assert (got_root.reply_count, got_root.last_reply_at) == (2, r3.created_at)
        assert [m.id for m in replies.items] == [r3.id, r2.id, r1.id]
    with pytest.raises(ValidationFailed):  # a reply cannot be a root
        await h.services.messaging.send(ann, channel, body="x", nonce=None, thread_id=r1.id)
    with pytest.raises(NotFound):
        await h.services.messaging.send(ann, channel, body="x", nonce=None, thread_id=999_999)
    with pytest.raises(ValidationFailed):
        await h.services.messaging.send(ann, channel, body="x", nonce=None, also_to_channel=True)
    other = await h.services.channels.create(ann, name="other", is_private=False)
    with pytest.raises(NotFound):  # a root of another channel
        await h.services.messaging.send(ann, other.id, body="x", nonce=None, thread_id=root.id)


async def test_pins_list_newest_pin_first(h: Harness) -> None:
    _, ann, bob, channel = await _world(h)
    a = await h.services.messaging.send(ann, channel, body="a", nonce=None)
    b = await h.services.messaging.send(ann, channel, body="b", nonce=None)
    await _pin(h, bob, channel, b.id)
    await _pin(h, bob, channel, a.id)
    assert isinstance(await _pin(h, bob, channel, a.id), Unchanged)
    h.log.persist_all()
    await _pin(h, ann, channel, b.id, pinned=False)
    await _pin(h, ann, channel, b.id)  # pinned again: now the newest pin
    assert [m.id for m in await h.services.messaging.pins(bob, channel)] == [b.id, a.id]
    h.log.persist_all()
    assert [m.id for m in await h.services.messaging.pins(bob, channel)] == [b.id, a.id]


async def test_non_members_and_other_tenants_cannot_see_or_change_anything(h: Harness) -> None:
    owner, ann, bob, _ = await _world(h)
    secret = await h.services.channels.create(ann, name="secret", is_private=True)
    sent = await h.services.messaging.send(ann, secret.id, body="psst", nonce=None)
    stranger = await h.member(await h.new_tenant("Other"), "mallory", Role.OWNER)
    for outsider in (bob, stranger):
        attempts = [
            h.services.changes.check_edit(outsider, secret.id, sent.id, body="x", nonce=None),
            h.services.changes.check_delete(outsider, secret.id, sent.id, nonce=None),
            h.services.changes.check_reaction(
                outsider, secret.id, sent.id, emoji="👍", added=True, nonce=None
            ),
            h.services.changes.check_pin(outsider, secret.id, sent.id, pinned=True, nonce=None),
            h.services.messaging.thread(outsider, secret.id, sent.id),
            h.services.messaging.pins(outsider, secret.id),
            h.services.messaging.message(outsider, secret.id, sent.id),
        ]
        for attempt in attempts:
            with pytest.raises(NotFound):
                await attempt
    # A message id of a channel the caller can read, asked for through another channel: not found.
    general = (await h.services.channels.list_visible(owner))[0]
    with pytest.raises(NotFound):
        await h.services.changes.check_reaction(
            owner, general.id, sent.id, emoji="👍", added=True, nonce=None
        )


async def test_a_resent_change_with_the_same_nonce_gets_the_original(h: Harness) -> None:
    _, ann, _, channel = await _world(h)
    sent = await h.services.messaging.send(ann, channel, body="a", nonce=None)
    first = await h.services.messaging.write(
        ann, await h.services.changes.check_edit(ann, channel, sent.id, body="b", nonce="n1")
    )
    again = await h.services.messaging.write(
        ann, await h.services.changes.check_edit(ann, channel, sent.id, body="b", nonce="n1")
    )
    assert first == again
    assert len(h.log.stream) == 2


@pytest.mark.parametrize("seed", range(40))
async def test_any_mix_reads_the_same_from_the_tail_the_store_or_both(h: Harness, seed: int) -> None:
    """The fold of the tail over the store equals the store's own application of every entry,
    whatever the floor, and also when entries above the floor are already stored."""
    rng = random.Random(seed)
    owner, ann, bob, channel = await _world(h)
    people = [owner, ann, bob]
    ids: list[int] = []
    for _ in range(60):
        who = rng.choice(people)
        op = rng.random()
        live = [i for i in ids if not (await _message(h, who, channel, i)).deleted]
        if op < 0.3 or not live:
            root = rng.choice([None, *ids[:5]]) if ids else None
            if root is not None and (await _message(h, who, channel, root)).deleted:
                root = None
            roots_ok = root is None or (await _message(h, who, channel, root)).thread_id is None
            sent = await h.services.messaging.send(
                who, channel, body=f"m{len(ids)}", nonce=None, thread_id=root if roots_ok else None
            )
            ids.append(sent.id)
        elif op < 0.55:
            await _react(
                h, who, channel, rng.choice(live), rng.choice(["👍", "🎉", ":x:"]), rng.random() < 0.7
            )
        elif op < 0.7:
            target = rng.choice(live)
            if (await _message(h, who, channel, target)).sender_id == who.user_id:
                await _edit(h, who, channel, target, f"edited {rng.random()}")
        elif op < 0.85:
            await _pin(h, who, channel, rng.choice(live), rng.random() < 0.6)
        else:
            await _delete(h, owner, channel, rng.choice(live))

    async def state(viewer: Caller) -> list[Message]:
        return [await _message(h, viewer, channel, i) for i in ids]

    expected = {p.user_id: await state(p) for p in people}  # nothing persisted: all from the tail
    floor = rng.randrange(1000, h.log.last_id)
    h.log.persist_up_to(floor)
    h.log.persist_above_floor(rng.sample(range(floor + 1, h.log.last_id + 1), (h.log.last_id - floor) // 2))
    _same(expected, {p.user_id: await state(p) for p in people})
    h.log.persist_all()
    _same(expected, {p.user_id: await state(p) for p in people})


def _same(expected: dict[str, list[Message]], got: dict[str, list[Message]]) -> None:
    for viewer, messages in expected.items():
        for want, have in zip(messages, got[viewer], strict=True):
            assert have == want, f"seen by {viewer}"


async def test_a_page_names_the_log_position_its_state_is_at(h: Harness) -> None:
    _, ann, bob, channel = await _world(h)
    first = await h.services.messaging.send(ann, channel, body="one", nonce=None)
    second = await h.services.messaging.send(ann, channel, body="two", nonce=None)
    assert (await h.services.messaging.history(bob, channel)).position == second.id  # all in the tail
    edit = await _edit(h, ann, channel, first.id, "one, edited")
    assert not isinstance(edit, Unchanged)
    older = await h.services.messaging.history(bob, channel, before=second.id)
    # An older page also holds every change up to the position: `since=position` misses nothing.
    assert ([m.body for m in older.items], older.position) == (["one, edited"], edit.id)
    h.log.persist_up_to(second.id)  # the edit is still only in the tail
    assert (await h.services.messaging.history(bob, channel)).position == edit.id
    h.log.persist_all()
    page = await h.services.messaging.history(bob, channel)
    assert page.position == h.log.floor  # everything is in the store up to the floor
    assert page.position >= edit.id
