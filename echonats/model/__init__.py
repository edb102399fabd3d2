"""Domain model: plain immutable values and the rules that need no I/O.

Ids: tenants and channels are UUIDs; users are the issuer's ``sub`` (any string up to 255
characters); messages are JetStream stream sequences (positive integers, increasing in each
channel's delivery order).
"""

from __future__ import annotations

import enum
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from echonats.model.errors import ValidationFailed

MAX_BODY_CHARS = 4000
MAX_CHANNEL_NAME_CHARS = 80
MAX_TOPIC_CHARS = 250
MAX_TENANT_NAME_CHARS = 100
MAX_DISPLAY_NAME_CHARS = 100
MAX_USER_ID_CHARS = 255
MAX_NONCE_CHARS = 64
MAX_EMAIL_CHARS = 320
# Message ids are PostgreSQL bigints (JetStream sequences are uint64, but never get this far).
MAX_MESSAGE_ID = 2**63 - 1
PLATFORM_ADMIN_ROLE = "platform-admin"


class PresenceStatus(enum.StrEnum):
    ONLINE = "online"
    IDLE = "idle"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class PresenceChange:
    tenant_id: uuid.UUID
    user_id: str
    status: PresenceStatus


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def can_administer(self) -> bool:
        return self in (Role.OWNER, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as established by the token (or the static admin token)."""

    user_id: str
    tenant_id: uuid.UUID | None
    display_name: str
    email: str | None = None
    roles: frozenset[str] = frozenset()
    # The token's `exp`: a socket opened with it is closed then. None: never (the static admin token).
    expires_at: datetime | None = None

    @property
    def is_platform_admin(self) -> bool:
        return PLATFORM_ADMIN_ROLE in self.roles


@dataclass(frozen=True, slots=True)
class Tenant:
    id: uuid.UUID
    name: str
    max_channels: int
    max_messages_per_second: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    id: str
    display_name: str
    email: str | None


@dataclass(frozen=True, slots=True)
class Member:
    """A user's membership of a tenant."""

    tenant_id: uuid.UUID
    user_id: str
    display_name: str
    email: str | None
    role: Role
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class Channel:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    topic: str
    is_private: bool
    created_by: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ChannelMember:
    channel_id: uuid.UUID
    user_id: str
    display_name: str
    role: Role
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message about to be appended to the log (it has no id yet)."""

    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    sender_id: str
    sender_display_name: str
    body: str
    nonce: str | None
    created_at: datetime

    @property
    def dedupe_key(self) -> str | None:
        """What makes a resend "the same message": channel, sender and nonce. None without a nonce.

        Unambiguous for any sender id and nonce (both may contain any separator): the sender id is
        length-prefixed before hashing, so no two different (sender, nonce) pairs hash the same
        input; the channel id is a fixed-format UUID. Plain ASCII, usable as a header or key."""
        if self.nonce is None:
            return None
        identity = f"{len(self.sender_id)}:{self.sender_id}{self.nonce}".encode()
        return f"{self.channel_id}.{hashlib.sha256(identity).hexdigest()}"


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    sender_id: str
    sender_display_name: str
    body: str
    nonce: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[Message]  # newest first
    next_cursor: int | None
    has_more: bool


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Something that happened to a tenant, published after it is committed."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str  # e.g. "channel.created"; the subject is echo.<tenantId>.events.<type>
    occurred_at: datetime
    data: dict[str, object] = field(default_factory=dict)


# -- validation rules ------------------------------------------------------------------------------


# Unicode categories Cc (C0 and C1 controls) and Cs (surrogates), except newline and tab: one
# regex scan instead of a category lookup per character (a unit test checks every code point).
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _has_control_chars(text: str) -> bool:
    return _CONTROL_CHARS.search(text) is not None


def clean_text(
    value: str, *, field_name: str, max_chars: int, min_chars: int = 1, multiline: bool = False
) -> str:
    text = value.strip()
    if not min_chars <= len(text) <= max_chars:
        raise ValidationFailed(
            f"{field_name} must be {min_chars}..{max_chars} characters after trimming (got {len(text)})",
            details={"field": field_name},
        )
    if (not multiline and ("\n" in text or "\t" in text)) or _has_control_chars(text):
        raise ValidationFailed(f"{field_name} contains control characters", details={"field": field_name})
    return text


def message_body(value: str) -> str:
    # Windows and old-Mac line endings are line breaks, not control characters.
    normalized = value.replace("\r\n", "\n").replace("\r", "\n")
    return clean_text(normalized, field_name="body", max_chars=MAX_BODY_CHARS, multiline=True)


def channel_name(value: str) -> str:
    return clean_text(value, field_name="name", max_chars=MAX_CHANNEL_NAME_CHARS)


def channel_topic(value: str) -> str:
    return clean_text(value, field_name="topic", max_chars=MAX_TOPIC_CHARS, min_chars=0)


def tenant_name(value: str) -> str:
    return clean_text(value, field_name="name", max_chars=MAX_TENANT_NAME_CHARS)


def display_name(value: str, field_name: str = "displayName") -> str:
    return clean_text(value, field_name=field_name, max_chars=MAX_DISPLAY_NAME_CHARS)


def nonce(value: str | None) -> str | None:
    if value is None:
        return None
    return clean_text(value, field_name="nonce", max_chars=MAX_NONCE_CHARS)


def email(value: str, field_name: str = "email") -> str:
    text = value.strip()
    local, _, domain = text.partition("@")
    if (
        not local
        or "." not in domain
        or len(text) > MAX_EMAIL_CHARS
        or any(ch.isspace() for ch in text)
        or _has_control_chars(text)
    ):
        raise ValidationFailed(f"{field_name} is not an email address", details={"field": field_name})
    return text


def user_id(value: str, field_name: str = "userId") -> str:
    """The one rule for user ids wherever they come in (a token's ``sub``, a path, a query, a body).

    Kept exactly as given (an issuer's ids are opaque, so no trimming): 1..255 characters, no
    surrounding whitespace, no control characters (NUL included: PostgreSQL text cannot hold it).
    """
    if not 1 <= len(value) <= MAX_USER_ID_CHARS:
        raise ValidationFailed(
            f"{field_name} must be 1..{MAX_USER_ID_CHARS} characters",
            details={"field": field_name},
        )
    if value != value.strip() or "\n" in value or "\t" in value or _has_control_chars(value):
        raise ValidationFailed(
            f"{field_name} contains surrounding whitespace or control characters",
            details={"field": field_name},
        )
    return value
