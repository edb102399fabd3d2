"""Payloads stored in JetStream. Tolerant on decode: fields added later get defaults, unknown
fields are ignored, so old and new processes can share a stream during a rolling upgrade."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from echonats.model import Message, NewMessage, PresenceChange, PresenceStatus


class MessageRecord(msgspec.Struct, rename="camel", omit_defaults=True):
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    sender_id: str
    body: str
    created_at: datetime
    sender_display_name: str = ""
    nonce: str | None = None

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
        )

    def to_message(self, message_id: int) -> Message:
        return Message(
            id=message_id,
            tenant_id=self.tenant_id,
            channel_id=self.channel_id,
            sender_id=self.sender_id,
            sender_display_name=self.sender_display_name or self.sender_id,
            body=self.body,
            nonce=self.nonce,
            created_at=self.created_at,
        )


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
typing_decoder = msgspec.json.Decoder(TypingRecord)
presence_decoder = msgspec.json.Decoder(PresenceRecord)
