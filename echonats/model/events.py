"""Domain events: one msgspec Struct per event type, tagged on ``type``, with the actor.

An event says what happened to a tenant; it is stored in the outbox with the change and published
after commit on ``echo.<tenantId>.events.<type>``. On the wire::

    {"type": "channel.created", "id": ..., "tenantId": ..., "occurredAt": ..., "actorId": ...,
     "data": {...}}

Tolerant on decode (stored events outlive the code that wrote them): unknown fields are ignored, and
a field added later must have a default. ``DomainEvent`` is the union every producer and consumer
names, so a ``match`` over it is checked for exhaustiveness by mypy (``assert_never``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

import msgspec

from echonats.model.entities import Channel, Member

CHANNEL_CREATED = "channel.created"  # EchoPulse: channels.create
CHANNEL_UPDATED = "channel.updated"
CHANNEL_DELETED = "channel.deleted"  # EchoPulse: channels.delete
CHANNEL_MEMBER_ADDED = "channel.member_added"
CHANNEL_MEMBER_REMOVED = "channel.member_removed"
MEMBER_JOINED = "member.joined"  # EchoPulse: user.join-server
MEMBER_LEFT = "member.left"  # EchoPulse: user.leave-server
MEMBER_ROLE_CHANGED = "member.role_changed"
TENANT_LIMITS_UPDATED = "tenant.limits_updated"
DM_OPENED = "dm.opened"
READ_STATE_CHANGED = "read_state.changed"
MESSAGE_MENTIONED = "message.mentioned"
MEMBER_STATUS_CHANGED = "member.status_changed"
TENANT_DELETED = "tenant.deleted"  # EchoPulse: server.delete


# -- what the events carry ("data" on the wire) ----------------------------------------------------
class _Data(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    pass


class ChannelData(_Data, frozen=True):
    channel_id: uuid.UUID
    name: str
    topic: str
    is_private: bool
    created_by: str | None

    @classmethod
    def of(cls, channel: Channel) -> ChannelData:
        return cls(
            channel_id=channel.id,
            name=channel.name,
            topic=channel.topic,
            is_private=channel.is_private,
            created_by=channel.created_by,
        )


class MemberData(_Data, frozen=True):
    user_id: str
    display_name: str
    role: str

    @classmethod
    def of(cls, member: Member) -> MemberData:
        return cls(user_id=member.user_id, display_name=member.display_name, role=member.role.value)


class ChannelMemberAddedData(_Data, frozen=True, omit_defaults=True):
    channel_id: uuid.UUID
    user_id: str
    added_by: str
    channel: ChannelData | None = None  # what the added member may now see (absent in older events)


class ChannelMemberRemovedData(_Data, frozen=True):
    channel_id: uuid.UUID
    user_id: str
    removed_by: str


class MemberLeftData(_Data, frozen=True):
    user_id: str
    display_name: str
    reason: str  # "left" or "removed"


class DmData(_Data, frozen=True):
    channel: ChannelData
    member_ids: tuple[str, ...]


class ReadStateData(_Data, frozen=True):
    user_id: str
    channel_id: uuid.UUID
    last_read_id: int


class MentionData(_Data, frozen=True):
    user_id: str  # who is mentioned
    channel_id: uuid.UUID
    message_id: int
    sender_id: str


class StatusData(_Data, frozen=True):
    user_id: str
    presence: str | None  # "away", "dnd" or None
    text: str
    expires_at: datetime | None


class TenantDeletedData(_Data, frozen=True):
    name: str
    channel_ids: tuple[uuid.UUID, ...]  # what went with it: gateways stop delivering each


class TenantLimitsData(_Data, frozen=True):
    max_channels: int | None
    max_messages_per_second: int | None


# -- the events ------------------------------------------------------------------------------------
class Event(msgspec.Struct, tag_field="type", rename="camel", frozen=True, kw_only=True):
    """The envelope every event shares. ``actor_id``: the user whose request caused it (None: the
    platform itself, e.g. the static admin token)."""

    tenant_id: uuid.UUID
    occurred_at: datetime
    actor_id: str | None = None
    id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)  # JetStream dedupes on it

    TYPE: ClassVar[str]

    @property
    def type(self) -> str:
        return self.TYPE

    @property
    def data(self) -> dict[str, object]:
        """What the event carries, as on the wire (camelCase keys, ids as strings)."""
        result: dict[str, object] = msgspec.to_builtins(getattr(self, "payload"))  # noqa: B009 - every subclass has it
        return result


class ChannelCreated(Event, tag=CHANNEL_CREATED, frozen=True):
    TYPE = CHANNEL_CREATED
    payload: ChannelData = msgspec.field(name="data")


class ChannelUpdated(Event, tag=CHANNEL_UPDATED, frozen=True):
    TYPE = CHANNEL_UPDATED
    payload: ChannelData = msgspec.field(name="data")


class ChannelDeleted(Event, tag=CHANNEL_DELETED, frozen=True):
    TYPE = CHANNEL_DELETED
    payload: ChannelData = msgspec.field(name="data")


class ChannelMemberAdded(Event, tag=CHANNEL_MEMBER_ADDED, frozen=True):
    TYPE = CHANNEL_MEMBER_ADDED
    payload: ChannelMemberAddedData = msgspec.field(name="data")


class ChannelMemberRemoved(Event, tag=CHANNEL_MEMBER_REMOVED, frozen=True):
    TYPE = CHANNEL_MEMBER_REMOVED
    payload: ChannelMemberRemovedData = msgspec.field(name="data")


class MemberJoined(Event, tag=MEMBER_JOINED, frozen=True):
    TYPE = MEMBER_JOINED
    payload: MemberData = msgspec.field(name="data")


class MemberLeft(Event, tag=MEMBER_LEFT, frozen=True):
    TYPE = MEMBER_LEFT
    payload: MemberLeftData = msgspec.field(name="data")


class MemberRoleChanged(Event, tag=MEMBER_ROLE_CHANGED, frozen=True):
    TYPE = MEMBER_ROLE_CHANGED
    payload: MemberData = msgspec.field(name="data")


class TenantLimitsUpdated(Event, tag=TENANT_LIMITS_UPDATED, frozen=True):
    TYPE = TENANT_LIMITS_UPDATED
    payload: TenantLimitsData = msgspec.field(name="data")


class DmOpened(Event, tag=DM_OPENED, frozen=True):
    TYPE = DM_OPENED
    payload: DmData = msgspec.field(name="data")


class ReadStateChanged(Event, tag=READ_STATE_CHANGED, frozen=True):
    TYPE = READ_STATE_CHANGED
    payload: ReadStateData = msgspec.field(name="data")


class MessageMentioned(Event, tag=MESSAGE_MENTIONED, frozen=True):
    """Written by the persist worker with the mention rows; ``actor_id`` is the sender."""

    TYPE = MESSAGE_MENTIONED
    payload: MentionData = msgspec.field(name="data")


class MemberStatusChanged(Event, tag=MEMBER_STATUS_CHANGED, frozen=True):
    TYPE = MEMBER_STATUS_CHANGED
    payload: StatusData = msgspec.field(name="data")


class TenantDeleted(Event, tag=TENANT_DELETED, frozen=True):
    TYPE = TENANT_DELETED
    payload: TenantDeletedData = msgspec.field(name="data")


DomainEvent = (
    ChannelCreated
    | ChannelUpdated
    | ChannelDeleted
    | ChannelMemberAdded
    | ChannelMemberRemoved
    | MemberJoined
    | MemberLeft
    | MemberRoleChanged
    | TenantLimitsUpdated
    | DmOpened
    | ReadStateChanged
    | MessageMentioned
    | MemberStatusChanged
    | TenantDeleted
)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DomainEvent)


def encode_event(event: DomainEvent) -> bytes:
    """The event as stored in the outbox and published on its subject: byte-identical both ways."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> DomainEvent:
    """Raises ``msgspec.DecodeError``/``ValidationError`` for anything that is not a known event."""
    return _decoder.decode(data)
