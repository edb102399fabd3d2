"""Workspaces of users across tenants (tokens without a tenant claim, Discord-style): the ones a
user is in, creating one (self-service, behind a setting), joining one by its id, deleting one."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from echonats import model
from echonats.core.access import ChannelAccess, MemberCache
from echonats.core.caller import Caller
from echonats.core.event_sink import EventSink
from echonats.core.membership import MembershipService, member_joined, new_tenant, user_of
from echonats.core.ports import Clock, MessageLog, Store
from echonats.model import Member, Principal, Role, Tenant
from echonats.model import events as ev
from echonats.model.errors import Conflict, EchonatsError, Forbidden, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Membership:
    tenant: Tenant
    member: Member


class WorkspaceService:
    def __init__(
        self,
        store: Store,
        sink: EventSink,
        clock: Clock,
        log_: MessageLog,
        access: ChannelAccess,
        membership: MembershipService,
        *,
        self_service: bool,
    ) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._log = log_
        self._access = access
        self._membership = membership
        self._members: MemberCache = membership.members
        self.self_service = self_service

    async def memberships(self, principal: Principal) -> list[Membership]:
        """The workspaces the user is in: every one for a token without a tenant claim, the
        token's own one otherwise."""
        if principal.tenant_id is not None:
            caller = await self._membership.resolve(principal)
            return [Membership(await self.tenant(caller), caller.member)]
        async with self._store.read() as tx:
            found = await tx.workspaces.memberships_of(model.user_id(principal.user_id))
        return [Membership(tenant, member) for tenant, member in found]

    async def tenant(self, caller: Caller) -> Tenant:
        async with self._store.read() as tx:
            tenant = await tx.tenants.get(caller.tenant_id)
        if tenant is None:
            raise NotFound("workspace not found")
        return tenant

    async def create(self, principal: Principal, *, name: str) -> Membership:
        """A new workspace owned by the caller."""
        self._require_self_service(principal, "create workspaces")
        now = self._clock.now()
        tenant, user = new_tenant(name, now), user_of(principal)
        async with self._sink.transaction() as (tx, pending):
            await tx.tenants.add(tenant)
            await tx.users.ensure(user)
            member = await tx.members.add(tenant.id, user, Role.OWNER)
            pending.append(member_joined(member, now, user.id))
        return Membership(tenant, member)

    async def join(self, principal: Principal, tenant_id: uuid.UUID) -> Membership:
        """Join a workspace by its id (what EchoPulse's Share button hands out). Joining one the
        user is already in returns that membership."""
        self._require_self_service(principal, "join workspaces by id")
        tenant: Tenant | None = None
        try:
            async with self._sink.transaction() as (tx, pending):
                tenant = await tx.tenants.get(tenant_id)
                if tenant is None:
                    raise NotFound("workspace not found")
                state = await tx.members.state(tenant_id, principal.user_id)
                if state.member is not None:
                    return Membership(tenant, state.member)
                if state.removed:
                    raise Forbidden("you were removed from this workspace")
                user = user_of(principal)
                await tx.users.ensure(user)
                member = await tx.members.add(tenant_id, user, Role.MEMBER)
                pending.append(member_joined(member, self._clock.now(), user.id))
        except Conflict:
            # A concurrent join of the same user won: theirs is this membership.
            async with self._store.read() as tx:
                state = await tx.members.state(tenant_id, principal.user_id)
            if state.member is None or tenant is None:
                raise
            return Membership(tenant, state.member)
        return Membership(tenant, member)

    async def delete(self, caller: Caller) -> None:
        """Delete the workspace with its channels, messages and members (owners only)."""
        if caller.role is not Role.OWNER:
            raise Forbidden("only workspace owners may delete the workspace")
        async with self._sink.transaction() as (tx, pending):
            tenant = await tx.tenants.get(caller.tenant_id)
            if tenant is None:
                raise NotFound("workspace not found")
            channel_ids = await tx.workspaces.delete(caller.tenant_id)
            pending.append(
                ev.TenantDeleted(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.TenantDeletedData(name=tenant.name, channel_ids=tuple(channel_ids)),
                )
            )
        self._members.forget_tenant(caller.tenant_id)
        for channel_id in channel_ids:
            self._access.forget_channel(channel_id)
        # After commit (and after the event went out): the log's copies go too.
        try:
            await self._log.forget_tenant(caller.tenant_id)
        except EchonatsError as exc:
            log.warning("could not purge the log of deleted workspace %s: %s", caller.tenant_id, exc.message)

    def _require_self_service(self, principal: Principal, action: str) -> None:
        if principal.tenant_id is not None:
            raise Forbidden(f"a token bound to one workspace cannot {action}")
        if not self.self_service:
            raise Forbidden(f"users may not {action} here (ECHONATS_SELF_SERVICE_WORKSPACES is off)")
