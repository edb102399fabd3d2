"""REST routes for conversations: direct messages, read state, unread counts, mentions."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from echonats.core.caller import Caller
from echonats.core.conversations import MAX_MENTIONS_PAGE
from echonats.core.services import Services
from echonats.gateway import schemas as s
from echonats.gateway.routes import BODY, COMMON, Cursor, errors

MentionLimit = Annotated[int, Parameter(ge=1, le=MAX_MENTIONS_PAGE, description="Page size, 1..100")]


class DmController(Controller):
    path = "/api/v1/dms"
    tags = ["conversations"]

    @post(
        "/",
        status_code=HTTP_200_OK,
        responses=errors(*BODY, 404, 422),
        summary="Open the DM of exactly these members (the caller included): the same set, the same DM",
    )
    async def open_dm(self, data: s.OpenDm, caller: Caller, services: Services) -> s.DmOut:
        return s.DmOut.of(await services.conversations.open_dm(caller, data.user_ids))

    @get("/", responses=errors(*COMMON), summary="The caller's DMs, newest first, with their last message")
    async def list_dms(self, caller: Caller, services: Services) -> s.DmList:
        return s.DmList(items=[s.DmOut.of(dm) for dm in await services.conversations.dms(caller)])


class ReadStateController(Controller):
    path = "/api/v1"
    tags = ["conversations"]

    @post(
        "/channels/{channel_id:uuid}/read",
        status_code=HTTP_200_OK,
        responses=errors(*BODY, 404, 409),
        summary="Mark read up to a message (moves forward only)",
    )
    async def read(
        self, channel_id: uuid.UUID, data: s.MarkRead, caller: Caller, services: Services
    ) -> s.ReadStateOut:
        last = await services.conversations.mark_read(caller, channel_id, data.message_id)
        return s.ReadStateOut(channel_id=channel_id, last_read_id=last)

    @post(
        "/channels/{channel_id:uuid}/unread",
        status_code=HTTP_200_OK,
        responses=errors(*BODY, 404, 409),
        summary="Mark unread from a message on (moves the read state back)",
    )
    async def unread(
        self, channel_id: uuid.UUID, data: s.MarkRead, caller: Caller, services: Services
    ) -> s.ReadStateOut:
        last = await services.conversations.mark_read(caller, channel_id, data.message_id, unread_from=True)
        return s.ReadStateOut(channel_id=channel_id, last_read_id=last)

    @get("/unreads", responses=errors(*COMMON), summary="Unread and mention counts of every channel and DM")
    async def unreads(self, caller: Caller, services: Services) -> s.UnreadList:
        return s.UnreadList(items=[s.UnreadOut.of(u) for u in await services.conversations.unreads(caller)])

    @get("/mentions", responses=errors(*COMMON, 422), summary="The caller's mentions, newest first")
    async def mentions(
        self, caller: Caller, services: Services, before: Cursor = None, limit: MentionLimit = 50
    ) -> s.MentionPage:
        items, cursor = await services.conversations.mentions(caller, before=before, limit=limit)
        return s.MentionPage(items=[s.MessageOut.of(m) for m in items], next_cursor=cursor)


CONVERSATION_CONTROLLERS = [DmController, ReadStateController]
