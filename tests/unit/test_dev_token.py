from __future__ import annotations

import jwt
import pytest

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.model.errors import ConfigError
from echonats.settings import DEV_JWT_SECRET, load_settings


def test_dev_token_carries_configured_claims() -> None:
    auth = load_settings({"ECHONATS_JWT_AUDIENCE": "chat", "ECHONATS_JWT_ISSUER": "http://idp"}).auth
    token = mint_dev_token(auth, tenant_id="t1", user_id="u1", name="Ada", roles=["platform-admin"])
    claims = jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"], audience="chat", issuer="http://idp")
    assert claims["sub"] == "u1"
    assert claims["tenant_id"] == "t1"
    assert claims["name"] == "Ada"
    assert claims["realm_access"] == {"roles": ["platform-admin"]}
    assert claims["exp"] - claims["iat"] == 3600


def test_dev_token_refused_when_an_oidc_issuer_is_configured() -> None:
    auth = load_settings({"ECHONATS_JWT_JWKS_URL": "https://idp/certs"}).auth
    with pytest.raises(ConfigError, match=r"^ECHONATS_JWT_JWKS_URL"):
        mint_dev_token(auth, tenant_id="t", user_id="u")
