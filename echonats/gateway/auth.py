"""Authentication for HTTP routes: bearer token -> Principal -> Caller (tenant member)."""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from echonats.core.caller import Caller
from echonats.core.services import Services
from echonats.model import PLATFORM_ADMIN_ROLE, Principal
from echonats.model.errors import Unauthenticated, ValidationFailed

# The static admin token stands for a platform administrator without a tenant.
STATIC_ADMIN = Principal(
    user_id="platform-admin",
    tenant_id=None,
    display_name="Platform admin",
    roles=frozenset({PLATFORM_ADMIN_ROLE}),
)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(token: str | None, state: State) -> Principal:
    if token is None:
        raise Unauthenticated("missing bearer token")
    admin_token: str | None = state.admin_token
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return STATIC_ADMIN
    principal: Principal = await state.verifier.verify(token)
    return principal


def unexpired(principal: Principal) -> Principal:
    """A socket lives until its token's ``exp``: a token past it (which the verifier still accepts
    for its clock-skew leeway) opens or renews none."""
    if principal.expires_at is not None and principal.expires_at.timestamp() <= time.time():
        raise Unauthenticated("token has expired")
    return principal


async def provide_principal(request: Request[Any, Any, Any], state: State) -> Principal:
    return await authenticate(bearer_token(request.headers.get("authorization")), state)


TENANT_HEADER = "echonats-tenant"


async def provide_caller(request: Request[Any, Any, Any], principal: Principal, state: State) -> Caller:
    """The caller's membership. A token without a tenant claim acts in the workspace of the path:
    a channel's own (``/channels/{channelId}``), a server's (``/api/servers/{serverId}``), else
    the one named by the ``Echonats-Tenant`` header (D51)."""
    services: Services = state.services
    params = request.path_params
    server_id = params.get("server_id")
    if isinstance(server_id, uuid.UUID):  # a token bound to another tenant finds no such server
        return await services.membership.resolve(principal, server_id)
    if principal.tenant_id is None:
        channel_id = params.get("channel_id")
        if isinstance(channel_id, uuid.UUID):
            return await services.membership.resolve_in_channel(principal, channel_id)
        tenant_id = _tenant_header(request.headers.get(TENANT_HEADER))
        if tenant_id is not None:
            return await services.membership.resolve(principal, tenant_id)
    return await services.membership.resolve(principal)


def _tenant_header(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise ValidationFailed("the Echonats-Tenant header must be a tenant id (UUID)") from None


async def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


AUTH_DEPENDENCIES = {
    "principal": Provide(provide_principal),
    "caller": Provide(provide_caller),
    "services": Provide(provide_services),
}
