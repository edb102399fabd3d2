"""Domain entities and their limits: plain immutable values."""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

MAX_BODY_CHARS = 4000
MAX_CHANNEL_NAME_CHARS = 80
MAX_TOPIC_CHARS = 250
MAX_TENANT_NAME_CHARS = 100
MAX_DISPLAY_NAME_CHARS = 100
MAX_USER_ID_CHARS = 255
MAX_NONCE_CHARS = 64
MAX_EMAIL_CHARS = 320
# Wire ceilings: schema bounds the decoders enforce (answered 400, D31). The limits above are checked
# by the rules after trimming (answered 422, naming the field), so these sit far above them: they only
# bound what a decoder holds, and a value padded with whitespace is trimmed, not refused.
MAX_WIRE_BODY_CHARS = 16_000  # a message body, 4 x MAX_BODY_CHARS
MAX_WIRE_TEXT_CHARS = 10_000  # every other REST text field (names, topics, emails)
MAX_TOKEN_CHARS = 16 * 1024  # a bearer token (the verifier's own bound)
MAX_TENANT_LIMIT = 1_000_000  # a tenant's maxChannels and maxMessagesPerSecond
# Message ids are PostgreSQL bigints (JetStream sequences are uint64, but never get this far).
MAX_MESSAGE_ID = 2**63 - 1
PLATFORM_ADMIN_ROLE = "platform-admin"


class PresenceStatus(enum.StrEnum):
    ONLINE = "online"
    IDLE = "idle"
    OFFLINE = "offline"


class ManualPresence(enum.StrEnum):
    """What a user sets by hand, shown next to the connection-based status."""

    AWAY = "away"
    DND = "dnd"  # do not disturb


MAX_STATUS_TEXT_CHARS = 100


@dataclass(frozen=True, slots=True)
class UserStatus:
    """A user's own status in one workspace: away/dnd and/or a custom text, until a time."""

    presence: ManualPresence | None
    text: str
    expires_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True, slots=True)
class PresenceChange:
    tenant_id: uuid.UUID
    user_id: str
    status: PresenceStatus


class ChannelKind(enum.StrEnum):
    CHANNEL = "channel"
    DM = "dm"  # a direct message: private, its member set fixed at creation


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
    kind: ChannelKind = ChannelKind.CHANNEL

    @property
    def is_dm(self) -> bool:
        return self.kind is ChannelKind.DM


@dataclass(frozen=True, slots=True)
class ChannelMember:
    channel_id: uuid.UUID
    user_id: str
    display_name: str
    role: Role
    joined_at: datetime


def dedupe_key(channel_id: uuid.UUID, sender_id: str, nonce: str | None) -> str | None:
    """What makes a resend "the same write": channel, sender and nonce. None without a nonce.

    Unambiguous for any sender id and nonce (both may contain any separator): the sender id is
    length-prefixed before hashing, so no two different (sender, nonce) pairs hash the same
    input; the channel id is a fixed-format UUID. Plain ASCII, usable as a header or key. Sends and
    changes (edits, reactions, ...) share the key space: a nonce names one write of its sender."""
    if nonce is None:
        return None
    identity = f"{len(sender_id)}:{sender_id}{nonce}".encode()
    return f"{channel_id}.{hashlib.sha256(identity).hexdigest()}"


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
    thread_id: int | None = None  # a reply: the root message's id (same channel)
    also_to_channel: bool = False  # a reply listed in the channel's history too (Slack's broadcast)
    # Who it notifies: the members named as <@userId> (the worker keeps those in the channel), and
    # with @here/@channel, where the sender may use them, every member of the channel.
    mentions: tuple[str, ...] = ()
    mentions_channel: bool = False
    # Computed once: the rate limiter and the log both need it (a sha256 and a UUID's text).
    dedupe_key: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dedupe_key", dedupe_key(self.channel_id, self.sender_id, self.nonce))

    def stored_as(self, message_id: int) -> Message:
        """The message once the log gave it its id."""
        return Message(
            id=message_id,
            tenant_id=self.tenant_id,
            channel_id=self.channel_id,
            sender_id=self.sender_id,
            sender_display_name=self.sender_display_name,
            body=self.body,
            nonce=self.nonce,
            created_at=self.created_at,
            thread_id=self.thread_id,
            also_to_channel=self.also_to_channel,
            mentions=self.mentions,
            mentions_channel=self.mentions_channel,
        )


@dataclass(frozen=True, slots=True)
class Reaction:
    """One emoji on a message: how many reacted with it and whether the viewer did."""

    emoji: str
    count: int
    me: bool


@dataclass(frozen=True, slots=True)
class Message:
    """A message as sent (from the log: the fields up to ``also_to_channel``), or in its latest
    state (history: the later fields too, folded from its edits, deletion, reactions and pin)."""

    id: int
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    sender_id: str
    sender_display_name: str
    body: str
    nonce: str | None
    created_at: datetime
    thread_id: int | None = None
    also_to_channel: bool = False
    mentions: tuple[str, ...] = ()
    mentions_channel: bool = False
    edited_at: datetime | None = None
    deleted: bool = False  # a tombstone: the body is empty, reactions and pin went with it
    reply_count: int = 0  # a thread root: its replies that are not deleted
    last_reply_at: datetime | None = None  # when its latest reply was posted
    reactions: tuple[Reaction, ...] = ()  # in emoji order (code points)
    pinned: bool = False

    @property
    def is_reply(self) -> bool:
        return self.thread_id is not None

    @property
    def listed_in_channel(self) -> bool:
        """Shown in the channel's history (roots and plain messages; replies live in their thread)."""
        return self.thread_id is None or self.also_to_channel


@dataclass(frozen=True, slots=True)
class HistoryPage:
    items: list[Message]  # newest first
    next_cursor: int | None
    has_more: bool
    # The log position the page's state is at: every entry of the channel up to it is applied,
    # none after it (subscribe with since=position to go on from there). 0: not known.
    position: int = 0


MAX_DM_MEMBERS = 9  # a group DM holds at most 9 people, the caller included (as Slack)
MAX_UNREAD_COUNT = 1000  # unread and mention counts are exact up to here, then reported as capped


def dm_key(user_ids: Iterable[str]) -> str:
    """What makes two DMs "the same conversation": exactly the same set of members. Each id is
    length-prefixed so no two different sets hash alike; the order does not matter."""
    identity = "".join(f"{len(u)}:{u}" for u in sorted(set(user_ids)))
    return hashlib.sha256(identity.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Conversation:
    """A DM as its members see it: the channel, who is in it, and its latest message."""

    channel: Channel
    member_ids: tuple[str, ...]
    last_message: Message | None


@dataclass(frozen=True, slots=True)
class Unread:
    """One channel's (or DM's) read state for one member: counts of messages after ``last_read_id``
    by others (not deleted, listed in the channel) and of those that mention the member."""

    channel_id: uuid.UUID
    kind: ChannelKind
    last_read_id: int
    unread: int
    mentions: int

    @property
    def capped(self) -> bool:
        return self.unread >= MAX_UNREAD_COUNT or self.mentions >= MAX_UNREAD_COUNT
