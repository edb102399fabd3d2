"""Keeps this gateway's access and tenant-limit caches honest when another gateway changes memberships.

Domain events are low volume (administrative changes), so every gateway listens to the few
that revoke access, for all tenants, and evicts the matching cache entries at once.
"""

from __future__ import annotations

import logging
import uuid

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from echonats.adapters import subjects
from echonats.adapters.records import event_decoder
from echonats.core import events as ev
from echonats.core.access import ChannelAccess, TenantLimitsCache

log = logging.getLogger(__name__)

REVOKING = (ev.CHANNEL_MEMBER_REMOVED, ev.CHANNEL_DELETED, ev.MEMBER_LEFT, ev.TENANT_LIMITS_UPDATED)


def apply_event(
    access: ChannelAccess,
    limits: TenantLimitsCache,
    tenant_id: uuid.UUID,
    event_type: str,
    data: dict[str, object],
) -> None:
    if event_type == ev.TENANT_LIMITS_UPDATED:
        limits.forget(tenant_id)
        return
    user_id = data.get("userId")
    channel_id = data.get("channelId")
    if event_type == ev.CHANNEL_DELETED and isinstance(channel_id, str):
        access.forget_channel(uuid.UUID(channel_id))
    elif event_type == ev.CHANNEL_MEMBER_REMOVED and isinstance(channel_id, str) and isinstance(user_id, str):
        access.forget_member(uuid.UUID(channel_id), user_id)
    elif event_type == ev.MEMBER_LEFT and isinstance(user_id, str):
        access.forget_user(user_id)


async def listen_for_revocations(
    nc: NatsClient, access: ChannelAccess, limits: TenantLimitsCache
) -> list[Subscription]:
    async def on_event(msg: Msg) -> None:
        try:
            record = event_decoder.decode(msg.data)
            apply_event(access, limits, record.tenant_id, record.type, record.data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.warning("ignored an undecodable event on %s: %s", msg.subject, exc)

    return [
        await nc.subscribe(f"{subjects.ROOT}.*.events.{event_type}", cb=on_event) for event_type in REVOKING
    ]
