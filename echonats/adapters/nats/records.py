"""Payloads stored in JetStream. Tolerant on decode: fields added later get defaults, unknown
fields are ignored, so old and new processes can share a stream during a rolling upgrade."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import assert_never

import msgspec

from echonats.model import (
    Change,
    Entry,
    Message,
    MessageDeleted,
    MessageEdited,
    NewMessage,
    PinChanged,
    PresenceChange,
    PresenceStatus,
    ReactionChanged,
)

# Set on a change record (an edit, deletion, reaction or pin); a record without it is a message, as
# every record written before changes existed. A header, so a message decodes in one pass as before.
CHANGE_HEADER = "Echonats-Change"


class MessageRecord(msgspec.Struct, rename="camel", omit_defaults=True):
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    sender_id: str
    body: str
    created_at: datetime
    sender_display_name: str = ""
    nonce: str | None = None
    thread_id: int | None = None
    also_to_channel: bool = False
    mentions: tuple[str, ...] = ()
    mentions_channel: bool = False

    @classmethod
    def of(cls, message: NewMessage) -> MessageRecord:
        return cls(
            tenant_id=message.tenant_id,
            channel_id=message.channel_id,
            sender_id=message.sender_id,
            body=message.body,
            created_at=message.created_at,
            sender_display_name=message.sender_display_name,
            nonce=message.nonce,
            thread_id=message.thread_id,
            also_to_channel=message.also_to_channel,
            mentions=message.mentions,
            mentions_channel=message.mentions_channel,
        )

    def to_message(self, message_id: int, *, display_name_fallback: bool = True) -> Message:
        """``display_name_fallback``: an empty display name reads as the sender id (what readers
        show); the persist worker stores the name as sent."""
        return Message(
            id=message_id,
            tenant_id=self.tenant_id,
            channel_id=self.channel_id,
            sender_id=self.sender_id,
            sender_display_name=self.sender_display_name or (self.sender_id if display_name_fallback else ""),
            body=self.body,
            nonce=self.nonce,
            created_at=self.created_at,
            thread_id=self.thread_id,
            also_to_channel=self.also_to_channel,
            mentions=self.mentions,
            mentions_channel=self.mentions_channel,
        )


class ChangeRecord(msgspec.Struct, tag_field="type", rename="camel", omit_defaults=True, kw_only=True):
    """A change to a message, stored in its channel's subject so it takes its place in that order."""

    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    message_id: int
    actor_id: str
    at: datetime
    nonce: str | None = None


class EditedRecord(ChangeRecord, tag="edited"):
    body: str
    mentions: tuple[str, ...] = ()
    mentions_channel: bool = False


class DeletedRecord(ChangeRecord, tag="deleted"):
    thread_id: int | None = None


class ReactionRecord(ChangeRecord, tag="reaction"):
    emoji: str
    added: bool


class PinRecord(ChangeRecord, tag="pin"):
    pinned: bool


AnyChangeRecord = EditedRecord | DeletedRecord | ReactionRecord | PinRecord


def change_record(change: Change) -> AnyChangeRecord:
    t, c, m, a, at, n = (
        change.tenant_id,
        change.channel_id,
        change.message_id,
        change.actor_id,
        change.at,
        change.nonce,
    )
    match change:
        case MessageEdited():
            return EditedRecord(
                tenant_id=t,
                channel_id=c,
                message_id=m,
                actor_id=a,
                at=at,
                nonce=n,
                body=change.body,
                mentions=change.mentions,
                mentions_channel=change.mentions_channel,
            )
        case MessageDeleted():
            return DeletedRecord(
                tenant_id=t,
                channel_id=c,
                message_id=m,
                actor_id=a,
                at=at,
                nonce=n,
                thread_id=change.thread_id,
            )
        case ReactionChanged():
            return ReactionRecord(
                tenant_id=t,
                channel_id=c,
                message_id=m,
                actor_id=a,
                at=at,
                nonce=n,
                emoji=change.emoji,
                added=change.added,
            )
        case PinChanged():
            return PinRecord(
                tenant_id=t, channel_id=c, message_id=m, actor_id=a, at=at, nonce=n, pinned=change.pinned
            )
        case _:
            assert_never(change)


def to_change(record: AnyChangeRecord, change_id: int) -> Change:
    t, c, m, a, at, n = (
        record.tenant_id,
        record.channel_id,
        record.message_id,
        record.actor_id,
        record.at,
        record.nonce,
    )
    match record:
        case EditedRecord():
            return MessageEdited(
                change_id, t, c, m, a, at, record.body, n, record.mentions, record.mentions_channel
            )
        case DeletedRecord():
            return MessageDeleted(change_id, t, c, m, a, at, record.thread_id, n)
        case ReactionRecord():
            return ReactionChanged(change_id, t, c, m, a, at, record.emoji, record.added, n)
        case PinRecord():
            return PinChanged(change_id, t, c, m, a, at, record.pinned, n)
        case _:
            assert_never(record)


class TypingRecord(msgspec.Struct, rename="camel"):
    """What is published on ``echo.<tenantId>.ch.<channelId>.typing``."""

    user_id: str
    display_name: str


class PresenceRecord(msgspec.Struct, rename="camel", frozen=True):
    """What is published on ``echo.<tenantId>.presence.<user>``."""

    tenant_id: uuid.UUID
    user_id: str
    status: PresenceStatus

    @classmethod
    def of(cls, change: PresenceChange) -> PresenceRecord:
        return cls(tenant_id=change.tenant_id, user_id=change.user_id, status=change.status)

    def to_change(self) -> PresenceChange:
        return PresenceChange(self.tenant_id, self.user_id, self.status)


message_encoder = msgspec.json.Encoder()
message_decoder = msgspec.json.Decoder(MessageRecord)
change_decoder = msgspec.json.Decoder(AnyChangeRecord)


def decode_entry(
    data: bytes, headers: Mapping[str, str] | None, entry_id: int, *, display_name_fallback: bool = True
) -> Entry:
    """A stored record of a channel's log; msgspec errors if undecodable (callers decide)."""
    if headers and CHANGE_HEADER in headers:
        return to_change(change_decoder.decode(data), entry_id)
    return message_decoder.decode(data).to_message(entry_id, display_name_fallback=display_name_fallback)


typing_decoder = msgspec.json.Decoder(TypingRecord)
presence_decoder = msgspec.json.Decoder(PresenceRecord)
