"""Domain model: plain immutable values and the rules that need no I/O.

Ids: tenants and channels are UUIDs; users are the issuer's ``sub`` (any string up to 255
characters); messages are JetStream stream sequences (positive integers, increasing in each
channel's delivery order).
"""

from __future__ import annotations

from echonats.model.entities import (
    MAX_BODY_CHARS,
    MAX_CHANNEL_NAME_CHARS,
    MAX_DISPLAY_NAME_CHARS,
    MAX_EMAIL_CHARS,
    MAX_MESSAGE_ID,
    MAX_NONCE_CHARS,
    MAX_TENANT_NAME_CHARS,
    MAX_TOPIC_CHARS,
    MAX_USER_ID_CHARS,
    PLATFORM_ADMIN_ROLE,
    Channel,
    ChannelMember,
    HistoryPage,
    Member,
    Message,
    NewMessage,
    PresenceChange,
    PresenceStatus,
    Principal,
    Role,
    Tenant,
    User,
)
from echonats.model.events import DomainEvent
from echonats.model.rules import (
    _has_control_chars,
    channel_name,
    channel_topic,
    clean_text,
    display_name,
    email,
    message_body,
    nonce,
    tenant_name,
    user_id,
)

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_CHANNEL_NAME_CHARS",
    "MAX_DISPLAY_NAME_CHARS",
    "MAX_EMAIL_CHARS",
    "MAX_MESSAGE_ID",
    "MAX_NONCE_CHARS",
    "MAX_TENANT_NAME_CHARS",
    "MAX_TOPIC_CHARS",
    "MAX_USER_ID_CHARS",
    "PLATFORM_ADMIN_ROLE",
    "Channel",
    "ChannelMember",
    "DomainEvent",
    "HistoryPage",
    "Member",
    "Message",
    "NewMessage",
    "PresenceChange",
    "PresenceStatus",
    "Principal",
    "Role",
    "Tenant",
    "User",
    "_has_control_chars",
    "channel_name",
    "channel_topic",
    "clean_text",
    "display_name",
    "email",
    "message_body",
    "nonce",
    "tenant_name",
    "user_id",
]
