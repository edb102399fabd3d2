"""The frames the client reads and writes: the server's own msgspec definitions, one decoder over
their union and one encoder, and where each frame sits in its channel's (or the feed's) order."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec

from echonats.gateway import feed_frames as ff
from echonats.gateway import protocol as p

log = logging.getLogger(__name__)

FeedFrame = (
    ff.ChannelCreatedFrame
    | ff.ChannelUpdatedFrame
    | ff.ChannelDeletedFrame
    | ff.ChannelJoinedFrame
    | ff.ChannelLeftFrame
    | ff.DmOpenedFrame
    | ff.ReadStateFrame
    | ff.MentionFrame
    | ff.UserStatusFrame
)
ChangeFrame = (
    p.MessageUpdated
    | p.MessageDeletedFrame
    | p.ReactionAdded
    | p.ReactionRemoved
    | p.PinAdded
    | p.PinRemoved
    | p.ThreadUpdated
)
AnyServerFrame = (
    p.MessageFrame
    | ChangeFrame
    | p.PresenceFrame
    | p.PresenceSnapshot
    | p.TypingFrame
    | p.Subscribed
    | p.Unsubscribed
    | p.ResyncRequired
    | p.Ack
    | p.ErrorFrame
    | p.Pong
    | p.Reauthenticated
    | FeedFrame
    | ff.FeedResyncRequired
)
"""Every frame the server sends (``gateway.protocol`` and ``gateway.feed_frames``)."""

_FEED_TYPES = (
    ff.ChannelCreatedFrame,
    ff.ChannelUpdatedFrame,
    ff.ChannelDeletedFrame,
    ff.ChannelJoinedFrame,
    ff.ChannelLeftFrame,
    ff.DmOpenedFrame,
    ff.ReadStateFrame,
    ff.MentionFrame,
    ff.UserStatusFrame,
)
_CHANGE_TYPES = (
    p.MessageUpdated,
    p.MessageDeletedFrame,
    p.ReactionAdded,
    p.ReactionRemoved,
    p.PinAdded,
    p.PinRemoved,
    p.ThreadUpdated,
)


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    """A frame this client has no definition for (a newer server's, say): its ``type`` and JSON."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


Event = AnyServerFrame | UnknownFrame
"""What ``Client.events()`` yields."""

_decoder = msgspec.json.Decoder(AnyServerFrame)
_fallback = msgspec.json.Decoder(dict[str, Any])
_encoder = msgspec.json.Encoder()


def encode(frame: p.ClientFrame) -> str:
    return _encoder.encode(frame).decode()


def decode(raw: str | bytes) -> Event | None:
    """The frame, an ``UnknownFrame`` for a type (or shape) this client does not know, or None for
    something that is not a JSON object at all (logged and skipped)."""
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError:
        log.warning("skipping a server frame that is not JSON: %.80r", raw)
        return None
    try:
        data = _fallback.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.warning("skipping a server frame that is not a JSON object: %.80r", raw)
        return None
    kind = data.get("type")
    return UnknownFrame(kind if isinstance(kind, str) else "", data)


Position = tuple[int, int]
"""A frame's place in its channel's order: (id, 1 for ``thread_updated`` else 0). A reply's
``thread_updated`` has the id of the ``message`` (or ``message_deleted``) it follows."""


def channel_position(frame: Event) -> tuple[uuid.UUID, Position] | None:
    """The channel and position of a frame that is part of a channel's order (None otherwise)."""
    if isinstance(frame, p.MessageFrame):
        return frame.channel_id, (frame.payload.message_id, 0)
    if isinstance(frame, p.ThreadUpdated):
        return frame.channel_id, (frame.id, 1)
    if isinstance(frame, _CHANGE_TYPES):
        return frame.channel_id, (frame.id, 0)
    return None


def follow_up_expected(frame: Event) -> bool:
    """Whether the server sends a ``thread_updated`` with the same id right after this frame."""
    if isinstance(frame, p.MessageFrame):
        return frame.payload.thread_id is not None
    return isinstance(frame, p.MessageDeletedFrame) and frame.thread_id is not None


def feed_position(frame: Event) -> int | None:
    return frame.feed_id if isinstance(frame, _FEED_TYPES) else None


@dataclass(slots=True)
class ChannelState:
    """What the client delivered of one subscribed channel."""

    last: Position | None = None
    follow_up: bool = False  # the last frame delivered is a reply whose thread_updated is still due

    def since(self) -> int | None:
        """What to resume from: the last id delivered, or the one before while a ``thread_updated``
        of that id is still due (its ``message`` then comes again and is dropped as seen)."""
        if self.last is None:
            return None
        return self.last[0] - 1 if self.follow_up else self.last[0]

    def deliver(self, position: Position, frame: Event) -> bool:
        """Whether the frame is new (True: it is recorded as delivered) or was seen already."""
        if self.last is not None and position <= self.last:
            return False
        self.last = position
        self.follow_up = follow_up_expected(frame)
        return True

    def skip_to(self, message_id: int) -> None:
        """Nothing up to ``message_id`` is wanted (the app holds it from history)."""
        if self.last is None or self.last < (message_id, 1):
            self.last, self.follow_up = (message_id, 1), False
