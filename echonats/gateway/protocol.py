"""The JSON WebSocket protocol: one msgspec Struct per frame, tagged on ``type``, camelCase.

Client frames are strict (unknown types or fields are errors). Server frames are encoded once
per fanout and shared by every recipient as the same ``str``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from echonats.model import MAX_NONCE_CHARS, MAX_TOKEN_CHARS, MAX_WIRE_BODY_CHARS, Message

ChannelId = uuid.UUID
Body = Annotated[str, msgspec.Meta(max_length=MAX_WIRE_BODY_CHARS)]  # MAX_BODY_CHARS after trimming
Nonce = Annotated[str, msgspec.Meta(max_length=MAX_NONCE_CHARS)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN_CHARS)]


class ClientFrame(msgspec.Struct, tag_field="type", rename="camel", forbid_unknown_fields=True, kw_only=True):
    pass


class Subscribe(ClientFrame, tag="subscribe"):
    channel_id: ChannelId
    since: Annotated[int, msgspec.Meta(ge=0)] | None = None


class Unsubscribe(ClientFrame, tag="unsubscribe"):
    channel_id: ChannelId


class Send(ClientFrame, tag="send"):
    channel_id: ChannelId
    body: Body
    nonce: Nonce | None = None


class Typing(ClientFrame, tag="typing"):
    channel_id: ChannelId


class Ping(ClientFrame, tag="ping"):
    pass


class Reauth(ClientFrame, tag="reauth"):
    """A fresh token for the same tenant and user: the socket now closes at its expiry instead."""

    token: Token


AnyClientFrame = Subscribe | Unsubscribe | Send | Typing | Ping | Reauth
client_frame_decoder = msgspec.json.Decoder(AnyClientFrame)


class ServerFrame(msgspec.Struct, tag_field="type", rename="camel", kw_only=True, omit_defaults=True):
    pass


class MessagePayload(msgspec.Struct, rename="camel"):
    message_id: int
    sender_display_name: str
    created_at: datetime


class MessageFrame(ServerFrame, tag="message"):
    channel_id: ChannelId
    user_id: str
    body: str
    payload: MessagePayload

    @classmethod
    def of(cls, message: Message) -> MessageFrame:
        # By hand: fields are renamed and nested (msgspec.convert(from_attributes=True) maps neither),
        # and it runs once per fanned-out message, where a hand copy is ~4x faster than convert.
        return cls(
            channel_id=message.channel_id,
            user_id=message.sender_id,
            body=message.body,
            payload=MessagePayload(message.id, message.sender_display_name, message.created_at),
        )


class PresencePayload(msgspec.Struct):
    status: str


class PresenceFrame(ServerFrame, tag="presence"):
    user_id: str
    payload: PresencePayload


class TypingPayload(msgspec.Struct, rename="camel"):
    display_name: str


class TypingFrame(ServerFrame, tag="typing_indicator"):
    channel_id: ChannelId
    user_id: str
    payload: TypingPayload


class Subscribed(ServerFrame, tag="subscribed"):
    channel_id: ChannelId


class Unsubscribed(ServerFrame, tag="unsubscribed"):
    channel_id: ChannelId


class ResyncRequired(ServerFrame, tag="resync_required"):
    channel_id: ChannelId


class Ack(ServerFrame, tag="ack"):
    message_id: int
    created_at: datetime
    nonce: str | None = None


class ErrorFrame(ServerFrame, tag="error"):
    code: str
    message: str
    ref: str | None = None
    retry_after_ms: int | None = None


class Pong(ServerFrame, tag="pong"):
    pass


class Reauthenticated(ServerFrame, tag="reauthenticated"):
    expires_at: datetime | None = None  # absent: the token never expires


_encoder = msgspec.json.Encoder()


def encode(frame: ServerFrame) -> str:
    return _encoder.encode(frame).decode()


def encode_bytes(frame: ServerFrame) -> bytes:
    """UTF-8 JSON, what fanout frames once per message (``gateway.wire.text_frame``)."""
    return _encoder.encode(frame)


PONG = encode(Pong())
