"""The per-user live feed's frames: what a domain event means to one socket, rendered once.

Each frame carries ``feedId``, the event's position in the tenant's event log: a socket that
reconnects sends ``{"type":"feed","since":<last feedId>}`` and gets what it missed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import assert_never

import msgspec

from echonats.gateway.protocol import ServerFrame, encode_bytes
from echonats.model import DomainEvent
from echonats.model import events as ev


class ChannelOut(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    name: str
    topic: str
    is_private: bool
    created_by: str | None

    @classmethod
    def of(cls, data: ev.ChannelData) -> ChannelOut:
        return cls(data.channel_id, data.name, data.topic, data.is_private, data.created_by)


class ChannelCreatedFrame(ServerFrame, tag="channel_created"):
    feed_id: int
    channel: ChannelOut


class ChannelUpdatedFrame(ServerFrame, tag="channel_updated"):
    feed_id: int
    channel: ChannelOut


class ChannelDeletedFrame(ServerFrame, tag="channel_deleted"):
    feed_id: int
    channel_id: uuid.UUID


class ChannelJoinedFrame(ServerFrame, tag="channel_joined"):
    """The socket's user was added to (or joined) a channel."""

    feed_id: int
    channel_id: uuid.UUID
    added_by: str
    channel: ChannelOut | None = None


class ChannelLeftFrame(ServerFrame, tag="channel_left"):
    feed_id: int
    channel_id: uuid.UUID
    removed_by: str


class DmOpenedFrame(ServerFrame, tag="dm_opened"):
    feed_id: int
    channel_id: uuid.UUID
    member_ids: list[str]


class ReadStateFrame(ServerFrame, tag="read_state"):
    feed_id: int
    channel_id: uuid.UUID
    last_read_id: int


class MentionFrame(ServerFrame, tag="mention"):
    feed_id: int
    channel_id: uuid.UUID
    message_id: int
    sender_id: str


class UserStatusFrame(ServerFrame, tag="user_status"):
    """A member set (or cleared: ``presence`` null, ``text`` empty) their own status."""

    feed_id: int
    user_id: str
    presence: str | None
    text: str
    expires_at: datetime | None


class FeedResyncRequired(ServerFrame, tag="feed_resync_required"):
    """Too much was missed to replay: refetch /channels, /dms and /unreads."""


def audience(event: DomainEvent, user_id: str, receives: Callable[[uuid.UUID], bool]) -> bool:
    """Whether the feed frame of ``event`` is for a socket of ``user_id`` (``receives``: whether
    that socket is receiving a channel, its access checked). Nothing about a private channel or a
    DM reaches anyone but its members."""
    match event:
        case ev.ChannelCreated(payload=channel):
            return not channel.is_private or event.actor_id == user_id
        case ev.ChannelUpdated(payload=channel) | ev.ChannelDeleted(payload=channel):
            return not channel.is_private or event.actor_id == user_id or receives(channel.channel_id)
        case ev.ChannelMemberAdded(payload=added):
            return added.user_id == user_id
        case ev.ChannelMemberRemoved(payload=removed):
            return removed.user_id == user_id
        case ev.DmOpened(payload=dm):
            return user_id in dm.member_ids
        case ev.ReadStateChanged(payload=read):
            return read.user_id == user_id
        case ev.MessageMentioned(payload=mention):
            return mention.user_id == user_id
        case ev.MemberStatusChanged():
            return True  # the whole workspace sees a member's status
        case (
            ev.MemberJoined()
            | ev.MemberLeft()
            | ev.MemberRoleChanged()
            | ev.TenantLimitsUpdated()
            | ev.TenantDeleted()
        ):
            return False  # a deleted workspace's sockets are closed (4003)
        case _:
            assert_never(event)


def render(event: DomainEvent, feed_id: int) -> bytes | None:
    """The frame's JSON (None: the event has no feed frame)."""
    frame: ServerFrame
    match event:
        case ev.ChannelCreated(payload=channel):
            frame = ChannelCreatedFrame(feed_id=feed_id, channel=ChannelOut.of(channel))
        case ev.ChannelUpdated(payload=channel):
            frame = ChannelUpdatedFrame(feed_id=feed_id, channel=ChannelOut.of(channel))
        case ev.ChannelDeleted(payload=channel):
            frame = ChannelDeletedFrame(feed_id=feed_id, channel_id=channel.channel_id)
        case ev.ChannelMemberAdded(payload=added):
            channel_out = ChannelOut.of(added.channel) if added.channel is not None else None
            frame = ChannelJoinedFrame(
                feed_id=feed_id, channel_id=added.channel_id, added_by=added.added_by, channel=channel_out
            )
        case ev.ChannelMemberRemoved(payload=removed):
            frame = ChannelLeftFrame(
                feed_id=feed_id, channel_id=removed.channel_id, removed_by=removed.removed_by
            )
        case ev.DmOpened(payload=dm):
            frame = DmOpenedFrame(
                feed_id=feed_id, channel_id=dm.channel.channel_id, member_ids=list(dm.member_ids)
            )
        case ev.ReadStateChanged(payload=read):
            frame = ReadStateFrame(
                feed_id=feed_id, channel_id=read.channel_id, last_read_id=read.last_read_id
            )
        case ev.MessageMentioned(payload=m):
            frame = MentionFrame(
                feed_id=feed_id, channel_id=m.channel_id, message_id=m.message_id, sender_id=m.sender_id
            )
        case ev.MemberStatusChanged(payload=st):
            frame = UserStatusFrame(
                feed_id=feed_id,
                user_id=st.user_id,
                presence=st.presence,
                text=st.text,
                expires_at=st.expires_at,
            )
        case (
            ev.MemberJoined()
            | ev.MemberLeft()
            | ev.MemberRoleChanged()
            | ev.TenantLimitsUpdated()
            | ev.TenantDeleted()
        ):
            return None
        case _:
            assert_never(event)
    return encode_bytes(frame)
