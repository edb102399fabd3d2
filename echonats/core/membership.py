"""Tenants and their members: platform administration, provisioning, roles, join and leave."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from echonats import model
from echonats.core.access import ChannelAccess, MemberCache
from echonats.core.caller import Caller
from echonats.core.event_sink import EventSink
from echonats.core.ports import Clock, Store, TenantLimits, Transaction
from echonats.model import Member, Principal, Role, Tenant, User
from echonats.model import events as ev
from echonats.model.errors import Conflict, Forbidden, NotFound, Unavailable, ValidationFailed

DEFAULT_MAX_CHANNELS = 500
DEFAULT_MAX_MESSAGES_PER_SECOND = 100


@dataclass(frozen=True, slots=True)
class CreatedTenant:
    tenant: Tenant
    admin: Member


def new_tenant(name: str, now: datetime) -> Tenant:
    """A tenant with the default limits (created by the platform admin, or by a user: self-service)."""
    return Tenant(
        id=uuid.uuid4(),
        name=model.tenant_name(name),
        max_channels=DEFAULT_MAX_CHANNELS,
        max_messages_per_second=DEFAULT_MAX_MESSAGES_PER_SECOND,
        created_at=now,
    )


def user_of(principal: Principal) -> User:
    """The user a token names, with the profile it carries."""
    return User(
        id=model.user_id(principal.user_id),
        display_name=model.display_name(principal.display_name[: model.MAX_DISPLAY_NAME_CHARS] or "user"),
        email=principal.email,
    )


def member_joined(member: Member, now: datetime, actor_id: str | None) -> ev.MemberJoined:
    return ev.MemberJoined(
        tenant_id=member.tenant_id, occurred_at=now, actor_id=actor_id, payload=ev.MemberData.of(member)
    )


def _require_platform_admin(principal: Principal) -> None:
    if not principal.is_platform_admin:
        raise Forbidden("platform administrator credentials required")


class MembershipService:
    def __init__(self, store: Store, sink: EventSink, clock: Clock, access: ChannelAccess) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._access = access
        self.members = MemberCache()

    # -- platform administration --------------------------------------------------------------------
    async def create_tenant(
        self, principal: Principal, *, name: str, admin_email: str, admin_display_name: str
    ) -> CreatedTenant:
        _require_platform_admin(principal)
        now = self._clock.now()
        tenant = new_tenant(name, now)
        admin = User(
            id=str(uuid.uuid4()),
            display_name=model.display_name(admin_display_name, "adminDisplayName"),
            email=model.email(admin_email, "adminEmail"),
        )
        async with self._sink.transaction() as (tx, pending):
            await tx.tenants.add(tenant)
            await tx.users.ensure(admin)
            member = await tx.members.add(tenant.id, admin, Role.OWNER)
            pending.append(member_joined(member, now, principal.user_id))
        return CreatedTenant(tenant, member)

    async def list_tenants(
        self, principal: Principal, *, limit: int, after: uuid.UUID | None
    ) -> list[Tenant]:
        _require_platform_admin(principal)
        async with self._store.read() as tx:
            return await tx.tenants.list(limit=limit, after=after)

    async def get_tenant(self, principal: Principal, tenant_id: uuid.UUID) -> Tenant:
        _require_platform_admin(principal)
        async with self._store.read() as tx:
            tenant = await tx.tenants.get(tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        return tenant

    async def update_limits(self, principal: Principal, tenant_id: uuid.UUID, limits: TenantLimits) -> Tenant:
        _require_platform_admin(principal)
        for field, value in (
            ("maxChannels", limits.max_channels),
            ("maxMessagesPerSecond", limits.max_messages_per_second),
        ):
            if value is not None and not (0 if field == "maxChannels" else 1) <= value <= 1_000_000:
                raise ValidationFailed(f"{field} out of range", details={"field": field})
        async with self._sink.transaction() as (tx, pending):
            tenant = await tx.tenants.update_limits(tenant_id, limits)
            if tenant is None:
                raise NotFound("tenant not found")
            pending.append(
                ev.TenantLimitsUpdated(
                    tenant_id=tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=principal.user_id,
                    payload=ev.TenantLimitsData(
                        max_channels=tenant.max_channels,
                        max_messages_per_second=tenant.max_messages_per_second,
                    ),
                )
            )
        return tenant

    async def create_user(
        self, principal: Principal, tenant_id: uuid.UUID, *, email: str, display_name: str
    ) -> Member:
        _require_platform_admin(principal)
        user = User(
            id=str(uuid.uuid4()), display_name=model.display_name(display_name), email=model.email(email)
        )
        async with self._sink.transaction() as (tx, pending):
            if await tx.tenants.get(tenant_id) is None:
                raise NotFound("tenant not found")
            await tx.users.ensure(user)
            member = await tx.members.add(tenant_id, user, Role.MEMBER)
            pending.append(
                ev.MemberJoined(
                    tenant_id=tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=principal.user_id,
                    payload=ev.MemberData.of(member),
                )
            )
        return member

    # -- callers ------------------------------------------------------------------------------------
    async def resolve(self, principal: Principal, tenant_id: uuid.UUID | None = None) -> Caller:
        """The caller's active membership in ``tenant_id`` (default: the token's tenant).

        A token with a tenant claim is bound to that tenant (another one is not found) and its
        first-time users are provisioned there. A token without one is a user across workspaces
        (D51): each request names its tenant, and only an existing membership counts (a workspace
        the user is not in, or was removed from, is not found: its existence is not revealed)."""
        if principal.tenant_id is not None:
            # The token's own membership first: a token that is no good in its tenant is refused
            # the same way on every path (403), whichever workspace the path names.
            caller = await self._resolve_claimed(principal, principal.tenant_id)
            if tenant_id is not None and tenant_id != principal.tenant_id:
                raise NotFound("workspace not found")
            return caller
        if tenant_id is None:
            raise Forbidden("the token carries no tenant")
        member = await self._active_member(tenant_id, principal.user_id)
        if member is None:
            raise NotFound("workspace not found")
        return Caller(principal, member)

    async def resolve_in_channel(self, principal: Principal, channel_id: uuid.UUID) -> Caller:
        """The caller's membership in the channel's tenant. For a token without a tenant claim
        the channel names the tenant; a channel of a workspace the user is not in is not found,
        exactly like one that does not exist."""
        if principal.tenant_id is not None:
            return await self.resolve(principal)
        tenant_id = await self._access.tenant_of(channel_id)
        if tenant_id is None:
            raise NotFound("channel not found")
        try:
            return await self.resolve(principal, tenant_id)
        except NotFound:
            raise NotFound("channel not found") from None

    async def _active_member(self, tenant_id: uuid.UUID, user_id: str) -> Member | None:
        member, _ = await self._membership(tenant_id, user_id)
        return member

    async def _membership(self, tenant_id: uuid.UUID, user_id: str) -> tuple[Member | None, bool]:
        """(the active membership, whether the user was removed), from the cache when warm."""
        cached = self.members.get(tenant_id, user_id)
        if cached is not None:
            return cached, False
        try:
            async with self._store.read() as tx:
                state = await tx.members.state(tenant_id, user_id)
        except Unavailable:
            stale = self.members.get(tenant_id, user_id, stale_ok=True)
            if stale is None:
                raise
            return stale, False  # known member; the database is down for a moment
        if state.member is not None:
            self.members.put(state.member)
        return state.member, state.removed

    async def _resolve_claimed(self, principal: Principal, tenant_id: uuid.UUID) -> Caller:
        member, removed = await self._membership(tenant_id, principal.user_id)
        if member is not None:
            return Caller(principal, member)
        if removed:
            raise Forbidden("you were removed from this workspace")
        return Caller(principal, await self._provision(principal, tenant_id))

    async def _provision(self, principal: Principal, tenant_id: uuid.UUID) -> Member:
        user = user_of(principal)
        try:
            async with self._sink.transaction() as (tx, pending):
                if await tx.tenants.get(tenant_id) is None:
                    raise Forbidden("the token's tenant does not exist")
                await tx.users.ensure(user)
                # The token's name and email are shown in its own tenant only (another tenant's
                # token with the same sub must not rename this member elsewhere).
                member = await tx.members.add(tenant_id, user, Role.MEMBER)
                pending.append(member_joined(member, self._clock.now(), principal.user_id))
        except Conflict:
            # A concurrent first call provisioned the same user; use what it created.
            async with self._store.read() as tx:
                state = await tx.members.state(tenant_id, user.id)
            if state.member is None:
                raise
            return state.member
        return member

    async def list_members(self, caller: Caller, *, limit: int, after: str | None) -> list[Member]:
        # An empty cursor (`?after=`) means the first page, as it always did.
        after = model.user_id(after, "after") if after else None
        async with self._store.read() as tx:
            return await tx.members.list(caller.tenant_id, limit=limit, after=after)

    async def change_role(self, caller: Caller, user_id: str, role: Role) -> Member:
        user_id = model.user_id(user_id)
        caller.require_admin("change roles")
        async with self._sink.transaction() as (tx, pending):
            target = (await tx.members.state(caller.tenant_id, user_id)).member
            if target is None:
                raise NotFound("member not found")
            if Role.OWNER in (role, target.role) and caller.role is not Role.OWNER:
                raise Forbidden("only owners may grant or revoke the owner role")
            if target.role is Role.OWNER and role is not Role.OWNER:
                await self._keep_an_owner(tx, caller.tenant_id)
            updated = await tx.members.set_role(caller.tenant_id, user_id, role)
            assert updated is not None
            pending.append(
                ev.MemberRoleChanged(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.MemberData.of(updated),
                )
            )
        self.members.forget(caller.tenant_id, user_id)
        return updated

    async def remove_member(self, caller: Caller, user_id: str) -> None:
        user_id = model.user_id(user_id)
        caller.require_admin("remove members")
        if user_id == caller.user_id:
            raise Conflict("use leave to leave the workspace yourself")
        await self._remove(caller, user_id, ban=True, reason="removed")

    async def leave(self, caller: Caller) -> None:
        await self._remove(caller, caller.user_id, ban=False, reason="left")

    async def _remove(self, caller: Caller, user_id: str, *, ban: bool, reason: str) -> None:
        async with self._sink.transaction() as (tx, pending):
            target = (await tx.members.state(caller.tenant_id, user_id)).member
            if target is None:
                raise NotFound("member not found")
            if target.role is Role.OWNER:
                if ban and caller.role is not Role.OWNER:
                    raise Forbidden("only owners may remove an owner")
                await self._keep_an_owner(tx, caller.tenant_id)
            await tx.channels.remove_user_everywhere(caller.tenant_id, user_id)
            await tx.members.remove(caller.tenant_id, user_id, ban=ban)
            pending.append(
                ev.MemberLeft(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.MemberLeftData(
                        user_id=user_id, display_name=target.display_name, reason=reason
                    ),
                )
            )
        # This gateway at once; the others when the member.left event reaches them.
        self._access.forget_user(user_id)
        self.members.forget(caller.tenant_id, user_id)

    async def reinstate(self, caller: Caller, user_id: str) -> Member:
        user_id = model.user_id(user_id)
        caller.require_admin("reinstate members")
        async with self._sink.transaction() as (tx, pending):
            member = await tx.members.reinstate(caller.tenant_id, user_id, Role.MEMBER)
            if member is None:
                raise NotFound("no removed member with this id")
            pending.append(
                ev.MemberJoined(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.MemberData.of(member),
                )
            )
        return member

    @staticmethod
    async def _keep_an_owner(tx: Transaction, tenant_id: uuid.UUID) -> None:
        # count_owners locks the owners' rows, so two concurrent demotions cannot both pass.
        if await tx.members.count_owners(tenant_id) <= 1:
            raise Conflict("a workspace must keep at least one owner")
