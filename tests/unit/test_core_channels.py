"""ChannelService: creation and quota, visibility of private channels, moderation, join/leave, delete."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from echonats.core.caller import Caller
from echonats.core.ports import TenantLimits
from echonats.core.services import Services
from echonats.model import Channel, Role
from echonats.model import events as ev
from echonats.model.errors import Conflict, Forbidden, LimitExceeded, NotFound, Unavailable, ValidationFailed
from tests.unit.fakes import PLATFORM_ADMIN, Harness


@pytest.fixture
def h() -> Harness:
    return Harness.build()


async def test_create_adds_the_creator_as_owner_and_publishes_channel_created(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    h.publisher.clear()

    channel = await h.services.channels.create(ann, name="  general ", is_private=False, topic=" chat ")

    assert channel.name == "general"
    assert channel.topic == "chat"
    assert channel.tenant_id == owner.tenant_id
    assert channel.created_by == "ann"
    assert h.store.state.channels[channel.id] == channel
    members = await h.services.channels.members(ann, channel.id)
    assert [(m.user_id, m.role) for m in members] == [("ann", Role.OWNER)]
    assert h.publisher.types == [ev.CHANNEL_CREATED]
    event = h.publisher.published[0]
    assert event.tenant_id == owner.tenant_id
    assert event.data == {
        "channelId": str(channel.id),
        "name": "general",
        "topic": "chat",
        "isPrivate": False,
        "createdBy": "ann",
    }
    assert h.publisher.during_transaction == [False]


@pytest.mark.parametrize("name", ["", "   ", "x" * 81, "two\nlines", "tab\there"])
async def test_create_validates_the_name(h: Harness, name: str) -> None:
    owner = await h.new_tenant()
    with pytest.raises(ValidationFailed):
        await h.services.channels.create(owner, name=name, is_private=False)
    assert h.store.state.channels == {}


async def test_max_channels_is_enforced(h: Harness) -> None:
    owner = await h.new_tenant()
    await h.services.membership.update_limits(PLATFORM_ADMIN, owner.tenant_id, TenantLimits(max_channels=2))
    await h.services.channels.create(owner, name="one", is_private=False)
    await h.services.channels.create(owner, name="two", is_private=True)
    h.publisher.clear()

    with pytest.raises(LimitExceeded) as raised:
        await h.services.channels.create(owner, name="three", is_private=False)

    assert raised.value.details == {"maxChannels": 2}
    assert sorted(c.name for c in h.store.state.channels.values()) == ["one", "two"]
    assert h.publisher.published == []

    # Deleting one frees a slot.
    one = next(c for c in h.store.state.channels.values() if c.name == "one")
    await h.services.channels.delete(owner, one.id)
    third = await h.services.channels.create(owner, name="three", is_private=False)
    assert third.id in h.store.state.channels


async def test_a_zero_quota_allows_no_channel(h: Harness) -> None:
    owner = await h.new_tenant()
    await h.services.membership.update_limits(PLATFORM_ADMIN, owner.tenant_id, TenantLimits(max_channels=0))
    with pytest.raises(LimitExceeded):
        await h.services.channels.create(owner, name="one", is_private=False)


async def test_the_quota_is_per_tenant(h: Harness) -> None:
    acme = await h.new_tenant("Acme")
    globex = await h.new_tenant("Globex")
    await h.services.membership.update_limits(PLATFORM_ADMIN, acme.tenant_id, TenantLimits(max_channels=1))
    await h.services.channels.create(acme, name="one", is_private=False)
    await h.services.channels.create(globex, name="one", is_private=False)  # same name, other tenant
    await h.services.channels.create(globex, name="two", is_private=False)
    with pytest.raises(LimitExceeded):
        await h.services.channels.create(acme, name="two", is_private=False)


async def test_channel_names_are_unique_per_tenant_case_insensitively(h: Harness) -> None:
    owner = await h.new_tenant()
    general = await h.services.channels.create(owner, name="General", is_private=False)
    random = await h.services.channels.create(owner, name="random", is_private=False)
    h.publisher.clear()

    with pytest.raises(Conflict):
        await h.services.channels.create(owner, name="gENERAL", is_private=True)
    with pytest.raises(Conflict):
        await h.services.channels.update(owner, random.id, name="GENERAL", topic=None)

    assert h.store.state.channels[random.id].name == "random"
    assert len(h.store.state.channels) == 2
    assert h.publisher.published == []
    # Renaming a channel to a different case of its own name is fine.
    renamed = await h.services.channels.update(owner, general.id, name="GENERAL", topic=None)
    assert renamed.name == "GENERAL"


async def test_list_visible_is_public_plus_own_private_sorted_case_insensitively(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    for name, private in (("zeta", False), ("Beta", False), ("alpha", True), ("Gamma", True)):
        channel = await h.services.channels.create(owner, name=name, is_private=private)
        if name == "Gamma":
            await h.services.channels.add_member(owner, channel.id, "ann")

    assert [c.name for c in await h.services.channels.list_visible(owner)] == [
        "alpha",
        "Beta",
        "Gamma",
        "zeta",
    ]
    assert [c.name for c in await h.services.channels.list_visible(ann)] == ["Beta", "Gamma", "zeta"]


async def test_channels_of_another_tenant_do_not_exist(h: Harness) -> None:
    acme = await h.new_tenant("Acme")
    globex = await h.new_tenant("Globex")
    channel = await h.services.channels.create(acme, name="general", is_private=False)
    with pytest.raises(NotFound):
        await h.services.channels.get(globex, channel.id)
    with pytest.raises(NotFound):
        await h.services.messaging.send(globex, channel.id, body="hi", nonce=None)
    assert await h.services.channels.list_visible(globex) == []


# -- private channels are invisible to non-members -------------------------------------------------

ChannelOp = Callable[[Services, Caller, uuid.UUID], Awaitable[object]]
OUTSIDER_OPS: dict[str, ChannelOp] = {
    "get": lambda s, c, ch: s.channels.get(c, ch),
    "members": lambda s, c, ch: s.channels.members(c, ch),
    "update": lambda s, c, ch: s.channels.update(c, ch, name="renamed", topic=None),
    "delete": lambda s, c, ch: s.channels.delete(c, ch),
    "join": lambda s, c, ch: s.channels.join(c, ch),
    "leave": lambda s, c, ch: s.channels.leave(c, ch),
    "add_member": lambda s, c, ch: s.channels.add_member(c, ch, c.user_id),
    "history": lambda s, c, ch: s.messaging.history(c, ch),
    "send": lambda s, c, ch: s.messaging.send(c, ch, body="hello", nonce=None),
}


@pytest.mark.parametrize("op", OUTSIDER_OPS)
@pytest.mark.parametrize("outsider_role", [Role.MEMBER, Role.ADMIN])
async def test_a_private_channel_is_not_found_for_non_members(
    h: Harness, op: str, outsider_role: Role
) -> None:
    owner = await h.new_tenant()
    creator = await h.member(owner, "ann")
    outsider = await h.member(owner, "bob", outsider_role)  # even a workspace admin
    secret = await h.services.channels.create(creator, name="secret", is_private=True)
    await h.services.messaging.send(creator, secret.id, body="classified", nonce=None)
    h.publisher.clear()

    with pytest.raises(NotFound):
        await OUTSIDER_OPS[op](h.services, outsider, secret.id)

    assert h.store.state.channels[secret.id].name == "secret"
    assert (secret.id, "bob") not in h.store.state.channel_members
    assert [m.body for m in h.log.stream.values()] == ["classified"]
    assert h.publisher.published == []


@pytest.mark.parametrize("op", OUTSIDER_OPS)
async def test_an_unknown_channel_is_not_found(h: Harness, op: str) -> None:
    owner = await h.new_tenant()
    with pytest.raises(NotFound):
        await OUTSIDER_OPS[op](h.services, owner, uuid.uuid4())


async def test_a_public_channel_is_readable_by_every_member(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    general = await h.services.channels.create(owner, name="general", is_private=False)
    sent = await h.services.messaging.send(owner, general.id, body="welcome", nonce=None)

    assert (await h.services.channels.get(ann, general.id)).id == general.id
    assert [m.user_id for m in await h.services.channels.members(ann, general.id)] == [owner.user_id]
    history = await h.services.messaging.history(ann, general.id)
    assert [m.id for m in history.items] == [sent.id]
    # Posting needs no channel membership in a public channel.
    reply = await h.services.messaging.send(ann, general.id, body="thanks", nonce=None)
    assert reply.id > sent.id


# -- moderation -------------------------------------------------------------------------------------


async def _setup_moderation(h: Harness) -> tuple[Caller, Caller, Caller, Caller, Channel]:
    owner = await h.new_tenant()
    creator = await h.member(owner, "cat")  # a plain workspace member who owns the channel
    plain = await h.member(owner, "pat")
    admin = await h.member(owner, "ada", Role.ADMIN)
    channel = await h.services.channels.create(creator, name="cats", is_private=False)
    await h.services.channels.join(plain, channel.id)
    h.publisher.clear()
    return owner, creator, plain, admin, channel


async def test_a_plain_member_cannot_edit_delete_or_remove_others(h: Harness) -> None:
    _, creator, plain, _, channel = await _setup_moderation(h)

    with pytest.raises(Forbidden):
        await h.services.channels.update(plain, channel.id, name="dogs", topic=None)
    with pytest.raises(Forbidden):
        await h.services.channels.delete(plain, channel.id)
    with pytest.raises(Forbidden):
        await h.services.channels.remove_member(plain, channel.id, creator.user_id)

    assert h.store.state.channels[channel.id].name == "cats"
    assert (channel.id, "cat") in h.store.state.channel_members
    assert h.publisher.published == []


async def test_the_channel_owner_moderates_their_channel(h: Harness) -> None:
    _, creator, plain, _, channel = await _setup_moderation(h)

    updated = await h.services.channels.update(creator, channel.id, name="felines", topic="meow")
    assert (updated.name, updated.topic) == ("felines", "meow")
    assert h.store.state.channels[channel.id].name == "felines"
    await h.services.channels.remove_member(creator, channel.id, plain.user_id)
    assert (channel.id, "pat") not in h.store.state.channel_members
    assert h.publisher.types == [ev.CHANNEL_UPDATED, ev.CHANNEL_MEMBER_REMOVED]
    assert h.publisher.published[0].data["name"] == "felines"
    assert h.publisher.published[1].data == {
        "channelId": str(channel.id),
        "userId": "pat",
        "removedBy": "cat",
    }
    await h.services.channels.delete(creator, channel.id)
    assert channel.id not in h.store.state.channels


async def test_update_keeps_unspecified_fields(h: Harness) -> None:
    _, creator, _, _, channel = await _setup_moderation(h)
    await h.services.channels.update(creator, channel.id, name=None, topic="new topic")
    stored = h.store.state.channels[channel.id]
    assert (stored.name, stored.topic, stored.is_private) == ("cats", "new topic", False)


async def test_a_workspace_admin_moderates_any_visible_channel(h: Harness) -> None:
    _, creator, _, admin, channel = await _setup_moderation(h)

    await h.services.channels.update(admin, channel.id, name=None, topic="moderated")
    await h.services.channels.remove_member(admin, channel.id, creator.user_id)
    assert (channel.id, "cat") not in h.store.state.channel_members
    await h.services.channels.delete(admin, channel.id)
    assert channel.id not in h.store.state.channels
    assert h.publisher.types == [ev.CHANNEL_UPDATED, ev.CHANNEL_MEMBER_REMOVED, ev.CHANNEL_DELETED]


async def test_anyone_may_leave_a_channel_but_only_once(h: Harness) -> None:
    _, _, plain, _, channel = await _setup_moderation(h)
    await h.services.channels.leave(plain, channel.id)
    assert (channel.id, "pat") not in h.store.state.channel_members
    assert h.publisher.types == [ev.CHANNEL_MEMBER_REMOVED]
    with pytest.raises(NotFound):
        await h.services.channels.leave(plain, channel.id)


async def test_leaving_a_private_channel_revokes_posting_at_once(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    secret = await h.services.channels.create(owner, name="secret", is_private=True)
    await h.services.channels.add_member(owner, secret.id, "ann")
    await h.services.messaging.send(ann, secret.id, body="in", nonce=None)  # access cached

    await h.services.channels.remove_member(owner, secret.id, "ann")

    with pytest.raises(NotFound):
        await h.services.messaging.send(ann, secret.id, body="still in?", nonce=None)
    with pytest.raises(NotFound):
        await h.services.messaging.history(ann, secret.id)


# -- join and invitations --------------------------------------------------------------------------


async def test_join_a_public_channel_is_idempotent(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    general = await h.services.channels.create(owner, name="general", is_private=False)
    h.publisher.clear()

    await h.services.channels.join(ann, general.id)
    await h.services.channels.join(ann, general.id)

    members = await h.services.channels.members(ann, general.id)
    assert sorted((m.user_id, m.role) for m in members) == sorted(
        [(owner.user_id, Role.OWNER), ("ann", Role.MEMBER)]
    )
    assert h.publisher.types == [ev.CHANNEL_MEMBER_ADDED]  # once
    assert h.publisher.published[0].data == {
        "channelId": str(general.id),
        "userId": "ann",
        "addedBy": "ann",
        "channel": {  # what the joined member's live feed shows (D48)
            "channelId": str(general.id),
            "name": "general",
            "topic": "",
            "isPrivate": False,
            "createdBy": owner.user_id,
        },
    }


async def test_join_a_private_channel_is_a_no_op_for_members_and_not_found_for_others(
    h: Harness,
) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    secret = await h.services.channels.create(owner, name="secret", is_private=True)
    with pytest.raises(NotFound):  # invisible: it does not exist for ann
        await h.services.channels.join(ann, secret.id)
    h.publisher.clear()
    await h.services.channels.join(owner, secret.id)  # already a member: nothing happens
    assert h.publisher.published == []
    assert (secret.id, "ann") not in h.store.state.channel_members


async def test_a_member_of_a_private_channel_invites_others(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    bob = await h.member(owner, "bob")
    secret = await h.services.channels.create(ann, name="secret", is_private=True)
    h.publisher.clear()

    await h.services.channels.add_member(ann, secret.id, "bob")

    assert (await h.services.channels.get(bob, secret.id)).id == secret.id
    assert [c.id for c in await h.services.channels.list_visible(bob)] == [secret.id]
    assert h.publisher.types == [ev.CHANNEL_MEMBER_ADDED]
    assert h.publisher.published[0].data["addedBy"] == "ann"
    with pytest.raises(Conflict):
        await h.services.channels.add_member(ann, secret.id, "bob")
    with pytest.raises(NotFound):
        await h.services.channels.add_member(ann, secret.id, "ghost")  # not in the workspace
    assert h.publisher.types == [ev.CHANNEL_MEMBER_ADDED]


async def test_removed_workspace_members_cannot_be_added_to_channels(h: Harness) -> None:
    owner = await h.new_tenant()
    await h.member(owner, "bob")
    general = await h.services.channels.create(owner, name="general", is_private=False)
    await h.services.membership.remove_member(owner, "bob")
    with pytest.raises(NotFound):
        await h.services.channels.add_member(owner, general.id, "bob")


# -- delete -----------------------------------------------------------------------------------------


async def test_delete_removes_the_channel_its_messages_and_log_copies(h: Harness) -> None:
    owner = await h.new_tenant()
    doomed = await h.services.channels.create(owner, name="doomed", is_private=False)
    kept = await h.services.channels.create(owner, name="kept", is_private=False)
    for i in range(4):
        await h.services.messaging.send(owner, doomed.id, body=f"d{i}", nonce=None)
        await h.services.messaging.send(owner, kept.id, body=f"k{i}", nonce=None)
    h.log.persist_up_to(4)  # half persisted, half only in the log
    h.publisher.clear()

    await h.services.channels.delete(owner, doomed.id)

    assert doomed.id not in h.store.state.channels
    assert not any(k[0] == doomed.id for k in h.store.state.channel_members)
    assert h.log.forgotten == [(owner.tenant_id, doomed.id)]
    assert all(m.channel_id == kept.id for m in h.log.stream.values())
    assert all(m.channel_id == kept.id for m in h.store.state.messages.values())
    assert [m.body for m in (await h.services.messaging.history(owner, kept.id)).items] == [
        "k3",
        "k2",
        "k1",
        "k0",
    ]
    assert h.publisher.types == [ev.CHANNEL_DELETED]
    assert h.publisher.published[0].data["channelId"] == str(doomed.id)
    with pytest.raises(NotFound):
        await h.services.channels.get(owner, doomed.id)
    with pytest.raises(NotFound):
        await h.services.messaging.send(owner, doomed.id, body="anyone?", nonce=None)


async def test_a_failed_delete_keeps_everything(h: Harness) -> None:
    owner = await h.new_tenant()
    channel = await h.services.channels.create(owner, name="general", is_private=False)
    await h.services.messaging.send(owner, channel.id, body="hi", nonce=None)
    h.log.persist_all()
    h.publisher.clear()
    h.store.fail_next("outbox.add")

    with pytest.raises(Unavailable, match="injected failure"):
        await h.services.channels.delete(owner, channel.id)

    assert channel.id in h.store.state.channels
    assert len(h.store.state.messages) == 1
    assert h.log.forgotten == []  # the log is only purged after the commit
    assert h.publisher.attempts == 0
