"""Who is calling: an authenticated principal with an active membership in its tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from echonats.model import Member, Principal, Role
from echonats.model.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated principal with an active membership in its tenant."""

    principal: Principal
    member: Member

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.member.tenant_id

    @property
    def user_id(self) -> str:
        return self.member.user_id

    @property
    def role(self) -> Role:
        return self.member.role

    def require_admin(self, action: str) -> None:
        if not self.role.can_administer:
            raise Forbidden(f"only workspace owners and admins may {action}")
