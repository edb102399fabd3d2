"""The fakes themselves: they must honour the ports' documented semantics, or the core tests lie."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from echonats.core.ports import Appended
from echonats.model import Channel, NewMessage, Role, Tenant, User
from echonats.model import events as ev
from echonats.model.errors import Conflict, Unavailable
from tests.unit.fakes import EPOCH, FakeMessageLog, InMemoryStore, RecordingPublisher


def _tenant() -> Tenant:
    return Tenant(uuid.uuid4(), "Acme", 10, 10, EPOCH)


def _channel(tenant_id: uuid.UUID, name: str, *, private: bool = False) -> Channel:
    return Channel(uuid.uuid4(), tenant_id, name, "", private, None, EPOCH)


async def append(log: FakeMessageLog, message: NewMessage) -> Appended:
    return await (await log.begin_append(message))


ANN, BOB = User("ann", "Ann", "ann@example.com"), User("bob", "Bob", None)


async def _seeded() -> tuple[InMemoryStore, uuid.UUID]:
    store = InMemoryStore()
    tenant = _tenant()
    async with store.transaction() as tx:
        await tx.tenants.add(tenant)
        await tx.users.ensure(ANN)
        await tx.users.ensure(BOB)
    return store, tenant.id


async def test_a_transaction_rolls_back_every_write_on_error() -> None:
    store, tenant_id = await _seeded()

    async def failing() -> None:
        async with store.transaction() as tx:
            await tx.members.add(tenant_id, ANN, Role.OWNER)
            await tx.channels.add(_channel(tenant_id, "general"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    assert store.state.members == {}
    assert store.state.channels == {}
    assert (store.commits, store.rollbacks) == (1, 1)
    async with store.read() as tx:
        assert (await tx.members.state(tenant_id, "ann")).member is None


async def test_read_refuses_writes() -> None:
    store, tenant_id = await _seeded()
    async with store.read() as tx:
        with pytest.raises(AssertionError):
            await tx.members.add(tenant_id, ANN, Role.MEMBER)


async def test_member_add_conflicts_when_present_and_reinstate_undoes_a_removal() -> None:
    store, tenant_id = await _seeded()
    async with store.transaction() as tx:
        added = await tx.members.add(tenant_id, ANN, Role.ADMIN)
        assert (added.display_name, added.email, added.role) == ("Ann", "ann@example.com", Role.ADMIN)
        with pytest.raises(Conflict):
            await tx.members.add(tenant_id, ANN, Role.MEMBER)
        assert await tx.members.reinstate(tenant_id, "ann", Role.MEMBER) is None  # not removed
        assert await tx.members.remove(tenant_id, "ann", ban=True)
        assert not await tx.members.remove(tenant_id, "ann", ban=True)
        assert (await tx.members.state(tenant_id, "ann")).removed
        assert await tx.members.set_role(tenant_id, "ann", Role.OWNER) is None
        with pytest.raises(Conflict):  # a removed member is reinstated, not added again
            await tx.members.add(tenant_id, ANN, Role.MEMBER)
        back = await tx.members.reinstate(tenant_id, "ann", Role.MEMBER)
        assert back is not None
        assert (back.role, back.display_name) == (Role.MEMBER, "Ann")
        await tx.members.add(tenant_id, BOB, Role.MEMBER)
        assert await tx.members.remove(tenant_id, "bob", ban=False)
        assert (await tx.members.state(tenant_id, "bob")) == (await tx.members.state(tenant_id, "zed"))
        with pytest.raises(Conflict):  # no such user: a foreign key violation
            await tx.members.add(tenant_id, User("zed", "Zed", None), Role.MEMBER)


async def test_user_ensure_leaves_an_existing_identity_unchanged() -> None:
    store, _ = await _seeded()
    async with store.transaction() as tx:
        await tx.users.ensure(User("ann", "Ann B.", None))
    assert store.state.users["ann"] == ANN


async def test_channel_names_conflict_case_insensitively_within_a_tenant() -> None:
    store, tenant_id = await _seeded()
    other = _tenant()
    general = _channel(tenant_id, "General")
    async with store.transaction() as tx:
        await tx.tenants.add(other)
        await tx.channels.add(general)
        await tx.channels.add(_channel(other.id, "general"))
        with pytest.raises(Conflict):
            await tx.channels.add(_channel(tenant_id, "GENERAL"))
        await tx.channels.update(replace(general, name="general"))  # itself: fine
        assert await tx.channels.count(tenant_id) == 1


async def test_list_visible_is_public_plus_member_private_sorted_by_lower_name() -> None:
    store, tenant_id = await _seeded()
    names = {"b": False, "A": True, "c": True, "D": False}
    async with store.transaction() as tx:
        for name, private in names.items():
            channel = _channel(tenant_id, name, private=private)
            await tx.channels.add(channel)
            if name == "c":
                assert await tx.channels.add_member(tenant_id, channel.id, "ann", Role.MEMBER)
                assert not await tx.channels.add_member(tenant_id, channel.id, "ann", Role.OWNER)
        assert [c.name for c in await tx.channels.list_visible(tenant_id, "ann")] == ["b", "c", "D"]
        assert [c.name for c in await tx.channels.list_visible(tenant_id, "bob")] == ["b", "D"]


async def test_message_page_cursors_are_exclusive_and_direction_follows_the_adapter() -> None:
    store, tenant_id = await _seeded()
    channel = _channel(tenant_id, "general")
    log = FakeMessageLog(store, first_id=10)
    for i in range(6):
        await append(log, NewMessage(tenant_id, channel.id, "ann", "stale name", f"m{i}", None, EPOCH))
    log.persist_all()
    async with store.read() as tx:

        async def ids(before: int | None, after: int | None, limit: int = 10) -> list[int]:
            rows = await tx.messages.page(channel.id, before=before, after=after, limit=limit, viewer="ann")
            return [r.message.id for r in rows]

        assert await ids(None, None) == [15, 14, 13, 12, 11, 10]
        assert await ids(13, None) == [12, 11, 10]
        assert await ids(None, 12) == [13, 14, 15]  # only `after`: ascending
        assert await ids(15, 11) == [14, 13, 12]  # both: descending
        assert await ids(None, 11, limit=2) == [12, 13]
        page = await tx.messages.page(channel.id, before=None, after=None, limit=1, viewer="ann")
        assert page[0].message.sender_display_name == "stale name"  # as sent: rows keep the send-time name


async def test_log_dedupes_and_reports_only_unpersisted_messages() -> None:
    store, tenant_id = await _seeded()
    a, b = uuid.uuid4(), uuid.uuid4()
    log = FakeMessageLog(store, first_id=100)

    def msg(channel_id: uuid.UUID, nonce: str | None) -> NewMessage:
        return NewMessage(tenant_id, channel_id, "ann", "Ann", "hi", nonce, EPOCH)

    first = await append(log, msg(a, "n"))
    assert (first.message_id, first.duplicate) == (100, False)
    dup = await append(log, msg(a, "n"))
    assert (dup.message_id, dup.duplicate) == (100, True)
    assert (await append(log, msg(b, "n"))).message_id == 101
    assert (await append(log, msg(a, None))).message_id == 102
    assert (await append(log, msg(a, None))).message_id == 103

    assert [m.id for m in await log.tail(tenant_id, a)] == [100, 102, 103]
    log.persist_up_to(102)
    assert sorted(store.state.messages) == [100, 101, 102]
    assert [m.id for m in await log.tail(tenant_id, a)] == [103]
    assert await log.tail(uuid.uuid4(), a) == []

    await log.forget_channel(tenant_id, a)
    assert [m.channel_id for m in log.stream.values()] == [b]
    assert await log.get(100) is None


async def test_publisher_forgets_outbox_rows_only_when_it_publishes() -> None:
    store = InMemoryStore()
    event = ev.MemberJoined(
        tenant_id=uuid.uuid4(),
        occurred_at=EPOCH,
        payload=ev.MemberData(user_id="ann", display_name="Ann", role="member"),
    )
    async with store.transaction() as tx:
        await tx.outbox.add(event)
    publisher = RecordingPublisher(store)
    publisher.fail()
    with pytest.raises(Unavailable):
        await publisher.publish([event])
    assert store.outbox_events() == [event]
    publisher.fail_with = None
    await publisher.publish([event])
    assert publisher.published == [event]
    assert store.outbox_events() == []
