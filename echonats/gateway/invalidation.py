"""Applies revocations on this gateway as soon as they happen anywhere.

Domain events are low volume (administrative changes), so every gateway listens to the few that
revoke access, for all tenants: it evicts the matching cache entries, and live sockets lose what
they may no longer see — a subscription to a channel they were removed from (or that was deleted)
ends with an ``unsubscribed`` frame, and a user who left or was removed from the workspace is
disconnected with 4003.
"""

from __future__ import annotations

import logging
import uuid

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from echonats.adapters.nats import subjects
from echonats.adapters.nats.records import event_decoder
from echonats.core import events as ev
from echonats.core.access import ChannelAccess, MemberCache, TenantLimitsCache
from echonats.gateway.connection import CLOSE_FORBIDDEN
from echonats.gateway.fanout import Hub

log = logging.getLogger(__name__)

REVOKING = (
    ev.CHANNEL_MEMBER_REMOVED,
    ev.CHANNEL_DELETED,
    ev.MEMBER_LEFT,
    ev.MEMBER_ROLE_CHANGED,
    ev.TENANT_LIMITS_UPDATED,
)


def apply_event(
    access: ChannelAccess,
    limits: TenantLimitsCache,
    members: MemberCache,
    tenant_id: uuid.UUID,
    event_type: str,
    data: dict[str, object],
) -> None:
    if event_type == ev.TENANT_LIMITS_UPDATED:
        limits.forget(tenant_id)
        return
    user_id = data.get("userId")
    if event_type in (ev.MEMBER_LEFT, ev.MEMBER_ROLE_CHANGED) and isinstance(user_id, str):
        members.forget(tenant_id, user_id)
    channel_id = data.get("channelId")
    if event_type == ev.CHANNEL_DELETED and isinstance(channel_id, str):
        access.forget_channel(uuid.UUID(channel_id))
    elif event_type == ev.CHANNEL_MEMBER_REMOVED and isinstance(channel_id, str) and isinstance(user_id, str):
        access.forget_member(uuid.UUID(channel_id), user_id)
    elif event_type == ev.MEMBER_LEFT and isinstance(user_id, str):
        access.forget_user(user_id)


def revoke_live_access(hub: Hub, tenant_id: uuid.UUID, event_type: str, data: dict[str, object]) -> None:
    """Synchronous on purpose: the event callback must not yield before live sockets stop
    receiving what they lost, or a message stored after the revocation could slip through."""
    user_id = data.get("userId")
    channel_id = data.get("channelId")
    if event_type == ev.MEMBER_LEFT and isinstance(user_id, str):
        for conn in hub.connections_of(tenant_id, user_id):
            conn.close(CLOSE_FORBIDDEN, "no longer a member of this workspace")
    elif event_type == ev.CHANNEL_DELETED and isinstance(channel_id, str):
        hub.revoke_channel(tenant_id, uuid.UUID(channel_id))
    elif event_type == ev.CHANNEL_MEMBER_REMOVED and isinstance(channel_id, str) and isinstance(user_id, str):
        hub.revoke_member(tenant_id, uuid.UUID(channel_id), user_id)  # re-checked against the database


async def listen_for_revocations(
    nc: NatsClient,
    access: ChannelAccess,
    limits: TenantLimitsCache,
    members: MemberCache,
    hub: Hub | None = None,
) -> list[Subscription]:
    async def on_event(msg: Msg) -> None:
        try:
            record = event_decoder.decode(msg.data)
            apply_event(access, limits, members, record.tenant_id, record.type, record.data)
            if hub is not None:
                revoke_live_access(hub, record.tenant_id, record.type, record.data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.warning("ignored an undecodable event on %s: %s", msg.subject, exc)

    return [
        await nc.subscribe(f"{subjects.ROOT}.*.events.{event_type}", cb=on_event) for event_type in REVOKING
    ]
