"""Direct messages, read state, unread counts and mentions.

A DM is a private channel of its own kind whose member set is fixed when it is opened: opening
the same set again (in any order, concurrently too) returns the same conversation. Read state is
the id of the last message a member has read; unread and mention counts are what came after it
(from PostgreSQL indexes, so they follow the persist worker, normally milliseconds behind).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from echonats import model
from echonats.core.access import ChannelAccess
from echonats.core.caller import Caller
from echonats.core.event_sink import EventSink
from echonats.core.history import TimelineReader
from echonats.core.ports import Clock, Store
from echonats.model import (
    MAX_DM_MEMBERS,
    MAX_UNREAD_COUNT,
    Channel,
    ChannelKind,
    Conversation,
    Message,
    Unread,
)
from echonats.model import events as ev
from echonats.model.errors import Conflict, NotFound, ValidationFailed

MAX_MENTIONS_PAGE = 100
MAX_EVERYONE_MEMBERS = 100  # @here/@channel from a plain member notify channels up to this size
# Conversations whose latest message is read at once when listing DMs.
_LAST_MESSAGE_CONCURRENCY = 8


class ConversationService:
    def __init__(
        self, store: Store, sink: EventSink, clock: Clock, access: ChannelAccess, reader: TimelineReader
    ) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._access = access
        self._reader = reader

    async def open_dm(self, caller: Caller, user_ids: Sequence[str]) -> Conversation:
        """The DM of exactly ``user_ids`` and the caller (1..9 people; the caller alone is a
        notes-to-self DM). Every other id must be an active member of the workspace."""
        members = sorted({caller.user_id, *(model.user_id(u, "userIds") for u in user_ids)})
        if len(members) > MAX_DM_MEMBERS:
            raise ValidationFailed(
                f"a direct message has at most {MAX_DM_MEMBERS} members, you included",
                details={"field": "userIds"},
            )
        now = self._clock.now()
        draft = Channel(
            id=uuid.uuid4(),
            tenant_id=caller.tenant_id,
            name="dm",
            topic="",
            is_private=True,
            created_by=caller.user_id,
            created_at=now,
            kind=ChannelKind.DM,
        )
        async with self._sink.transaction() as (tx, pending):
            for user_id in members:
                if (
                    user_id != caller.user_id
                    and (await tx.members.state(caller.tenant_id, user_id)).member is None
                ):
                    raise NotFound("no member with this id in the workspace", details={"userId": user_id})
            channel, created = await tx.conversations.open_dm(draft, model.dm_key(members), members)
            if created:
                pending.append(
                    ev.DmOpened(
                        tenant_id=caller.tenant_id,
                        occurred_at=now,
                        actor_id=caller.user_id,
                        payload=ev.DmData(channel=ev.ChannelData.of(channel), member_ids=tuple(members)),
                    )
                )
        return Conversation(channel, tuple(members), await self._last_message(caller, channel.id))

    async def dms(self, caller: Caller) -> list[Conversation]:
        async with self._store.read() as tx:
            found = await tx.conversations.dms_of(caller.tenant_id, caller.user_id)
        room = asyncio.Semaphore(_LAST_MESSAGE_CONCURRENCY)

        async def with_last(channel: Channel, member_ids: tuple[str, ...]) -> Conversation:
            async with room:
                return Conversation(channel, member_ids, await self._last_message(caller, channel.id))

        return list(await asyncio.gather(*(with_last(c, m) for c, m in found)))

    async def mark_read(
        self, caller: Caller, channel_id: uuid.UUID, message_id: int, *, unread_from: bool = False
    ) -> int:
        """Move the caller's read state to ``message_id`` (forward only), or with ``unread_from``
        back to just before it ("mark unread from here"). The id must be one of the channel's."""
        await self._access.readable(caller, channel_id)
        await self._reader.message(caller, channel_id, message_id)  # NotFound for another channel's id
        async with self._sink.transaction() as (tx, pending):
            target = message_id - 1 if unread_from else message_id
            stored = await tx.conversations.mark_read(
                channel_id, caller.user_id, target, forward_only=not unread_from
            )
            if stored is None:
                raise Conflict("join the channel to keep a read state in it")
            pending.append(
                ev.ReadStateChanged(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.ReadStateData(
                        user_id=caller.user_id, channel_id=channel_id, last_read_id=stored
                    ),
                )
            )
        return stored

    async def unreads(self, caller: Caller) -> list[Unread]:
        """Every channel and DM the caller is a member of, with counts capped at MAX_UNREAD_COUNT."""
        async with self._store.read() as tx:
            return await tx.conversations.unreads(caller.tenant_id, caller.user_id, MAX_UNREAD_COUNT)

    async def mentions(
        self, caller: Caller, *, before: int | None, limit: int
    ) -> tuple[list[Message], int | None]:
        """The caller's mentions in channels they are still in, newest first, and the next cursor."""
        if not 1 <= limit <= MAX_MENTIONS_PAGE:
            raise ValidationFailed(f"limit must be 1..{MAX_MENTIONS_PAGE}", details={"field": "limit"})
        async with self._store.read() as tx:
            ids = await tx.conversations.mentions_of(
                caller.tenant_id, caller.user_id, before=before, limit=limit + 1
            )
            rows = await tx.messages.by_ids(ids[:limit], viewer=caller.user_id)
        page = [rows[i].message for i in ids[:limit] if i in rows and not rows[i].message.deleted]
        return page, (ids[limit - 1] if len(ids) > limit else None)

    async def _last_message(self, caller: Caller, channel_id: uuid.UUID) -> Message | None:
        page = await self._reader.page(caller, channel_id, before=None, after=None, limit=1)
        return page.items[0] if page.items else None


async def may_mention_everyone(store: Store, caller: Caller, channel_id: uuid.UUID) -> bool:
    """@here/@channel notify every member only in channels of at most 100 members, or when said
    by a channel or workspace owner/admin (D48); otherwise they are plain text."""
    if caller.role.can_administer:
        return True
    async with store.read() as tx:
        if await tx.conversations.member_count(channel_id) <= MAX_EVERYONE_MEMBERS:
            return True
        role = await tx.channels.member_role(channel_id, caller.user_id)
    return role is not None and role.can_administer
