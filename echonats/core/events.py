"""Domain event types and constructors. Subjects: ``echo.<tenantId>.events.<type>``."""

from __future__ import annotations

import uuid
from datetime import datetime

from echonats.model import Channel, DomainEvent, Member

CHANNEL_CREATED = "channel.created"  # EchoPulse: channels.create
CHANNEL_UPDATED = "channel.updated"
CHANNEL_DELETED = "channel.deleted"  # EchoPulse: channels.delete
CHANNEL_MEMBER_ADDED = "channel.member_added"
CHANNEL_MEMBER_REMOVED = "channel.member_removed"
MEMBER_JOINED = "member.joined"  # EchoPulse: user.join-server
MEMBER_LEFT = "member.left"  # EchoPulse: user.leave-server
MEMBER_ROLE_CHANGED = "member.role_changed"
TENANT_LIMITS_UPDATED = "tenant.limits_updated"


def event(tenant_id: uuid.UUID, type_: str, at: datetime, **data: object) -> DomainEvent:
    return DomainEvent(id=uuid.uuid4(), tenant_id=tenant_id, type=type_, occurred_at=at, data=data)


def channel_data(channel: Channel) -> dict[str, object]:
    return {
        "channelId": str(channel.id),
        "name": channel.name,
        "topic": channel.topic,
        "isPrivate": channel.is_private,
        "createdBy": channel.created_by,
    }


def member_data(member: Member) -> dict[str, object]:
    return {"userId": member.user_id, "displayName": member.display_name, "role": member.role.value}
