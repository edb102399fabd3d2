"""A channel's timeline: the entries of its ordered log.

A message, and every later change to one (an edit, a deletion, a reaction added or removed, a pin
set or cleared), is an entry with its own id: its position in the channel's order. A client that
resumes with ``since`` replays all of them, and a message's latest state is the fold of its
changes in that order (``core.timeline``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from echonats.model.entities import Message, dedupe_key

MAX_REACTIONS_PER_MESSAGE = 20  # distinct emoji on one message, as Discord
MAX_PINS_PER_CHANNEL = 100  # as Slack
MAX_EMOJI_CHARS = 64  # a `:shortcode:` or a Unicode emoji sequence (ZWJ families are ~11 code points)


@dataclass(frozen=True, slots=True)
class MessageEdited:
    id: int  # this change's own position (0 until the log gave it one)
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    message_id: int
    actor_id: str
    at: datetime
    body: str
    nonce: str | None = None
    mentions: tuple[str, ...] = ()  # as for a send: the edited body's mentions replace the old ones
    mentions_channel: bool = False


@dataclass(frozen=True, slots=True)
class MessageDeleted:
    id: int
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    message_id: int
    actor_id: str  # the author, or the moderator who removed it
    at: datetime
    thread_id: int | None = None  # the deleted message was a reply in this thread
    nonce: str | None = None


@dataclass(frozen=True, slots=True)
class ReactionChanged:
    id: int
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    message_id: int
    actor_id: str  # who reacted (or took the reaction back)
    at: datetime
    emoji: str
    added: bool
    nonce: str | None = None


@dataclass(frozen=True, slots=True)
class PinChanged:
    id: int
    tenant_id: uuid.UUID
    channel_id: uuid.UUID
    message_id: int
    actor_id: str
    at: datetime
    pinned: bool
    nonce: str | None = None


Change = MessageEdited | MessageDeleted | ReactionChanged | PinChanged
Entry = Message | Change


def change_dedupe_key(change: Change) -> str | None:
    """Resending a change with the same nonce gets the original back, as for sends."""
    return dedupe_key(change.channel_id, change.actor_id, change.nonce)


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A change that would change nothing (a reaction already there, a message already deleted, a
    pin already set): answered as done, but not logged."""

    message_id: int
    at: datetime
