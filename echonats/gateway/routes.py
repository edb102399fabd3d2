"""REST routes under /api/v1. Thin: parse, call one use case, shape the response."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from litestar import Controller, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from echonats import metrics, model
from echonats.core.caller import Caller
from echonats.core.messaging import DEFAULT_PAGE, MAX_PAGE
from echonats.core.ports import TenantLimits
from echonats.core.services import Services
from echonats.gateway import schemas as s
from echonats.gateway.errors import ErrorResponse
from echonats.model import MAX_MESSAGE_ID, MAX_USER_ID_CHARS, Principal
from echonats.model.errors import ValidationFailed


def errors(*codes: int) -> dict[int, ResponseSpec]:
    descriptions = {
        400: "Malformed request",
        401: "Missing or invalid token",
        403: "Not allowed",
        404: "Not found (or not visible to the caller)",
        409: "Conflict",
        413: "Body too large",
        415: "The body is not JSON (Content-Type other than application/json)",
        422: "Invalid value",
        429: "Rate limited",
        503: "A dependency is unavailable",
    }
    return {c: ResponseSpec(data_container=ErrorResponse, description=descriptions[c]) for c in codes}


COMMON = (400, 401, 403, 503)
BODY = (*COMMON, 413, 415)  # routes with a JSON body: larger than 64 KiB or not JSON is refused
UserIdPath = Annotated[str, Parameter(min_length=1, max_length=MAX_USER_ID_CHARS)]
PageLimit = Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="Page size, 1..100")]
# Bounds declared here are in the OpenAPI schema and enforced by Litestar (400, see README "Errors");
# rules the schema cannot express (control characters in a user id) are the domain's (422).
Cursor = Annotated[int | None, Parameter(ge=0, le=MAX_MESSAGE_ID, description="A message id")]
UserIdCursor = Annotated[
    str | None, Parameter(max_length=MAX_USER_ID_CHARS, description="The last user id seen")
]
MAX_PRESENCE_IDS = 200
UserIdList = Annotated[
    list[str], Parameter(query="userIds", description="Comma-separated (or repeated) user ids", max_items=200)
]


class AdminController(Controller):
    path = "/api/v1/admin/tenants"
    tags = ["admin"]

    @post("/", status_code=HTTP_201_CREATED, responses=errors(*BODY, 422), summary="Create a tenant")
    async def create_tenant(
        self, data: s.CreateTenant, principal: Principal, services: Services
    ) -> s.TenantOut:
        created = await services.membership.create_tenant(
            principal,
            name=data.name,
            admin_email=data.admin_email,
            admin_display_name=data.admin_display_name,
        )
        return s.TenantOut.of(created.tenant, admin_user_id=created.admin.user_id)

    @get("/", responses=errors(*COMMON), summary="List tenants")
    async def list_tenants(
        self,
        principal: Principal,
        services: Services,
        limit: PageLimit = DEFAULT_PAGE,
        after: uuid.UUID | None = None,
    ) -> s.TenantList:
        tenants = await services.membership.list_tenants(principal, limit=limit + 1, after=after)
        items = [s.TenantOut.of(t) for t in tenants[:limit]]
        return s.TenantList(items=items, next_cursor=items[-1].id if len(tenants) > limit else None)

    @get("/{tenant_id:uuid}", responses=errors(*COMMON, 404), summary="Get a tenant and its limits")
    async def get_tenant(self, tenant_id: uuid.UUID, principal: Principal, services: Services) -> s.TenantOut:
        return s.TenantOut.of(await services.membership.get_tenant(principal, tenant_id))

    @patch("/{tenant_id:uuid}", responses=errors(*BODY, 404, 422), summary="Update tenant limits")
    async def update_limits(
        self, tenant_id: uuid.UUID, data: s.UpdateTenantLimits, principal: Principal, services: Services
    ) -> s.TenantOut:
        limits = TenantLimits(data.max_channels, data.max_messages_per_second)
        return s.TenantOut.of(await services.membership.update_limits(principal, tenant_id, limits))

    @post(
        "/{tenant_id:uuid}/users",
        status_code=HTTP_201_CREATED,
        responses=errors(*BODY, 404, 422),
        summary="Create a user in a tenant",
    )
    async def create_user(
        self, tenant_id: uuid.UUID, data: s.CreateUser, principal: Principal, services: Services
    ) -> s.MemberOut:
        member = await services.membership.create_user(
            principal, tenant_id, email=data.email, display_name=data.display_name
        )
        return s.MemberOut.of(member)


class MembersController(Controller):
    path = "/api/v1"
    tags = ["members"]

    @get("/users/me", responses=errors(*COMMON), summary="The caller (provisioned on first call)")
    async def me(self, caller: Caller) -> s.MemberOut:
        return s.MemberOut.of(caller.member)

    @get("/members", responses=errors(*COMMON, 422), summary="Members of the caller's workspace")
    async def list_members(
        self, caller: Caller, services: Services, limit: PageLimit = DEFAULT_PAGE, after: UserIdCursor = None
    ) -> s.MemberList:
        members = await services.membership.list_members(caller, limit=limit + 1, after=after)
        items = [s.MemberOut.of(m) for m in members[:limit]]
        return s.MemberList(items=items, next_cursor=items[-1].id if len(members) > limit else None)

    @patch(
        "/members/{user_id:str}",
        responses=errors(*BODY, 404, 409, 422),
        summary="Change a member's role",
    )
    async def change_role(
        self, user_id: UserIdPath, data: s.ChangeRole, caller: Caller, services: Services
    ) -> s.MemberOut:
        return s.MemberOut.of(await services.membership.change_role(caller, user_id, data.role))

    @delete(
        "/members/{user_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*COMMON, 404, 409, 422),
        summary="Remove a member (stays blocked until reinstated)",
    )
    async def remove_member(self, user_id: UserIdPath, caller: Caller, services: Services) -> None:
        await services.membership.remove_member(caller, user_id)

    @post(
        "/members/{user_id:str}/reinstate",
        status_code=HTTP_201_CREATED,
        responses=errors(*COMMON, 404, 422),
        summary="Reinstate a removed member",
    )
    async def reinstate(self, user_id: UserIdPath, caller: Caller, services: Services) -> s.MemberOut:
        return s.MemberOut.of(await services.membership.reinstate(caller, user_id))

    @post(
        "/members/me/leave",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*COMMON, 409),
        summary="Leave the workspace (user.leave-server)",
    )
    async def leave(self, caller: Caller, services: Services) -> None:
        await services.membership.leave(caller)


class PresenceController(Controller):
    path = "/api/v1/presence"
    tags = ["presence"]

    @get(
        "/",
        responses=errors(*COMMON, 422),
        summary="Presence of up to 200 users of the caller's workspace",
    )
    async def presence(
        self, caller: Caller, state: State, services: Services, user_ids: UserIdList
    ) -> s.PresenceList:
        ids = list(dict.fromkeys(i.strip() for part in user_ids for i in part.split(",") if i.strip()))
        ids = [model.user_id(i, "userIds") for i in ids]
        if not 1 <= len(ids) <= MAX_PRESENCE_IDS:
            raise ValidationFailed(
                f"userIds must name 1..{MAX_PRESENCE_IDS} users", details={"field": "userIds"}
            )
        views = await services.status.views(caller, state.presence_store, ids)
        return s.PresenceList(items=[s.PresenceOut.of(v) for v in views])

    @put("/me", responses=errors(*BODY, 422), summary="Set (or clear) the caller's own status")
    async def set_status(self, data: s.SetStatus, caller: Caller, services: Services) -> s.StatusOut:
        status = await services.status.set_status(
            caller, presence=data.presence, text=data.text, expires_at=data.expires_at
        )
        return s.StatusOut.of(status)


class ChannelsController(Controller):
    path = "/api/v1/channels"
    tags = ["channels"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        responses=errors(*BODY, 409, 422),
        summary="Create a channel",
    )
    async def create(self, data: s.CreateChannel, caller: Caller, services: Services) -> s.ChannelOut:
        channel = await services.channels.create(
            caller, name=data.name, is_private=data.is_private, topic=data.topic
        )
        return s.ChannelOut.of(channel)

    @get(
        "/",
        responses=errors(*COMMON),
        summary="Public channels and the private ones the caller is in",
    )
    async def list_channels(self, caller: Caller, services: Services) -> s.ChannelList:
        return s.ChannelList(items=[s.ChannelOut.of(c) for c in await services.channels.list_visible(caller)])

    @get("/{channel_id:uuid}", responses=errors(*COMMON, 404), summary="Get a channel")
    async def get_channel(self, channel_id: uuid.UUID, caller: Caller, services: Services) -> s.ChannelOut:
        return s.ChannelOut.of(await services.channels.get(caller, channel_id))

    @patch(
        "/{channel_id:uuid}",
        responses=errors(*BODY, 404, 409, 422),
        summary="Rename or set the topic",
    )
    async def update(
        self, channel_id: uuid.UUID, data: s.UpdateChannel, caller: Caller, services: Services
    ) -> s.ChannelOut:
        channel = await services.channels.update(caller, channel_id, name=data.name, topic=data.topic)
        return s.ChannelOut.of(channel)

    @delete(
        "/{channel_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*COMMON, 404),
        summary="Delete a channel and its messages",
    )
    async def delete_channel(self, channel_id: uuid.UUID, caller: Caller, services: Services) -> None:
        await services.channels.delete(caller, channel_id)

    @get("/{channel_id:uuid}/members", responses=errors(*COMMON, 404), summary="Channel members")
    async def members(self, channel_id: uuid.UUID, caller: Caller, services: Services) -> s.ChannelMemberList:
        members = await services.channels.members(caller, channel_id)
        return s.ChannelMemberList(items=[s.ChannelMemberOut.of(m) for m in members])

    @post(
        "/{channel_id:uuid}/members",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*BODY, 404, 409, 422),
        summary="Add a workspace member to the channel",
    )
    async def add_member(
        self, channel_id: uuid.UUID, data: s.AddChannelMember, caller: Caller, services: Services
    ) -> None:
        await services.channels.add_member(caller, channel_id, data.user_id)

    @delete(
        "/{channel_id:uuid}/members/{user_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*COMMON, 404, 422),
        summary="Remove a member from the channel",
    )
    async def remove_member(
        self, channel_id: uuid.UUID, user_id: UserIdPath, caller: Caller, services: Services
    ) -> None:
        await services.channels.remove_member(caller, channel_id, user_id)

    @post(
        "/{channel_id:uuid}/join",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*COMMON, 404),
        summary="Join a public channel",
    )
    async def join(self, channel_id: uuid.UUID, caller: Caller, services: Services) -> None:
        await services.channels.join(caller, channel_id)

    @post(
        "/{channel_id:uuid}/leave",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*COMMON, 404),
        summary="Leave a channel",
    )
    async def leave(self, channel_id: uuid.UUID, caller: Caller, services: Services) -> None:
        await services.channels.leave(caller, channel_id)

    @post(
        "/{channel_id:uuid}/messages",
        status_code=HTTP_201_CREATED,
        responses=errors(*BODY, 404, 422, 429),
        summary="Send a message (after the JetStream ack)",
    )
    async def send(
        self, channel_id: uuid.UUID, data: s.SendMessage, caller: Caller, services: Services
    ) -> s.MessageOut:
        started = time.perf_counter()
        message = await services.messaging.send(
            caller,
            channel_id,
            body=data.body,
            nonce=data.nonce,
            thread_id=data.thread_id,
            also_to_channel=data.also_to_channel,
        )
        metrics.record_send("rest", started)
        return s.MessageOut.of(message)

    @get(
        "/{channel_id:uuid}/messages",
        responses=errors(*COMMON, 404, 422),
        summary="History (roots and channel messages, latest state), newest first, by keyset on the id",
    )
    async def history(
        self,
        channel_id: uuid.UUID,
        caller: Caller,
        services: Services,
        before: Cursor = None,
        after: Cursor = None,
        limit: PageLimit = DEFAULT_PAGE,
    ) -> s.MessagePage:
        page = await services.messaging.history(caller, channel_id, before=before, after=after, limit=limit)
        return s.MessagePage.of(page)


CONTROLLERS = [AdminController, MembersController, PresenceController, ChannelsController]
