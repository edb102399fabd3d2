"""REST routes for one message of a channel: read, edit, delete, reactions, pin, thread; and the
channel's pins. Thin like ``routes``: parse, call one use case, shape the response. Every change is
admitted (rate limits) and logged like a send; its answer carries the change's own id."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, put
from litestar.params import Parameter

from echonats import metrics
from echonats.core.caller import Caller
from echonats.core.messaging import DEFAULT_PAGE, Write
from echonats.core.services import Services
from echonats.gateway import schemas as s
from echonats.gateway.routes import BODY, COMMON, Cursor, PageLimit, errors
from echonats.gateway.sending import CHANGE_KINDS
from echonats.model import MAX_MESSAGE_ID, Message, Unchanged
from echonats.model.timeline import MAX_EMOJI_CHARS

MessageIdPath = Annotated[int, Parameter(ge=1, le=MAX_MESSAGE_ID, description="A message id")]
EmojiPath = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=MAX_EMOJI_CHARS,
        description="One Unicode emoji (percent-encoded in the URL) or a :shortcode:",
    ),
]
CHANGE = (*COMMON, 404, 409, 422, 429)


async def _change(services: Services, caller: Caller, write: Write) -> s.ChangeOut:
    written = await services.messaging.write(caller, write)
    if isinstance(written, Unchanged):
        return s.ChangeOut(event_id=None, message_id=written.message_id)
    if isinstance(written, Message):  # the nonce named a send before: the answer is that send
        return s.ChangeOut(event_id=written.id, message_id=written.id)
    metrics.record_change(CHANGE_KINDS[type(written)], "rest")
    return s.ChangeOut(event_id=written.id, message_id=written.message_id)


class MessageController(Controller):
    path = "/api/v1/channels/{channel_id:uuid}"
    tags = ["messages"]

    @get(
        "/messages/{message_id:int}",
        responses=errors(*COMMON, 404),
        summary="One message, latest state",
    )
    async def read(
        self, channel_id: uuid.UUID, message_id: MessageIdPath, caller: Caller, services: Services
    ) -> s.MessageOut:
        return s.MessageOut.of(await services.messaging.message(caller, channel_id, message_id))

    @patch(
        "/messages/{message_id:int}",
        responses=errors(*BODY, 404, 409, 422, 429),
        summary="Edit a message (its author only)",
    )
    async def edit(
        self,
        channel_id: uuid.UUID,
        message_id: MessageIdPath,
        data: s.EditMessage,
        caller: Caller,
        services: Services,
    ) -> s.ChangeOut:
        change = await services.changes.check_edit(
            caller, channel_id, message_id, body=data.body, nonce=data.nonce
        )
        return await _change(services, caller, change)

    @delete(
        "/messages/{message_id:int}",
        status_code=200,
        responses=errors(*CHANGE),
        summary="Delete a message (its author, or a channel or workspace owner or admin)",
    )
    async def remove(
        self, channel_id: uuid.UUID, message_id: MessageIdPath, caller: Caller, services: Services
    ) -> s.ChangeOut:
        change = await services.changes.check_delete(caller, channel_id, message_id, nonce=None)
        return await _change(services, caller, change)

    @put(
        "/messages/{message_id:int}/reactions/{emoji:str}",
        responses=errors(*CHANGE),
        summary="React with an emoji (idempotent per user and emoji)",
    )
    async def react(
        self,
        channel_id: uuid.UUID,
        message_id: MessageIdPath,
        emoji: EmojiPath,
        caller: Caller,
        services: Services,
    ) -> s.ChangeOut:
        change = await services.changes.check_reaction(
            caller, channel_id, message_id, emoji=emoji, added=True, nonce=None
        )
        return await _change(services, caller, change)

    @delete(
        "/messages/{message_id:int}/reactions/{emoji:str}",
        status_code=200,
        responses=errors(*CHANGE),
        summary="Take back a reaction (idempotent)",
    )
    async def unreact(
        self,
        channel_id: uuid.UUID,
        message_id: MessageIdPath,
        emoji: EmojiPath,
        caller: Caller,
        services: Services,
    ) -> s.ChangeOut:
        change = await services.changes.check_reaction(
            caller, channel_id, message_id, emoji=emoji, added=False, nonce=None
        )
        return await _change(services, caller, change)

    @put("/messages/{message_id:int}/pin", responses=errors(*CHANGE), summary="Pin a message")
    async def pin(
        self, channel_id: uuid.UUID, message_id: MessageIdPath, caller: Caller, services: Services
    ) -> s.ChangeOut:
        change = await services.changes.check_pin(caller, channel_id, message_id, pinned=True, nonce=None)
        return await _change(services, caller, change)

    @delete(
        "/messages/{message_id:int}/pin",
        status_code=200,
        responses=errors(*CHANGE),
        summary="Unpin a message",
    )
    async def unpin(
        self, channel_id: uuid.UUID, message_id: MessageIdPath, caller: Caller, services: Services
    ) -> s.ChangeOut:
        change = await services.changes.check_pin(caller, channel_id, message_id, pinned=False, nonce=None)
        return await _change(services, caller, change)

    @get(
        "/messages/{message_id:int}/thread",
        responses=errors(*COMMON, 404, 422),
        summary="A thread: its root and its replies, newest first, by keyset on the id",
    )
    async def thread(
        self,
        channel_id: uuid.UUID,
        message_id: MessageIdPath,
        caller: Caller,
        services: Services,
        before: Cursor = None,
        after: Cursor = None,
        limit: PageLimit = DEFAULT_PAGE,
    ) -> s.ThreadPage:
        root, page = await services.messaging.thread(
            caller, channel_id, message_id, before=before, after=after, limit=limit
        )
        return s.ThreadPage.of(root, page)

    @get(
        "/pins",
        responses=errors(*COMMON, 404),
        summary="The channel's pinned messages, newest pin first",
    )
    async def pins(self, channel_id: uuid.UUID, caller: Caller, services: Services) -> s.PinList:
        return s.PinList(
            items=[s.MessageOut.of(m) for m in await services.messaging.pins(caller, channel_id)]
        )
