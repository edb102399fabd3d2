"""EchoPulse's REST surface (``/api/users``, ``/api/servers/...``, ``/api/channels/{id}/posts``), so
its Angular front-end runs unchanged against echonats: a thin adapter over the same use cases as
``/api/v1``, with EchoPulse's JSON shapes. A "server" is a workspace (tenant); roles are echonats'
owner/admin/member shown as EchoPulse roles with permissions (``model.permissions``), and the
routes check the permission EchoPulse's would. Tokens without a tenant claim act in the server of
the path (``gateway.auth.provide_caller``); a server the caller is not in is a 404.
"""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from echonats.core.caller import Caller
from echonats.core.messaging import MAX_PAGE
from echonats.core.services import Services
from echonats.core.workspaces import Membership
from echonats.gateway.echopulse_shapes import (
    ChannelDetails,
    JoinedServer,
    MembershipSummary,
    NewChannel,
    NewServer,
    Post,
    RoleDetails,
    ServerDetails,
    ServerMember,
    ServerSummary,
    UserSummary,
)
from echonats.gateway.routes import BODY, COMMON, errors
from echonats.model import Principal
from echonats.model.permissions import Permission, require_permission

MAX_MEMBERS_LISTED = 10_000  # EchoPulse asks for every member at once; beyond this, the first ones
POSTS_PAGE = MAX_PAGE  # the latest posts of a channel, oldest first


def _membership(membership: Membership) -> MembershipSummary:
    tenant = membership.tenant
    return MembershipSummary(
        server=ServerSummary(id=tenant.id, name=tenant.name), roles=[RoleDetails.of(membership.member.role)]
    )


class EchoPulseUsers(Controller):
    path = "/api/users"
    tags = ["echopulse"]

    @get("/", responses=errors(*COMMON), summary="EchoPulse: the caller and the servers they are in")
    async def me(self, principal: Principal, services: Services) -> UserSummary:
        memberships = await services.workspaces.memberships(principal)
        return UserSummary(
            id=principal.user_id,
            username=principal.display_name,
            display_name=principal.display_name,
            memberships=[_membership(m) for m in memberships],
        )


class EchoPulseServers(Controller):
    path = "/api/servers"
    tags = ["echopulse"]

    @post(
        "/", status_code=HTTP_201_CREATED, responses=errors(*BODY, 422), summary="EchoPulse: create a server"
    )
    async def create(self, data: NewServer, principal: Principal, services: Services) -> ServerDetails:
        created = await services.workspaces.create(principal, name=data.name)
        return ServerDetails.of(created.tenant)

    @get("/{server_id:uuid}", responses=errors(*COMMON, 404), summary="EchoPulse: a server and its roles")
    async def details(self, server_id: uuid.UUID, caller: Caller, services: Services) -> ServerDetails:
        return ServerDetails.of(await services.workspaces.tenant(caller))

    @delete(
        "/{server_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*COMMON, 404),
        summary="EchoPulse: delete a server with its channels, messages and members (DELETE_SERVER)",
    )
    async def delete_server(self, server_id: uuid.UUID, caller: Caller, services: Services) -> None:
        require_permission(caller.role, Permission.DELETE_SERVER, "deleting the server")
        await services.workspaces.delete(caller)

    @get("/{server_id:uuid}/members", responses=errors(*COMMON, 404), summary="EchoPulse: a server's members")
    async def members(self, server_id: uuid.UUID, caller: Caller, services: Services) -> list[ServerMember]:
        listed: list[ServerMember] = []
        after: str | None = None
        while len(listed) < MAX_MEMBERS_LISTED:
            page = await services.membership.list_members(caller, limit=MAX_PAGE, after=after)
            listed.extend(ServerMember.of(m) for m in page)
            if len(page) < MAX_PAGE:
                break
            after = page[-1].user_id
        return listed[:MAX_MEMBERS_LISTED]

    @post(
        "/{server_id:uuid}/members",
        status_code=HTTP_200_OK,
        responses=errors(*COMMON, 404),
        summary="EchoPulse: join a server by its id (ECHONATS_SELF_SERVICE_WORKSPACES)",
    )
    async def join(self, server_id: uuid.UUID, principal: Principal, services: Services) -> JoinedServer:
        joined = await services.workspaces.join(principal, server_id)
        return JoinedServer(server=ServerSummary(id=joined.tenant.id, name=joined.tenant.name))

    @delete(
        "/{server_id:uuid}/members",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*COMMON, 404, 409),
        summary="EchoPulse: leave a server",
    )
    async def leave(self, server_id: uuid.UUID, caller: Caller, services: Services) -> None:
        await services.membership.leave(caller)

    @get(
        "/{server_id:uuid}/channels", responses=errors(*COMMON, 404), summary="EchoPulse: a server's channels"
    )
    async def channels(
        self, server_id: uuid.UUID, caller: Caller, services: Services
    ) -> list[ChannelDetails]:
        return [ChannelDetails(id=c.id, name=c.name) for c in await services.channels.list_visible(caller)]

    @post(
        "/{server_id:uuid}/channels",
        status_code=HTTP_201_CREATED,
        responses=errors(*BODY, 404, 409, 422),
        summary="EchoPulse: create a public channel (MANAGE_CHANNELS)",
    )
    async def create_channel(
        self, server_id: uuid.UUID, data: NewChannel, caller: Caller, services: Services
    ) -> ChannelDetails:
        require_permission(caller.role, Permission.MANAGE_CHANNELS, "creating channels")
        channel = await services.channels.create(caller, name=data.name, is_private=False)
        return ChannelDetails(id=channel.id, name=channel.name)

    @delete(
        "/{server_id:uuid}/channels/{channel_uuid:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(*COMMON, 404),
        summary="EchoPulse: delete a channel (MANAGE_CHANNELS)",
    )
    async def delete_channel(
        self, server_id: uuid.UUID, channel_uuid: uuid.UUID, caller: Caller, services: Services
    ) -> None:
        # `channel_uuid`, not `channel_id`: the server in the path names the workspace here.
        require_permission(caller.role, Permission.MANAGE_CHANNELS, "deleting channels")
        await services.channels.delete(caller, channel_uuid)


class EchoPulsePosts(Controller):
    path = "/api/channels"
    tags = ["echopulse"]

    @get(
        "/{channel_id:uuid}/posts",
        responses=errors(*COMMON, 404),
        summary="EchoPulse: a channel's latest posts, oldest first",
    )
    async def posts(self, channel_id: uuid.UUID, caller: Caller, services: Services) -> list[Post]:
        page = await services.messaging.history(caller, channel_id, limit=POSTS_PAGE)
        return [Post.of(m) for m in reversed(page.items) if not m.deleted]


ECHOPULSE_CONTROLLERS = [EchoPulseUsers, EchoPulseServers, EchoPulsePosts]
