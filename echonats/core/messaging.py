"""Sending messages and reading history.

A message is acknowledged once the durable log (JetStream) has it; its id is the log's sequence.
PostgreSQL catches up through the persist worker, so history merges the persisted rows with the
log's not-yet-persisted tail: a sender always reads its own acknowledged writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Sequence

from echonats import model
from echonats.core.access import ChannelAccess, TenantLimitsCache
from echonats.core.caller import Caller
from echonats.core.ports import Appended, Clock, MessageLog, RateLimiter, Store
from echonats.model import HistoryPage, Message, NewMessage
from echonats.model.errors import RateLimited, Unavailable, ValidationFailed

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

    async def send(self, caller: Caller, channel_id: uuid.UUID, *, body: str, nonce: str | None) -> Message:
        new = await self.check(caller, channel_id, body=body, nonce=nonce)
        _, refusal = await self.admit(caller, [new])
        if refusal is not None:
            raise refusal
        return await (await self.submit(new))

    async def check(
        self, caller: Caller, channel_id: uuid.UUID, *, body: str, nonce: str | None
    ) -> NewMessage:
        """Validation and access: the message as it would be stored. Safe to run concurrently."""
        text = model.message_body(body)
        client_nonce = model.nonce(nonce)
        await self._access.readable(caller, channel_id)
        return NewMessage(
            tenant_id=caller.tenant_id,
            channel_id=channel_id,
            sender_id=caller.user_id,
            sender_display_name=caller.member.display_name,
            body=text,
            nonce=client_nonce,
            created_at=self._clock.now(),
        )

    async def admit(self, caller: Caller, messages: Sequence[NewMessage]) -> tuple[int, RateLimited | None]:
        """Rate limits for consecutive checked messages of one sender, in their order (after
        validation and access: rejected input must not spend the sender's budget). Returns how many
        of the first may go on and the refusal for the rest, if any. A resend of a nonce already
        admitted is free: the log answers it with the original message."""
        if self._limiter is None or not messages:
            return len(messages), None
        tenant = await self._tenants.get(caller.tenant_id)
        return await self._limiter.acquire_many(
            caller.tenant_id,
            caller.user_id,
            len(messages),
            tenant_per_second=tenant.max_messages_per_second,
            resend_keys=[message.dedupe_key for message in messages],
        )

    async def submit(self, new: NewMessage) -> Awaitable[Message]:
        """Give ``new`` its place in the log now; await the result for the stored message.

        Returning before the acknowledgement lets one sender have many messages in flight, in
        order, instead of one log round trip per message."""
        pending = await self._log.begin_append(new)
        return self._stored(new, pending)

    async def _stored(self, new: NewMessage, pending: Awaitable[Appended]) -> Message:
        appended = await pending
        if appended.duplicate:
            # Same nonce within the dedupe window: answer with the original message.
            original = await self._log.get(appended.message_id)
            if original is None:
                raise Unavailable("duplicate message no longer in the log")
            return original
        return new.stored_as(appended.message_id)

    async def history(
        self,
        caller: Caller,
        channel_id: uuid.UUID,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> HistoryPage:
        """Newest first. ``before`` pages back in time; ``after`` alone pages forward from a message.

        nextCursor continues in the same direction: pass it as ``before`` (or ``after``) again.
        """
        if not MIN_PAGE <= limit <= MAX_PAGE:
            raise ValidationFailed(f"limit must be {MIN_PAGE}..{MAX_PAGE}", details={"field": "limit"})
        for name, value in (("before", before), ("after", after)):
            if value is not None and value < 0:
                raise ValidationFailed(f"{name} must be a message id", details={"field": name})
        await self._access.readable(caller, channel_id)
        forward = after is not None and before is None
        # Read the log's tail first: everything at or below its persisted floor is already in
        # PostgreSQL when we query it next, so the union has no gap.
        tail = await self._log.unpersisted(
            caller.tenant_id, channel_id, after=after, before=before, limit=limit + 1, newest=not forward
        )
        async with self._store.read() as tx:
            rows = await tx.messages.page(channel_id, before=before, after=after, limit=limit + 1)
        merged = {m.id: m for m in rows}
        for message in tail:
            merged.setdefault(message.id, message)
        ordered = sorted(merged.values(), key=lambda m: m.id, reverse=not forward)
        page = ordered[:limit]
        has_more = len(ordered) > limit
        if forward:
            page.reverse()  # the window right after `after`, presented newest first
            cursor = page[0].id if page else after
        else:
            cursor = page[-1].id if page else None
        return HistoryPage(items=page, next_cursor=cursor if has_more or forward else None, has_more=has_more)
