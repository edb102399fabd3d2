"""EchoPulse's JSON shapes: REST bodies (``gateway.echopulse_routes``) and the bodies of STOMP's
``/servers/{id}/...`` event destinations, whose ids are ``{"value": "..."}`` objects as EchoPulse's
Java value types serialise them. Fields echonats sent before (``channelId``, ``isPrivate``,
``displayName``, ...) stay in the event bodies next to EchoPulse's."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import assert_never

import msgspec

from echonats.gateway.schemas import RequestBody, ResponseBody, Text
from echonats.model import DomainEvent, Member, Message, Role, Tenant
from echonats.model import events as ev
from echonats.model.permissions import ROLE_DESCRIPTIONS, ROLE_PERMISSIONS

ROLE_COLORS = {Role.OWNER: "#e67e22", Role.ADMIN: "#3498db", Role.MEMBER: "#95a5a6"}


class NewServer(RequestBody):
    name: Text


class NewChannel(RequestBody):
    name: Text


class RoleDetails(ResponseBody):
    name: str
    description: str
    color: str
    permissions: list[str]

    @classmethod
    def of(cls, role: Role) -> RoleDetails:
        return cls(
            name=role.value,
            description=ROLE_DESCRIPTIONS[role],
            color=ROLE_COLORS[role],
            permissions=[p.value for p in ROLE_PERMISSIONS[role]],
        )


class ServerSummary(ResponseBody):
    id: uuid.UUID
    name: str


class ServerDetails(ResponseBody):
    id: uuid.UUID
    name: str
    default_role: RoleDetails
    roles: list[RoleDetails]

    @classmethod
    def of(cls, tenant: Tenant) -> ServerDetails:
        return cls(
            id=tenant.id,
            name=tenant.name,
            default_role=RoleDetails.of(Role.MEMBER),
            roles=[RoleDetails.of(role) for role in Role],
        )


class MembershipSummary(ResponseBody):
    server: ServerSummary
    roles: list[RoleDetails]


class UserSummary(ResponseBody):
    id: str
    username: str
    display_name: str
    memberships: list[MembershipSummary]


class UserDetails(ResponseBody):
    id: str
    username: str
    display_name: str


class ServerMember(ResponseBody):
    user: UserDetails
    roles: list[RoleDetails]

    @classmethod
    def of(cls, member: Member) -> ServerMember:
        user = UserDetails(id=member.user_id, username=member.display_name, display_name=member.display_name)
        return cls(user=user, roles=[RoleDetails.of(member.role)])


class ChannelDetails(ResponseBody):
    id: uuid.UUID
    name: str


class JoinedServer(ResponseBody):
    server: ServerSummary


class Post(ResponseBody):
    id: int
    username: str
    channel_id: uuid.UUID
    content: str
    timestamp: datetime

    @classmethod
    def of(cls, message: Message) -> Post:
        return cls(
            id=message.id,
            username=message.sender_display_name,
            channel_id=message.channel_id,
            content=message.body,
            timestamp=message.created_at,
        )


def _id(value: object) -> dict[str, str]:
    return {"value": str(value)}


def event_body(event: DomainEvent) -> dict[str, object] | None:
    """The ``event`` of an EchoPulse event destination's body (None: no destination has it)."""
    server = _id(event.tenant_id)
    match event:
        case ev.ChannelCreated(payload=channel) | ev.ChannelDeleted(payload=channel):
            return {"id": _id(channel.channel_id), "serverId": server, "name": channel.name, **event.data}
        case ev.MemberJoined(payload=member):
            roles = [msgspec.to_builtins(RoleDetails.of(Role(member.role)))]
            return {
                **event.data,
                "userId": _id(member.user_id),
                "serverId": server,
                "username": member.display_name,
                "displayName": member.display_name,
                "roles": roles,
            }
        case ev.MemberLeft(payload=left):
            return {**event.data, "userId": _id(left.user_id), "serverId": server}
        case (
            ev.ChannelUpdated()
            | ev.ChannelMemberAdded()
            | ev.ChannelMemberRemoved()
            | ev.MemberRoleChanged()
            | ev.TenantLimitsUpdated()
            | ev.DmOpened()
            | ev.ReadStateChanged()
            | ev.MessageMentioned()
            | ev.MemberStatusChanged()
            | ev.TenantDeleted()
        ):
            return None
        case _:
            assert_never(event)
