"""MembershipService: platform administration, provisioning, roles, removal and leaving."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import pytest

from echonats.core.caller import Caller
from echonats.core.membership import DEFAULT_MAX_CHANNELS, MembershipService
from echonats.core.ports import TenantLimits
from echonats.model import DomainEvent, Principal, Role
from echonats.model import events as ev
from echonats.model.errors import Conflict, Forbidden, NotFound, Unavailable, ValidationFailed
from tests.unit.fakes import PLATFORM_ADMIN, Harness, RecordingPublisher, principal


@pytest.fixture
def h() -> Harness:
    return Harness.build()


async def _create(h: Harness, who: Principal = PLATFORM_ADMIN) -> uuid.UUID:
    created = await h.services.membership.create_tenant(
        who, name="  Acme  ", admin_email="boss@example.com", admin_display_name="Boss"
    )
    return created.tenant.id


# -- platform administration ------------------------------------------------------------------------

AdminOp = Callable[[MembershipService, Principal, uuid.UUID], Awaitable[object]]
ADMIN_OPS: dict[str, AdminOp] = {
    "create_tenant": lambda m, p, t: m.create_tenant(
        p, name="Evil", admin_email="e@example.com", admin_display_name="E"
    ),
    "list_tenants": lambda m, p, t: m.list_tenants(p, limit=10, after=None),
    "get_tenant": lambda m, p, t: m.get_tenant(p, t),
    "update_limits": lambda m, p, t: m.update_limits(p, t, TenantLimits(max_channels=1)),
    "create_user": lambda m, p, t: m.create_user(p, t, email="x@example.com", display_name="X"),
}


@pytest.mark.parametrize("op", ADMIN_OPS)
async def test_tenant_administration_requires_a_platform_admin(h: Harness, op: str) -> None:
    owner = await h.new_tenant()  # a workspace owner is still not a platform admin
    tenants_before = dict(h.store.state.tenants)
    members_before = set(h.store.state.members)
    h.publisher.clear()

    for who in (owner.principal, principal("nobody", None)):
        with pytest.raises(Forbidden):
            await ADMIN_OPS[op](h.services.membership, who, owner.tenant_id)

    assert h.store.state.tenants == tenants_before
    assert set(h.store.state.members) == members_before
    assert h.publisher.published == []


async def test_platform_admin_reads_and_updates_tenants(h: Harness) -> None:
    first = await _create(h)
    second = await _create(h)
    m = h.services.membership

    listed = await m.list_tenants(PLATFORM_ADMIN, limit=10, after=None)
    assert sorted(t.id for t in listed) == sorted([first, second])
    assert [t.id for t in await m.list_tenants(PLATFORM_ADMIN, limit=1, after=min(first, second))] == [
        max(first, second)
    ]
    assert (await m.get_tenant(PLATFORM_ADMIN, first)).name == "Acme"  # trimmed
    with pytest.raises(NotFound):
        await m.get_tenant(PLATFORM_ADMIN, uuid.uuid4())

    h.publisher.clear()
    updated = await m.update_limits(PLATFORM_ADMIN, first, TenantLimits(max_channels=7))
    assert updated.max_channels == 7
    assert updated.max_messages_per_second == h.store.state.tenants[first].max_messages_per_second
    assert h.publisher.types == [ev.TENANT_LIMITS_UPDATED]
    assert h.publisher.published[0].data["maxChannels"] == 7
    assert h.publisher.published[0].tenant_id == first


@pytest.mark.parametrize(
    "limits",
    [
        TenantLimits(max_channels=-1),
        TenantLimits(max_channels=1_000_001),
        TenantLimits(max_messages_per_second=0),
    ],
)
async def test_update_limits_validates_ranges(h: Harness, limits: TenantLimits) -> None:
    tenant_id = await _create(h)
    h.publisher.clear()
    with pytest.raises(ValidationFailed):
        await h.services.membership.update_limits(PLATFORM_ADMIN, tenant_id, limits)
    assert h.store.state.tenants[tenant_id].max_channels == DEFAULT_MAX_CHANNELS
    assert h.publisher.published == []


async def test_update_limits_of_unknown_tenant_is_not_found_and_rolls_back(h: Harness) -> None:
    with pytest.raises(NotFound):
        await h.services.membership.update_limits(PLATFORM_ADMIN, uuid.uuid4(), TenantLimits(max_channels=3))
    assert h.store.rollbacks == 1
    assert h.publisher.attempts == 0


async def test_create_tenant_makes_an_owner_and_publishes_member_joined_after_commit() -> None:
    h = Harness.build()
    seen_at_publish: list[tuple[bool, bool]] = []

    def check(events: Sequence[DomainEvent]) -> None:
        # At publish time the tenant and the outbox row must already be committed.
        tenant_id = events[0].tenant_id
        seen_at_publish.append(
            (tenant_id in h.store.state.tenants, all(e.id in h.store.state.outbox for e in events))
        )

    h.publisher.on_publish = check
    created = await h.services.membership.create_tenant(
        PLATFORM_ADMIN, name="Acme", admin_email=" boss@example.com ", admin_display_name="Boss"
    )

    assert created.admin.role is Role.OWNER
    assert created.admin.tenant_id == created.tenant.id
    assert created.admin.display_name == "Boss"
    assert created.admin.email == "boss@example.com"
    assert created.tenant.max_channels == DEFAULT_MAX_CHANNELS
    assert created.tenant.id in h.store.state.tenants
    state_row = h.store.member_row(created.tenant.id, created.admin.user_id)
    assert state_row is not None
    assert state_row.role is Role.OWNER

    assert h.publisher.types == [ev.MEMBER_JOINED]
    event = h.publisher.published[0]
    assert event.tenant_id == created.tenant.id
    assert event.data == {"userId": created.admin.user_id, "displayName": "Boss", "role": "owner"}
    assert h.publisher.during_transaction == [False]
    assert seen_at_publish == [(True, True)]
    assert h.store.outbox_events() == []  # published: the outbox row is gone


async def test_publisher_failure_keeps_the_tenant_and_the_event_in_the_outbox(h: Harness) -> None:
    h.publisher.fail()
    created = await h.services.membership.create_tenant(
        PLATFORM_ADMIN, name="Acme", admin_email="boss@example.com", admin_display_name="Boss"
    )  # no error: the change is committed, publishing is deferred to the relay

    assert created.tenant.id in h.store.state.tenants
    assert h.publisher.attempts == 1
    assert h.publisher.published == []
    [pending] = h.store.outbox_events()
    assert pending.type == ev.MEMBER_JOINED
    assert pending.tenant_id == created.tenant.id
    assert pending.data["userId"] == created.admin.user_id

    # The relay's later attempt publishes exactly that event and empties the outbox.
    relay = RecordingPublisher(h.store)
    await relay.publish(h.store.outbox_events())
    assert [e.id for e in relay.published] == [pending.id]
    assert h.store.outbox_events() == []


@pytest.mark.parametrize("failing_op", ["outbox.add", "members.add", "users.ensure"])
async def test_a_failing_transaction_leaves_no_state_and_publishes_nothing(
    h: Harness, failing_op: str
) -> None:
    h.store.fail_next(failing_op)
    with pytest.raises(Unavailable):
        await h.services.membership.create_tenant(
            PLATFORM_ADMIN, name="Acme", admin_email="boss@example.com", admin_display_name="Boss"
        )
    assert h.store.rollbacks == 1
    assert h.store.commits == 0
    assert h.store.state.tenants == {}
    assert h.store.state.users == {}
    assert h.store.state.members == {}
    assert h.store.outbox_events() == []
    assert h.publisher.attempts == 0


async def test_create_user_adds_a_member_to_an_existing_tenant(h: Harness) -> None:
    tenant_id = await _create(h)
    h.publisher.clear()
    member = await h.services.membership.create_user(
        PLATFORM_ADMIN, tenant_id, email="ann@example.com", display_name="Ann"
    )
    assert member.role is Role.MEMBER
    assert member.tenant_id == tenant_id
    assert h.publisher.types == [ev.MEMBER_JOINED]
    assert h.publisher.published[0].data["userId"] == member.user_id

    with pytest.raises(NotFound):
        await h.services.membership.create_user(
            PLATFORM_ADMIN, uuid.uuid4(), email="bob@example.com", display_name="Bob"
        )
    assert not any(u.display_name == "Bob" for u in h.store.state.users.values())


# -- resolve ----------------------------------------------------------------------------------------


async def test_resolve_provisions_an_unknown_user_then_returns_the_same_member(h: Harness) -> None:
    owner = await h.new_tenant()
    h.publisher.clear()
    who = principal("ann", owner.tenant_id, "Ann A.")

    first = await h.services.membership.resolve(who)
    assert first.user_id == "ann"
    assert first.tenant_id == owner.tenant_id
    assert first.role is Role.MEMBER
    assert first.member.display_name == "Ann A."
    assert first.member.email == "ann@example.com"
    assert first.principal is who
    assert h.publisher.types == [ev.MEMBER_JOINED]
    assert h.publisher.published[0].data == {"userId": "ann", "displayName": "Ann A.", "role": "member"}

    again = await h.services.membership.resolve(who)
    assert again.member == first.member
    assert h.publisher.types == [ev.MEMBER_JOINED]  # nothing new
    assert len([k for k in h.store.state.members if k[1] == "ann"]) == 1


async def test_concurrent_first_calls_provision_the_user_once(h: Harness) -> None:
    owner = await h.new_tenant()
    h.publisher.clear()
    who = principal("ann", owner.tenant_id)
    rival: list[Caller] = []

    async def rival_request() -> None:
        # Another request of the same user commits its provisioning after this one has read
        # "no membership" but before its own transaction starts.
        rival.append(await h.services.membership.resolve(who))

    h.store.before_next_transaction = rival_request
    caller = await h.services.membership.resolve(who)

    assert len(rival) == 1
    assert caller.member == rival[0].member
    assert h.store.rollbacks == 1  # our insert lost the race and was rolled back
    assert h.publisher.types == [ev.MEMBER_JOINED]  # joined once, not twice


async def test_resolve_without_a_tenant_is_forbidden(h: Harness) -> None:
    await h.new_tenant()
    with pytest.raises(Forbidden):
        await h.services.membership.resolve(principal("ann", None))
    assert "ann" not in h.store.state.users


async def test_resolve_for_a_non_existent_tenant_is_forbidden_and_creates_nothing(h: Harness) -> None:
    with pytest.raises(Forbidden):
        await h.services.membership.resolve(principal("ann", uuid.uuid4()))
    assert h.store.state.users == {}
    assert h.store.state.members == {}
    assert h.publisher.attempts == 0


async def test_resolve_of_a_removed_member_is_forbidden(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    await h.services.membership.remove_member(owner, "ann")
    h.publisher.clear()

    with pytest.raises(Forbidden):
        await h.resolve(ann)
    assert h.publisher.published == []  # not re-provisioned
    row = h.store.member_row(owner.tenant_id, "ann")
    assert row is not None
    assert row.removed_at is not None


async def test_resolve_is_per_tenant(h: Harness) -> None:
    acme = await h.new_tenant("Acme")
    globex = await h.new_tenant("Globex")
    in_acme = await h.member(acme, "ann", Role.ADMIN)
    in_globex = await h.services.membership.resolve(principal("ann", globex.tenant_id))
    assert in_acme.role is Role.ADMIN
    assert in_globex.role is Role.MEMBER
    assert in_globex.tenant_id == globex.tenant_id


# -- roles ------------------------------------------------------------------------------------------


async def test_only_admins_change_roles_or_remove_members(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    await h.member(owner, "bob")
    h.publisher.clear()

    with pytest.raises(Forbidden):
        await h.services.membership.change_role(ann, "bob", Role.ADMIN)
    with pytest.raises(Forbidden):
        await h.services.membership.change_role(ann, "ann", Role.ADMIN)  # not even oneself
    with pytest.raises(Forbidden):
        await h.services.membership.remove_member(ann, "bob")
    with pytest.raises(Forbidden):
        await h.services.membership.reinstate(ann, "bob")

    bob_row = h.store.member_row(owner.tenant_id, "bob")
    assert bob_row is not None
    assert bob_row.role is Role.MEMBER
    assert bob_row.removed_at is None
    assert h.publisher.published == []


async def test_an_admin_promotes_and_demotes_members(h: Harness) -> None:
    owner = await h.new_tenant()
    admin = await h.member(owner, "ann", Role.ADMIN)
    await h.member(owner, "bob")
    h.publisher.clear()

    promoted = await h.services.membership.change_role(admin, "bob", Role.ADMIN)
    assert promoted.role is Role.ADMIN
    assert h.publisher.types == [ev.MEMBER_ROLE_CHANGED]
    assert h.publisher.published[0].data == {"userId": "bob", "displayName": "Bob", "role": "admin"}

    demoted = await h.services.membership.change_role(admin, "bob", Role.MEMBER)
    assert demoted.role is Role.MEMBER
    assert (await h.services.membership.resolve(principal("bob", owner.tenant_id))).role is Role.MEMBER


async def test_change_role_of_an_unknown_member_is_not_found(h: Harness) -> None:
    owner = await h.new_tenant()
    with pytest.raises(NotFound):
        await h.services.membership.change_role(owner, "ghost", Role.ADMIN)


async def test_only_owners_grant_or_revoke_the_owner_role(h: Harness) -> None:
    owner = await h.new_tenant()
    admin = await h.member(owner, "ann", Role.ADMIN)
    await h.member(owner, "bob")

    with pytest.raises(Forbidden):
        await h.services.membership.change_role(admin, "bob", Role.OWNER)
    with pytest.raises(Forbidden):
        await h.services.membership.change_role(admin, "ann", Role.OWNER)  # self-promotion
    with pytest.raises(Forbidden):
        await h.services.membership.change_role(admin, owner.user_id, Role.MEMBER)  # revoke

    granted = await h.services.membership.change_role(owner, "bob", Role.OWNER)
    assert granted.role is Role.OWNER
    bob = await h.services.membership.resolve(principal("bob", owner.tenant_id))
    revoked = await h.services.membership.change_role(bob, owner.user_id, Role.ADMIN)
    assert revoked.role is Role.ADMIN


async def test_the_last_owner_cannot_be_demoted_or_leave(h: Harness) -> None:
    owner = await h.new_tenant()
    h.publisher.clear()

    with pytest.raises(Conflict):
        await h.services.membership.change_role(owner, owner.user_id, Role.ADMIN)
    with pytest.raises(Conflict):
        await h.services.membership.leave(owner)

    row = h.store.member_row(owner.tenant_id, owner.user_id)
    assert row is not None
    assert row.role is Role.OWNER
    assert h.publisher.published == []

    # With a second owner, either may step down.
    await h.member(owner, "bob", Role.OWNER)
    demoted = await h.services.membership.change_role(owner, owner.user_id, Role.ADMIN)
    assert demoted.role is Role.ADMIN
    bob = await h.services.membership.resolve(principal("bob", owner.tenant_id))
    with pytest.raises(Conflict):
        await h.services.membership.leave(bob)  # now the last owner again


async def test_an_owner_may_leave_when_another_owner_remains(h: Harness) -> None:
    owner = await h.new_tenant()
    await h.member(owner, "bob", Role.OWNER)
    await h.services.membership.leave(owner)
    assert h.store.member_row(owner.tenant_id, owner.user_id) is None


async def test_only_owners_remove_an_owner(h: Harness) -> None:
    owner = await h.new_tenant()
    admin = await h.member(owner, "ann", Role.ADMIN)
    await h.member(owner, "bob", Role.OWNER)

    with pytest.raises(Forbidden):
        await h.services.membership.remove_member(admin, "bob")
    bob_row = h.store.member_row(owner.tenant_id, "bob")
    assert bob_row is not None
    assert bob_row.removed_at is None

    await h.services.membership.remove_member(owner, "bob")
    bob_row = h.store.member_row(owner.tenant_id, "bob")
    assert bob_row is not None
    assert bob_row.removed_at is not None


async def test_removing_oneself_is_a_conflict_and_unknown_members_are_not_found(h: Harness) -> None:
    owner = await h.new_tenant()
    admin = await h.member(owner, "ann", Role.ADMIN)
    with pytest.raises(Conflict):
        await h.services.membership.remove_member(admin, "ann")
    with pytest.raises(NotFound):
        await h.services.membership.remove_member(admin, "ghost")


async def test_a_removed_member_is_blocked_until_reinstated(h: Harness) -> None:
    owner = await h.new_tenant()
    admin = await h.member(owner, "ann", Role.ADMIN)
    bob = await h.member(owner, "bob", Role.ADMIN)
    channel = await h.services.channels.create(bob, name="bobs", is_private=False)
    h.publisher.clear()

    await h.services.membership.remove_member(admin, "bob")

    assert h.publisher.types == [ev.MEMBER_LEFT]
    assert h.publisher.published[0].data == {"userId": "bob", "displayName": "Bob", "reason": "removed"}
    assert h.store.channel_ids_of("bob") == set()
    listed = await h.services.membership.list_members(owner, limit=10, after=None)
    assert sorted(m.user_id for m in listed) == sorted(["ann", owner.user_id])
    with pytest.raises(Forbidden):
        await h.resolve(bob)
    with pytest.raises(NotFound):  # removed twice
        await h.services.membership.remove_member(admin, "bob")
    with pytest.raises(NotFound):  # not a member any more, so no role to change
        await h.services.membership.change_role(admin, "bob", Role.MEMBER)

    h.publisher.clear()
    reinstated = await h.services.membership.reinstate(admin, "bob")
    assert reinstated.role is Role.MEMBER  # the old admin role is not restored
    assert h.publisher.types == [ev.MEMBER_JOINED]
    again = await h.resolve(bob)
    assert again.role is Role.MEMBER
    assert channel.id not in h.store.channel_ids_of("bob")  # channel memberships stay gone


async def test_reinstate_needs_a_removed_member(h: Harness) -> None:
    owner = await h.new_tenant()
    await h.member(owner, "bob")
    with pytest.raises(NotFound):
        await h.services.membership.reinstate(owner, "bob")  # active
    with pytest.raises(NotFound):
        await h.services.membership.reinstate(owner, "ghost")  # never a member


async def test_leave_deletes_the_membership_and_channel_memberships(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    public = await h.services.channels.create(owner, name="general", is_private=False)
    private = await h.services.channels.create(owner, name="secret", is_private=True)
    own = await h.services.channels.create(ann, name="anns", is_private=True)
    await h.services.channels.join(ann, public.id)
    await h.services.channels.add_member(owner, private.id, "ann")
    assert h.store.channel_ids_of("ann") == {public.id, private.id, own.id}
    h.publisher.clear()

    await h.services.membership.leave(ann)

    assert h.store.member_row(owner.tenant_id, "ann") is None  # deleted, not banned
    assert h.store.channel_ids_of("ann") == set()
    assert h.publisher.types == [ev.MEMBER_LEFT]
    assert h.publisher.published[0].data == {"userId": "ann", "displayName": "Ann", "reason": "left"}
    listed = await h.services.membership.list_members(owner, limit=10, after=None)
    assert "ann" not in [m.user_id for m in listed]

    # Leaving is not a ban: the next call provisions the user afresh, as a plain member.
    h.publisher.clear()
    back = await h.resolve(ann)
    assert back.role is Role.MEMBER
    assert h.publisher.types == [ev.MEMBER_JOINED]
    with pytest.raises(NotFound):
        await h.services.channels.get(back, private.id)


async def test_list_members_pages_by_user_id(h: Harness) -> None:
    owner = await h.new_tenant()
    for user_id in ("dan", "ann", "cat", "bob"):
        await h.member(owner, user_id)
    expected = sorted(["ann", "bob", "cat", "dan", owner.user_id])
    m = h.services.membership
    seen: list[str] = []
    after: str | None = None
    while page := await m.list_members(owner, limit=2, after=after):
        assert len(page) <= 2
        seen.extend(x.user_id for x in page)
        after = page[-1].user_id
    assert seen == expected


async def test_leaving_the_workspace_revokes_access_to_private_channels_at_once(h: Harness) -> None:
    owner = await h.new_tenant()
    ann = await h.member(owner, "ann")
    secret = await h.services.channels.create(owner, name="secret", is_private=True)
    await h.services.channels.add_member(owner, secret.id, "ann")
    await h.services.messaging.send(ann, secret.id, body="hello", nonce=None)  # access now cached

    await h.services.membership.leave(ann)
    back = await h.resolve(ann)  # a new, plain membership with no channel memberships
    with pytest.raises(NotFound):
        await h.services.channels.get(back, secret.id)  # the database agrees: not visible

    with pytest.raises(NotFound):
        await h.services.messaging.send(back, secret.id, body="still here?", nonce=None)


async def test_a_profile_is_per_tenant_membership(h: Harness) -> None:
    a, b = await h.new_tenant("A"), await h.new_tenant("B")
    await h.services.membership.resolve(principal("sam", a.tenant_id, "Sam A"))
    in_b = await h.services.membership.resolve(principal("sam", b.tenant_id, "Mallory B"))
    assert in_b.member.display_name == "Mallory B"
    listed = await h.services.membership.list_members(a, limit=10, after=None)
    assert {m.user_id: m.display_name for m in listed}["sam"] == "Sam A"
