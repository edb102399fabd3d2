"""Applies revocations on this gateway as soon as they happen anywhere.

Domain events are low volume (administrative changes), so every gateway listens to the few that
revoke access, for all tenants: it evicts the matching cache entries, and live sockets lose what
they may no longer see — a subscription to a channel they were removed from (or that was deleted)
ends with an ``unsubscribed`` frame, and a user who left or was removed from the workspace is
disconnected with 4003.
"""

from __future__ import annotations

import logging
from typing import assert_never

from echonats.core.access import ChannelAccess, MemberCache, TenantLimitsCache
from echonats.core.ports import Interest, LiveFeed
from echonats.gateway.fanout import Hub
from echonats.gateway.socket_errors import CLOSE_FORBIDDEN
from echonats.model import DomainEvent
from echonats.model import events as ev

log = logging.getLogger(__name__)

REVOKING = (
    ev.CHANNEL_MEMBER_REMOVED,
    ev.CHANNEL_DELETED,
    ev.MEMBER_LEFT,
    ev.MEMBER_ROLE_CHANGED,
    ev.TENANT_LIMITS_UPDATED,
    ev.TENANT_DELETED,
)


def apply_event(
    access: ChannelAccess, limits: TenantLimitsCache, members: MemberCache, event: DomainEvent
) -> None:
    match event:
        case ev.TenantLimitsUpdated():
            limits.forget(event.tenant_id)
        case ev.MemberLeft(payload=left):
            members.forget(event.tenant_id, left.user_id)
            access.forget_user(left.user_id)
        case ev.MemberRoleChanged(payload=member):
            members.forget(event.tenant_id, member.user_id)
        case ev.ChannelDeleted(payload=channel):
            access.forget_channel(channel.channel_id)
        case ev.ChannelMemberRemoved(payload=removed):
            access.forget_member(removed.channel_id, removed.user_id)
        case ev.TenantDeleted(payload=deleted):
            limits.forget(event.tenant_id)
            members.forget_tenant(event.tenant_id)
            for channel_id in deleted.channel_ids:
                access.forget_channel(channel_id)
        case (
            ev.ChannelCreated()
            | ev.ChannelUpdated()
            | ev.ChannelMemberAdded()
            | ev.MemberJoined()
            | ev.DmOpened()
            | ev.ReadStateChanged()
            | ev.MessageMentioned()
            | ev.MemberStatusChanged()
        ):
            pass  # grants nothing away: caches hold only what was checked, and may keep it
        case _:
            assert_never(event)


def revoke_live_access(hub: Hub, event: DomainEvent) -> None:
    """Synchronous on purpose: the event callback must not yield before live sockets stop
    receiving what they lost, or a message stored after the revocation could slip through."""
    match event:
        case ev.MemberLeft(payload=left):
            for conn in hub.connections_of(event.tenant_id, left.user_id):
                conn.close(CLOSE_FORBIDDEN, "no longer a member of this workspace")
            hub.revoke_tenant(event.tenant_id, left.user_id)
        case ev.TenantDeleted(payload=deleted):
            for conn in hub.connections_of(event.tenant_id):
                conn.close(CLOSE_FORBIDDEN, "the workspace was deleted")
            for channel_id in deleted.channel_ids:
                hub.revoke_channel(event.tenant_id, channel_id)
            hub.revoke_tenant(event.tenant_id, None)
        case ev.ChannelDeleted(payload=channel):
            hub.revoke_channel(event.tenant_id, channel.channel_id)
        case ev.ChannelMemberRemoved(payload=removed):
            # Re-checked against the database: a public channel stays readable.
            hub.revoke_member(event.tenant_id, removed.channel_id, removed.user_id)
        case (
            ev.ChannelCreated()
            | ev.ChannelUpdated()
            | ev.ChannelMemberAdded()
            | ev.MemberJoined()
            | ev.MemberRoleChanged()
            | ev.TenantLimitsUpdated()
            | ev.DmOpened()
            | ev.ReadStateChanged()
            | ev.MessageMentioned()
            | ev.MemberStatusChanged()
        ):
            pass  # no live delivery is lost (a role change moves no channel access)
        case _:
            assert_never(event)


async def listen_for_revocations(
    feed: LiveFeed,
    access: ChannelAccess,
    limits: TenantLimitsCache,
    members: MemberCache,
    hub: Hub | None = None,
) -> Interest:
    def on_event(event: DomainEvent) -> None:
        apply_event(access, limits, members, event)
        if hub is not None:
            revoke_live_access(hub, event)

    return await feed.watch_events(None, REVOKING, on_event)
