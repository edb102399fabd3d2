"""Reading messages in their latest state: history pages, thread pages, single messages, pins.

Every read takes the log's tail first and the store's rows second: everything at or below the
tail's floor is in the store by the time it is queried, so the union has no gap; folding the tail
onto the rows (``core.timeline``) applies what the persist worker has not written yet. A writer
therefore reads its own acknowledged writes, also while the worker is behind or stopped.
"""

from __future__ import annotations

import uuid

from echonats.core.caller import Caller
from echonats.core.ports import MessageLog, MessageRepo, ReactionKey, ReactionMark, Store, StoredMessage
from echonats.core.timeline import fold, pin_order, reaction_keys, tail_targets
from echonats.model import Entry, HistoryPage, Message
from echonats.model.errors import NotFound


class TimelineReader:
    def __init__(self, store: Store, log: MessageLog) -> None:
        self._store = store
        self._log = log

    async def page(
        self,
        caller: Caller,
        channel_id: uuid.UUID,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        thread_id: int | None = None,
    ) -> HistoryPage:
        """Newest first; ``after`` alone pages forward. The channel's listing, or a thread's replies.
        The caller's access is the caller's to check."""
        forward = after is not None and before is None
        # The page is the channel's state at one position of its log, so a client can go on from
        # exactly there (subscribe with since=position): the store is read in one snapshot taken
        # after the floor was read (it holds everything up to the floor), and the tail above that
        # floor is read after the snapshot was taken (it holds everything the snapshot may hold).
        floor = await self._log.persisted_floor()
        async with self._store.snapshot() as tx:
            rows = await tx.messages.page(
                channel_id,
                before=before,
                after=after,
                limit=limit + 1,
                viewer=caller.user_id,
                thread_id=thread_id,
            )
            tail = await self._log.tail(caller.tenant_id, channel_id, above=floor)
            stored = {r.message.id: r for r in rows}
            stored |= await self._for_fold(tx.messages, tail, caller.user_id, exclude=stored)
            marks = await _marks(tx.messages, tail)
        position = tail[-1].id if tail else floor

        def choose(messages: list[Message]) -> list[Message]:
            wanted = [
                m
                for m in messages
                if m.channel_id == channel_id
                and (before is None or m.id < before)
                and (after is None or m.id > after)
                and (m.thread_id == thread_id if thread_id is not None else m.listed_in_channel)
            ]
            wanted.sort(key=lambda m: m.id, reverse=not forward)
            return wanted[: limit + 1]

        views = fold(stored, tail, marks=marks, viewer=caller.user_id, choose=choose)
        ordered = sorted(views.values(), key=lambda m: m.id, reverse=not forward)
        page = ordered[:limit]
        has_more = len(ordered) > limit
        if forward:
            page.reverse()  # the window right after `after`, presented newest first
            cursor = page[0].id if page else after
        else:
            cursor = page[-1].id if page else None
        return HistoryPage(
            items=page,
            next_cursor=cursor if has_more or forward else None,
            has_more=has_more,
            position=position,
        )

    async def message(self, caller: Caller, channel_id: uuid.UUID, message_id: int) -> Message:
        """One message of the channel in its latest state (a tombstone if deleted); NotFound if the
        channel has no such message (another channel's is not found either)."""
        tail = await self._log.tail(caller.tenant_id, channel_id)
        async with self._store.read() as tx:
            stored = await self._for_fold(tx.messages, tail, caller.user_id, include=message_id)
            marks = await _marks(tx.messages, tail)
        found = fold(stored, tail, marks=marks, viewer=caller.user_id).get(message_id)
        if found is None or found.channel_id != channel_id or found.tenant_id != caller.tenant_id:
            raise NotFound("message not found", details={"messageId": message_id})
        return found

    async def pins(self, caller: Caller, channel_id: uuid.UUID) -> list[Message]:
        """The channel's pinned messages, most recently pinned first."""
        tail = await self._log.tail(caller.tenant_id, channel_id)
        async with self._store.read() as tx:
            stored = {r.message.id: r for r in await tx.messages.pinned(channel_id, viewer=caller.user_id)}
            stored |= await self._for_fold(tx.messages, tail, caller.user_id, exclude=stored)
            marks = await _marks(tx.messages, tail)
        order = pin_order(stored, tail)
        views = fold(stored, tail, marks=marks, viewer=caller.user_id)
        pinned = [m for m in views.values() if m.pinned and m.channel_id == channel_id]
        return sorted(pinned, key=lambda m: order.get(m.id, 0), reverse=True)

    @staticmethod
    async def _for_fold(
        messages: MessageRepo,
        tail: list[Entry],
        viewer: str,
        *,
        exclude: dict[int, StoredMessage] | None = None,
        include: int | None = None,
    ) -> dict[int, StoredMessage]:
        """The stored rows the fold needs besides those already read: what the tail refers to."""
        wanted = set(tail_targets(tail))
        if include is not None:
            wanted.add(include)
        wanted -= set(exclude or ())
        return await messages.by_ids(sorted(wanted), viewer=viewer) if wanted else {}


async def _marks(messages: MessageRepo, tail: list[Entry]) -> dict[ReactionKey, ReactionMark]:
    keys = reaction_keys(tail)
    return await messages.reaction_marks(keys) if keys else {}
