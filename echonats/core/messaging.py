"""Writing to a channel's log (messages, and the changes prepared by ``core.changes``) and reading
history.

A write is acknowledged once the durable log (JetStream) has it; its id is the log's sequence.
PostgreSQL catches up through the persist worker, so reads fold the log's not-yet-persisted tail
onto the persisted rows (``core.history``): a writer always reads its own acknowledged writes.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Sequence

from echonats import model
from echonats.core.access import ChannelAccess, TenantLimitsCache
from echonats.core.caller import Caller
from echonats.core.conversations import may_mention_everyone
from echonats.core.history import TimelineReader
from echonats.core.ports import Appended, Clock, MessageLog, RateLimiter, Store
from echonats.model import Change, Entry, HistoryPage, Message, NewMessage, Unchanged
from echonats.model.errors import Conflict, MessageGone, NotFound, RateLimited, Unavailable, ValidationFailed
from echonats.model.timeline import change_dedupe_key

# What a socket or a route puts into a channel's log, and what it gets back once stored.
Write = NewMessage | Change | Unchanged
Written = Entry | Unchanged

MIN_PAGE = 1
MAX_PAGE = 100
DEFAULT_PAGE = 50


class MessagingService:
    def __init__(
        self,
        store: Store,
        log: MessageLog,
        access: ChannelAccess,
        clock: Clock,
        *,
        limiter: RateLimiter | None = None,
        tenants: TenantLimitsCache | None = None,
    ) -> None:
        self._store = store
        self._log = log
        self._access = access
        self._clock = clock
        self._limiter = limiter
        self._tenants = tenants or TenantLimitsCache(store)
        self.reader = TimelineReader(store, log)

    async def send(
        self,
        caller: Caller,
        channel_id: uuid.UUID,
        *,
        body: str,
        nonce: str | None,
        thread_id: int | None = None,
        also_to_channel: bool = False,
    ) -> Message:
        new = await self.check(
            caller, channel_id, body=body, nonce=nonce, thread_id=thread_id, also_to_channel=also_to_channel
        )
        stored = await self.write(caller, new)
        if not isinstance(stored, Message):  # the nonce was used for a change before
            raise Conflict("this nonce was already used for another write", details={"field": "nonce"})
        return stored

    async def write(self, caller: Caller, write: Write) -> Written:
        """Admit one checked write and await it stored (the REST routes' path)."""
        _, refusal = await self.admit(caller, [write])
        if refusal is not None:
            raise refusal
        return await (await self.submit(write))

    async def check(
        self,
        caller: Caller,
        channel_id: uuid.UUID,
        *,
        body: str,
        nonce: str | None,
        thread_id: int | None = None,
        also_to_channel: bool = False,
    ) -> NewMessage:
        """Validation and access: the message as it would be stored. Safe to run concurrently."""
        text = model.message_body(body)
        client_nonce = model.nonce(nonce)
        if also_to_channel and thread_id is None:
            raise ValidationFailed("alsoToChannel needs a threadId", details={"field": "alsoToChannel"})
        await self._access.readable(caller, channel_id)
        named, everyone = model.mentions(text)
        if everyone:
            everyone = await may_mention_everyone(self._store, caller, channel_id)
        if thread_id is not None:
            root = await self.reader.message(caller, channel_id, thread_id)
            if root.is_reply:
                raise ValidationFailed("a reply cannot start a thread", details={"field": "threadId"})
            if root.deleted:
                raise MessageGone("the thread's root message was deleted", details={"messageId": thread_id})
        return NewMessage(
            tenant_id=caller.tenant_id,
            channel_id=channel_id,
            sender_id=caller.user_id,
            sender_display_name=caller.member.display_name,
            body=text,
            nonce=client_nonce,
            created_at=self._clock.now(),
            thread_id=thread_id,
            also_to_channel=also_to_channel,
            mentions=tuple(u for u in named if u != caller.user_id),
            mentions_channel=everyone,
        )

    async def admit(self, caller: Caller, writes: Sequence[Write]) -> tuple[int, RateLimited | None]:
        """Rate limits for consecutive checked writes of one caller, in their order (after
        validation and access: rejected input must not spend the caller's budget). Returns how many
        of the first may go on and the refusal for the rest, if any. Messages and changes share one
        budget; a resend of a nonce already admitted is free: the log answers it with the original."""
        if self._limiter is None or not writes:
            return len(writes), None
        tenant = await self._tenants.get(caller.tenant_id)
        return await self._limiter.acquire_many(
            caller.tenant_id,
            caller.user_id,
            len(writes),
            tenant_per_second=tenant.max_messages_per_second,
            resend_keys=[_dedupe_key(write) for write in writes],
        )

    async def submit(self, write: Write) -> Awaitable[Written]:
        """Give ``write`` its place in the log now; await the result for the stored entry.

        Returning before the acknowledgement lets one sender have many writes in flight, in
        order, instead of one log round trip per write."""
        match write:
            case NewMessage():
                return self._stored(write, await self._log.begin_append(write))
            case Unchanged():
                return _done(write)
            case _:
                return self._stored(write, await self._log.begin_change(write))

    async def _stored(self, write: NewMessage | Change, pending: Awaitable[Appended]) -> Entry:
        appended = await pending
        if appended.duplicate:
            # Same nonce within the dedupe window: answer with the original entry.
            original = await self._log.get(appended.message_id)
            if original is None:
                raise Unavailable("duplicate write no longer in the log")
            return original
        if isinstance(write, NewMessage):
            return write.stored_as(appended.message_id)
        return dataclasses.replace(write, id=appended.message_id)

    async def history(
        self,
        caller: Caller,
        channel_id: uuid.UUID,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = DEFAULT_PAGE,
        thread_id: int | None = None,
    ) -> HistoryPage:
        """Newest first. ``before`` pages back in time; ``after`` alone pages forward from a message.
        With ``thread_id``: that thread's replies (the root must be a message of the channel).

        nextCursor continues in the same direction: pass it as ``before`` (or ``after``) again.
        """
        _check_page(limit, before, after)
        await self._access.readable(caller, channel_id)
        return await self.reader.page(
            caller, channel_id, before=before, after=after, limit=limit, thread_id=thread_id
        )

    async def thread(
        self,
        caller: Caller,
        channel_id: uuid.UUID,
        root_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> tuple[Message, HistoryPage]:
        """A thread's root and a page of its replies (as ``history``)."""
        _check_page(limit, before, after)
        await self._access.readable(caller, channel_id)
        root = await self.reader.message(caller, channel_id, root_id)
        if root.is_reply:
            raise NotFound("no thread starts at this message", details={"messageId": root_id})
        page = await self.reader.page(
            caller, channel_id, before=before, after=after, limit=limit, thread_id=root_id
        )
        return root, page

    async def message(self, caller: Caller, channel_id: uuid.UUID, message_id: int) -> Message:
        await self._access.readable(caller, channel_id)
        return await self.reader.message(caller, channel_id, message_id)

    async def pins(self, caller: Caller, channel_id: uuid.UUID) -> list[Message]:
        await self._access.readable(caller, channel_id)
        return await self.reader.pins(caller, channel_id)


def _check_page(limit: int, before: int | None, after: int | None) -> None:
    if not MIN_PAGE <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be {MIN_PAGE}..{MAX_PAGE}", details={"field": "limit"})
    for name, value in (("before", before), ("after", after)):
        if value is not None and value < 0:
            raise ValidationFailed(f"{name} must be a message id", details={"field": name})


def _dedupe_key(write: Write) -> str | None:
    match write:
        case NewMessage():
            return write.dedupe_key
        case Unchanged():
            return None
        case _:
            return change_dedupe_key(write)


async def _done(unchanged: Unchanged) -> Unchanged:
    return unchanged
