"""Changes to a message: edit, delete, react, unreact, pin, unpin. Each ``check_*`` validates and
decides against the message's latest state and returns the change to log (its id is 0 until the
log gives it one), or ``Unchanged`` when the message is already in the state asked for (the write
is idempotent). Admitting and logging are the same as for sends (``MessagingService``).

Who may do what (docs/decisions.md D46):
- edit: the author only;
- delete: the author, a channel owner/admin, or a workspace owner/admin;
- react, unreact, pin, unpin: anyone who may read and post in the channel.
Nothing can be done to a deleted message (``MessageGone``), except deleting it again (unchanged).
"""

from __future__ import annotations

import uuid

from echonats import model
from echonats.core.access import ChannelAccess
from echonats.core.caller import Caller
from echonats.core.conversations import may_mention_everyone
from echonats.core.history import TimelineReader
from echonats.core.ports import Clock, Store
from echonats.model import (
    MAX_PINS_PER_CHANNEL,
    MAX_REACTIONS_PER_MESSAGE,
    Message,
    MessageDeleted,
    MessageEdited,
    PinChanged,
    ReactionChanged,
    Unchanged,
)
from echonats.model.errors import Forbidden, LimitExceeded, MessageGone


class MessageChanges:
    def __init__(self, store: Store, access: ChannelAccess, reader: TimelineReader, clock: Clock) -> None:
        self._store = store
        self._access = access
        self._reader = reader
        self._clock = clock

    async def _target(self, caller: Caller, channel_id: uuid.UUID, message_id: int) -> Message:
        await self._access.readable(caller, channel_id)  # NotFound for a channel the caller cannot see
        return await self._reader.message(caller, channel_id, message_id)

    async def check_edit(
        self, caller: Caller, channel_id: uuid.UUID, message_id: int, *, body: str, nonce: str | None
    ) -> MessageEdited:
        text = model.message_body(body)
        client_nonce = model.nonce(nonce)
        target = await self._target(caller, channel_id, message_id)
        if target.sender_id != caller.user_id:
            raise Forbidden("only the author may edit a message")
        if target.deleted:
            raise MessageGone("a deleted message cannot be edited", details={"messageId": message_id})
        named, everyone = model.mentions(text)
        if everyone:
            everyone = await may_mention_everyone(self._store, caller, channel_id)
        return MessageEdited(
            0,
            caller.tenant_id,
            channel_id,
            message_id,
            caller.user_id,
            self._clock.now(),
            text,
            client_nonce,
            mentions=tuple(u for u in named if u != caller.user_id),
            mentions_channel=everyone,
        )

    async def check_delete(
        self, caller: Caller, channel_id: uuid.UUID, message_id: int, *, nonce: str | None
    ) -> MessageDeleted | Unchanged:
        client_nonce = model.nonce(nonce)
        target = await self._target(caller, channel_id, message_id)
        if target.deleted:
            return Unchanged(message_id, self._clock.now())
        if target.sender_id != caller.user_id and not await self._moderates(caller, channel_id):
            raise Forbidden("only the author or a channel or workspace owner or admin may delete a message")
        return MessageDeleted(
            0,
            caller.tenant_id,
            channel_id,
            message_id,
            caller.user_id,
            self._clock.now(),
            target.thread_id,
            client_nonce,
        )

    async def check_reaction(
        self,
        caller: Caller,
        channel_id: uuid.UUID,
        message_id: int,
        *,
        emoji: str,
        added: bool,
        nonce: str | None,
    ) -> ReactionChanged | Unchanged:
        reaction = model.emoji(emoji)
        client_nonce = model.nonce(nonce)
        target = await self._target(caller, channel_id, message_id)
        if target.deleted:
            raise MessageGone("a deleted message cannot be reacted to", details={"messageId": message_id})
        current = next((r for r in target.reactions if r.emoji == reaction), None)
        if (current is not None and current.me) == added:
            return Unchanged(message_id, self._clock.now())
        if added and current is None and len(target.reactions) >= MAX_REACTIONS_PER_MESSAGE:
            raise LimitExceeded(
                f"a message can have at most {MAX_REACTIONS_PER_MESSAGE} different reactions",
                details={"limit": MAX_REACTIONS_PER_MESSAGE},
            )
        return ReactionChanged(
            0,
            caller.tenant_id,
            channel_id,
            message_id,
            caller.user_id,
            self._clock.now(),
            reaction,
            added,
            client_nonce,
        )

    async def check_pin(
        self, caller: Caller, channel_id: uuid.UUID, message_id: int, *, pinned: bool, nonce: str | None
    ) -> PinChanged | Unchanged:
        client_nonce = model.nonce(nonce)
        target = await self._target(caller, channel_id, message_id)
        if target.deleted:
            raise MessageGone("a deleted message cannot be pinned", details={"messageId": message_id})
        if target.pinned == pinned:
            return Unchanged(message_id, self._clock.now())
        if pinned and len(await self._reader.pins(caller, channel_id)) >= MAX_PINS_PER_CHANNEL:
            raise LimitExceeded(
                f"a channel can have at most {MAX_PINS_PER_CHANNEL} pinned messages",
                details={"limit": MAX_PINS_PER_CHANNEL},
            )
        return PinChanged(
            0,
            caller.tenant_id,
            channel_id,
            message_id,
            caller.user_id,
            self._clock.now(),
            pinned,
            client_nonce,
        )

    async def _moderates(self, caller: Caller, channel_id: uuid.UUID) -> bool:
        if caller.role.can_administer:
            return True
        async with self._store.read() as tx:
            role = await tx.channels.member_role(channel_id, caller.user_id)
        return role is not None and role.can_administer
