"""Workspace roles as permission sets, in EchoPulse's vocabulary (its front-end shows buttons by
them, and its routes are checked by them). The roles are echonats' own (owner, admin, member)."""

from __future__ import annotations

import enum

from echonats.model.entities import Role
from echonats.model.errors import Forbidden


class Permission(enum.StrEnum):
    DELETE_SERVER = "DELETE_SERVER"
    MANAGE_CHANNELS = "MANAGE_CHANNELS"
    MANAGE_MEMBERS = "MANAGE_MEMBERS"
    MANAGE_ROLES = "MANAGE_ROLES"


_ADMIN = (Permission.MANAGE_CHANNELS, Permission.MANAGE_MEMBERS, Permission.MANAGE_ROLES)

ROLE_PERMISSIONS: dict[Role, tuple[Permission, ...]] = {
    Role.OWNER: (Permission.DELETE_SERVER, *_ADMIN),
    Role.ADMIN: _ADMIN,
    Role.MEMBER: (),
}

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.OWNER: "Owns the workspace: everything admins may do, and delete it.",
    Role.ADMIN: "Manages channels, members and roles.",
    Role.MEMBER: "Reads and writes in the channels they can see.",
}


def require_permission(role: Role, permission: Permission, action: str) -> None:
    if permission not in ROLE_PERMISSIONS[role]:
        raise Forbidden(f"{action} needs the {permission.value} permission")
