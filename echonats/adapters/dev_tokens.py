"""Development tokens (HS256) for `echonats token` and local stacks: signed with the configured
secret, or the documented development secret when none is set."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import jwt

from echonats.model.errors import ConfigError
from echonats.settings import DEV_JWT_SECRET, AuthSettings


def _nest(path: str, value: object) -> dict[str, object]:
    """``"realm_access.roles", [..]`` -> ``{"realm_access": {"roles": [..]}}``."""
    keys = path.split(".")
    nested: dict[str, object] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def mint_dev_token(
    auth: AuthSettings,
    *,
    tenant_id: str | None,
    user_id: str,
    name: str | None = None,
    roles: Sequence[str] = (),
    ttl_s: int = 3600,
) -> str:
    secret = auth.jwt_secret or DEV_JWT_SECRET
    if auth.jwks_url and not auth.jwt_secret:
        raise ConfigError(
            "ECHONATS_JWT_JWKS_URL: set without ECHONATS_JWT_SECRET, so the gateway only accepts the "
            "issuer's tokens; get one from the issuer, or set a secret for development tokens"
        )
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if tenant_id:
        claims[auth.tenant_claim] = tenant_id
    if name:
        claims["name"] = name
    if roles:
        claims.update(_nest(auth.roles_claim, list(roles)))
    if auth.issuer:
        claims["iss"] = auth.issuer
    if auth.audience:
        claims["aud"] = auth.audience
    return jwt.encode(claims, secret, algorithm="HS256")
