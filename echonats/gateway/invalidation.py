"""Keeps this gateway's access cache honest when another gateway changes memberships.

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
from echonats.core.access import ChannelAccess

log = logging.getLogger(__name__)

REVOKING = (ev.CHANNEL_MEMBER_REMOVED, ev.CHANNEL_DELETED, ev.MEMBER_LEFT)


def apply_event(access: ChannelAccess, event_type: str, data: dict[str, object]) -> None:
    user_id = data.get("userId")
    channel_id = data.get("channelId")
    if event_type == ev.CHANNEL_DELETED and isinstance(channel_id, str):
        access.forget_channel(uuid.UUID(channel_id))
    elif event_type == ev.CHANNEL_MEMBER_REMOVED and isinstance(channel_id, str) and isinstance(user_id, str):
        access.forget_member(uuid.UUID(channel_id), user_id)
    elif event_type == ev.MEMBER_LEFT and isinstance(user_id, str):
        access.forget_user(user_id)


async def listen_for_revocations(nc: NatsClient, access: ChannelAccess) -> list[Subscription]:
    async def on_event(msg: Msg) -> None:
        try:
            record = event_decoder.decode(msg.data)
            apply_event(access, record.type, record.data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            log.warning("ignored an undecodable event on %s: %s", msg.subject, exc)

    return [
        await nc.subscribe(f"{subjects.ROOT}.*.events.{event_type}", cb=on_event) for event_type in REVOKING
    ]
