"""REST routes for the workspaces of a user across tenants (tokens without a tenant claim, D51):
list them, create one and join one by its id when ``ECHONATS_SELF_SERVICE_WORKSPACES`` allows it.
The web client signs in with such tokens; a tenant-claim token sees its one workspace."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from echonats.core.services import Services
from echonats.core.workspaces import Membership
from echonats.gateway.routes import BODY, COMMON, errors
from echonats.gateway.schemas import RequestBody, ResponseBody
from echonats.model import MAX_WIRE_TEXT_CHARS, Principal, Role


class CreateWorkspace(RequestBody):
    name: Annotated[str, msgspec.Meta(max_length=MAX_WIRE_TEXT_CHARS)]


class WorkspaceOut(ResponseBody):
    id: uuid.UUID
    name: str
    role: Role  # the caller's role in it

    @classmethod
    def of(cls, membership: Membership) -> WorkspaceOut:
        return cls(id=membership.tenant.id, name=membership.tenant.name, role=membership.member.role)


class WorkspaceList(ResponseBody):
    items: list[WorkspaceOut]
    self_service: bool  # whether this caller may create and join workspaces


class WorkspaceController(Controller):
    path = "/api/v1/workspaces"
    tags = ["workspaces"]

    @get("/", responses=errors(*COMMON), summary="The workspaces the caller is in, by name")
    async def list_workspaces(self, principal: Principal, services: Services) -> WorkspaceList:
        memberships = await services.workspaces.memberships(principal)
        memberships.sort(key=lambda m: (m.tenant.name.casefold(), str(m.tenant.id)))
        return WorkspaceList(
            items=[WorkspaceOut.of(m) for m in memberships],
            self_service=services.workspaces.self_service and principal.tenant_id is None,
        )

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        responses=errors(*BODY, 422),
        summary="Create a workspace owned by the caller (self-service, tokens without a tenant claim)",
    )
    async def create_workspace(
        self, data: CreateWorkspace, principal: Principal, services: Services
    ) -> WorkspaceOut:
        return WorkspaceOut.of(await services.workspaces.create(principal, name=data.name))

    @post(
        "/{workspace_id:uuid}/join",
        status_code=HTTP_200_OK,
        responses=errors(*COMMON, 404),
        summary="Join a workspace by its id as a member (self-service; already in: that membership)",
    )
    async def join_workspace(
        self, workspace_id: uuid.UUID, principal: Principal, services: Services
    ) -> WorkspaceOut:
        return WorkspaceOut.of(await services.workspaces.join(principal, workspace_id))
