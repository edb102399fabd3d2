"""JwtVerifier in HS256 mode (ECHONATS_JWT_SECRET): no network involved."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.adapters.jwt_auth import JwtVerifier
from echonats.model import MAX_TOKEN_CHARS
from echonats.model.errors import ConfigError, Unauthenticated
from echonats.settings import AuthSettings

SECRET = "unit-test-secret-0123456789abcdef-0123"
TENANT = uuid.UUID("7f1c4a52-93b3-4c43-9d0e-1f55c1b8a001")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "user-1", "iat": now, "exp": now + 300}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _token(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture
def auth() -> AuthSettings:
    return AuthSettings(jwt_secret=SECRET)


@pytest.fixture
def verifier(auth: AuthSettings) -> JwtVerifier:
    return JwtVerifier(auth)


async def _rejected(verifier: JwtVerifier, token: str, match: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated, match=match) as info:
        await verifier.verify(token)
    assert not token or token not in info.value.message
    return info.value


# -- construction ----------------------------------------------------------------------------------


def test_needs_a_secret_or_a_jwks_url() -> None:
    with pytest.raises(ConfigError, match=r"^ECHONATS_JWT_SECRET"):
        JwtVerifier(AuthSettings())


def test_refuses_a_short_secret() -> None:
    with pytest.raises(ConfigError, match=r"^ECHONATS_JWT_SECRET: must be at least 32 bytes"):
        JwtVerifier(AuthSettings(jwt_secret="too-short"))


# -- accepted tokens -------------------------------------------------------------------------------


async def test_dev_token_becomes_a_principal() -> None:
    auth = AuthSettings(jwt_secret=SECRET, issuer="http://idp", audience="chat")
    token = mint_dev_token(auth, tenant_id=str(TENANT), user_id="u-42", name="Ada", roles=["platform-admin"])
    principal = await JwtVerifier(auth).verify(token)
    assert principal.user_id == "u-42"
    assert principal.tenant_id == TENANT
    assert principal.display_name == "Ada"
    assert principal.email is None
    assert principal.roles == frozenset({"platform-admin"})
    assert principal.is_platform_admin


async def test_keycloak_style_claims(verifier: JwtVerifier) -> None:
    token = _token(
        _claims(
            sub="f3b1c2d4-0000-4000-8000-000000000001",
            tenant_id=str(TENANT),
            preferred_username="ada",
            email="ada@example.org",
            realm_access={"roles": ["offline_access", "platform-admin", 7]},
            roles=["ignored-when-the-configured-path-exists"],
            aud="account",  # Keycloak always sets one; not checked when no audience is configured
            azp="web",
        )
    )
    principal = await verifier.verify(token)
    assert principal.display_name == "ada"
    assert principal.email == "ada@example.org"
    assert principal.roles == frozenset({"offline_access", "platform-admin"})
    assert principal.tenant_id == TENANT


async def test_display_name_falls_back_to_sub_and_tenant_is_optional(verifier: JwtVerifier) -> None:
    principal = await verifier.verify(_token(_claims(sub="only-sub", email=5)))
    assert principal.display_name == "only-sub"
    assert principal.tenant_id is None
    assert principal.email is None
    assert principal.roles == frozenset()


async def test_name_wins_over_preferred_username_and_is_cleaned(verifier: JwtVerifier) -> None:
    principal = await verifier.verify(_token(_claims(name="  Ada\n\tLovelace ", preferred_username="ada")))
    assert principal.display_name == "Ada Lovelace"
    principal = await verifier.verify(_token(_claims(name="", preferred_username="ada")))
    assert principal.display_name == "ada"


async def test_top_level_roles_when_the_configured_path_is_absent(verifier: JwtVerifier) -> None:
    principal = await verifier.verify(_token(_claims(roles=["a", "b"])))
    assert principal.roles == frozenset({"a", "b"})


@pytest.mark.parametrize("realm_access", [{"roles": "admin"}, {"roles": None}, "admin", ["admin"]])
async def test_malformed_roles_claim_means_no_roles(verifier: JwtVerifier, realm_access: object) -> None:
    principal = await verifier.verify(_token(_claims(realm_access=realm_access)))
    assert principal.roles == frozenset()


async def test_configured_claim_names() -> None:
    auth = AuthSettings(jwt_secret=SECRET, tenant_claim="org", roles_claim="app.perms.list")
    token = _token(_claims(org=str(TENANT), app={"perms": {"list": ["x"]}}, tenant_id="not-used"))
    principal = await JwtVerifier(auth).verify(token)
    assert principal.tenant_id == TENANT
    assert principal.roles == frozenset({"x"})


async def test_leeway_absorbs_clock_skew(auth: AuthSettings) -> None:
    now = int(time.time())
    expired, early = _token(_claims(exp=now - 10)), _token(_claims(nbf=now + 10, iat=now + 10))
    for token in (expired, early):
        assert (await JwtVerifier(auth, leeway_s=30).verify(token)).user_id == "user-1"
    with pytest.raises(Unauthenticated, match=r"^token has expired$"):
        await JwtVerifier(auth, leeway_s=0).verify(expired)
    with pytest.raises(Unauthenticated, match=r"^token is not yet valid$"):
        await JwtVerifier(auth, leeway_s=0).verify(early)


# -- rejected tokens -------------------------------------------------------------------------------


async def test_expired(verifier: JwtVerifier) -> None:
    await _rejected(verifier, _token(_claims(exp=int(time.time()) - 120)), "^token has expired$")


async def test_not_before_in_the_future(verifier: JwtVerifier) -> None:
    await _rejected(verifier, _token(_claims(nbf=int(time.time()) + 120)), "^token is not yet valid$")


async def test_issued_in_the_future(verifier: JwtVerifier) -> None:
    await _rejected(verifier, _token(_claims(iat=int(time.time()) + 120)), "^token is not yet valid$")


async def test_missing_exp(verifier: JwtVerifier) -> None:
    await _rejected(verifier, _token(_claims(exp=None)), "^token lacks the 'exp' claim$")


async def test_wrong_issuer() -> None:
    verifier = JwtVerifier(AuthSettings(jwt_secret=SECRET, issuer="http://idp"))
    await _rejected(verifier, _token(_claims(iss="http://evil")), "^token issuer is not accepted$")
    await _rejected(verifier, _token(_claims()), "^token lacks the 'iss' claim$")


async def test_wrong_audience() -> None:
    verifier = JwtVerifier(AuthSettings(jwt_secret=SECRET, audience="chat"))
    await _rejected(verifier, _token(_claims(aud="billing")), "^token audience is not accepted$")
    await _rejected(verifier, _token(_claims()), "^token lacks the 'aud' claim$")
    assert (await verifier.verify(_token(_claims(aud=["billing", "chat"])))).user_id == "user-1"


async def test_alg_none(verifier: JwtVerifier) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    await _rejected(verifier, f"{header}.{payload}.", "^token algorithm is not supported$")


async def test_other_hmac_algorithm(verifier: JwtVerifier) -> None:
    token = jwt.encode(_claims(), SECRET + "-long-enough-for-hs512-" * 3, algorithm="HS512")
    await _rejected(verifier, token, "^token algorithm is not supported$")


async def test_tampered_payload(verifier: JwtVerifier) -> None:
    header, _, signature = _token(_claims(realm_access={"roles": ["member"]})).split(".")
    forged = _b64(json.dumps(_claims(realm_access={"roles": ["platform-admin"]})).encode())
    await _rejected(verifier, f"{header}.{forged}.{signature}", "^token signature is invalid$")


async def test_wrong_secret(verifier: JwtVerifier) -> None:
    other = "another-secret-0123456789abcdef-01234"
    await _rejected(verifier, _token(_claims(), secret=other), "^token signature is invalid$")


@pytest.mark.parametrize("tenant", ["acme", 42, "", ["7f1c4a52-93b3-4c43-9d0e-1f55c1b8a001"]])
async def test_bad_tenant_claim(verifier: JwtVerifier, tenant: object) -> None:
    await _rejected(
        verifier, _token(_claims(tenant_id=tenant)), "^token claim 'tenant_id' is not a tenant id"
    )


async def test_missing_sub(verifier: JwtVerifier) -> None:
    await _rejected(verifier, _token(_claims(sub=None)), "^token lacks the 'sub' claim$")


@pytest.mark.parametrize(
    ("sub", "match"),
    [
        (12, "^token subject is malformed$"),  # pyjwt's own check: sub must be a string
        ("", "^token subject must be 1..255 characters$"),  # pyjwt's `require` counts "" as present
        ("x" * 256, "^token subject must be 1..255 characters$"),
        (" padded ", "whitespace or control characters"),
        ("a\x00b", "whitespace or control characters"),
    ],
)
async def test_bad_sub(verifier: JwtVerifier, sub: object, match: str) -> None:
    await _rejected(verifier, _token(_claims(sub=sub)), match)


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "....",
        "bm90IGpzb24.e30.c2ln",  # header is not JSON
        "eyJhbGciOiJIUzI1NiJ9.e30.%%%",  # signature is not base64url
        _b64(b"[1]") + ".e30.",  # header is not an object
    ],
)
async def test_garbage(verifier: JwtVerifier, token: str) -> None:
    await _rejected(verifier, token, "^token is malformed$")


async def test_validly_signed_non_json_payload(verifier: JwtVerifier) -> None:
    signing_input = _b64(b'{"alg":"HS256"}') + "." + _b64(b"not json")
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    await _rejected(verifier, f"{signing_input}.{_b64(signature)}", "^token is malformed$")


async def test_empty_and_oversized(verifier: JwtVerifier) -> None:
    await _rejected(verifier, "", "^token is missing$")
    await _rejected(verifier, "a" * (MAX_TOKEN_CHARS + 1), "^token is too long$")


async def test_non_numeric_exp(verifier: JwtVerifier) -> None:
    await _rejected(verifier, _token(_claims(exp="tomorrow")), "^token is malformed$")


async def test_jwks_mode_without_a_secret_rejects_hs256_before_any_fetch() -> None:
    # Port 9 (discard) on loopback: if the verifier tried to fetch, the message would say so.
    verifier = JwtVerifier(AuthSettings(jwks_url="http://127.0.0.1:9/certs"))
    token = mint_dev_token(AuthSettings(jwt_secret=SECRET), tenant_id=None, user_id="u")
    await _rejected(verifier, token, "^token algorithm is not supported$")


async def test_development_tokens_verify_next_to_an_issuers_keys_without_a_fetch() -> None:
    # The compatibility rule: `echonats token` keeps working when a JWKS URL is set as well. Port 9
    # refuses: an HS256 token must be verified with the secret alone, never look at the JWKS.
    auth = AuthSettings(jwt_secret=SECRET, jwks_url="http://127.0.0.1:9/certs")
    principal = await JwtVerifier(auth).verify(mint_dev_token(auth, tenant_id=None, user_id="dev-user"))
    assert principal.user_id == "dev-user"
    forged = mint_dev_token(AuthSettings(jwt_secret="x" * 40), tenant_id=None, user_id="dev-user")
    await _rejected(JwtVerifier(auth), forged, "^token signature is invalid$")
