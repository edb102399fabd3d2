"""A local OIDC issuer for development (``echonats issuer``): Keycloak's paths for any realm, so a
front-end written for Keycloak (keycloak-js) logs in against it unchanged. NOT for production: it
authenticates nobody — its login page asks only for a user name.

- ``/realms/{realm}/.well-known/openid-configuration``: the discovery document.
- ``.../protocol/openid-connect/auth``: a login page (GET) whose form (POST) redirects back with a
  code, in the query or the fragment (``response_mode``); PKCE S256 required when a challenge is
  given, as keycloak-js always does.
- ``.../token``: the authorization code (PKCE verified, one use, 60 s) and refresh grants; RS256
  access tokens with ``kid`` (``sub``, ``preferred_username``, ``name``, ``realm_access.roles``), an
  id_token with the nonce, a JWT-shaped refresh token. CORS with the exact origin and credentials.
- ``.../certs`` (JWKS), ``.../userinfo``, ``.../logout``.

Keys live in memory: a restart invalidates every token (log in again).
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import Litestar, Request, Response, get, post
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body
from litestar.response import Redirect

TOKEN_TTL_S = 12 * 3600  # a working day: EchoPulse's front-end never refreshes
REFRESH_TTL_S = 24 * 3600
CODE_TTL_S = 60
MAX_USERNAME_CHARS = 64
OIDC = "/realms/{realm:str}/protocol/openid-connect"


@dataclass(frozen=True, slots=True)
class _Grant:
    realm: str
    client_id: str
    redirect_uri: str
    username: str
    nonce: str | None
    challenge: str | None
    expires: float


class IssuerState:
    def __init__(self, public_url: str) -> None:
        self.public_url = public_url.rstrip("/")
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:16]
        self.codes: dict[str, _Grant] = {}

    def issuer(self, realm: str) -> str:
        return f"{self.public_url}/realms/{realm}"

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def verify(self, token: str, realm: str, kind: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=["RS256"],
                issuer=self.issuer(realm),
                options={"verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise _oauth_error("invalid_grant", f"bad {kind} token: {exc}") from exc
        if claims.get("typ") != kind:
            raise _oauth_error("invalid_grant", f"not a {kind} token")
        return claims

    def tokens(self, realm: str, client_id: str, username: str, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        subject = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{realm}/{username}"))  # stable per realm and name
        base = {"iss": self.issuer(realm), "sub": subject, "iat": now, "azp": client_id}
        profile = {"preferred_username": username, "name": username}
        access = {
            **base,
            **profile,
            "typ": "Bearer",
            "exp": now + TOKEN_TTL_S,
            "aud": "account",
            "realm_access": {"roles": ["offline_access", "uma_authorization", "user"]},
            "jti": uuid.uuid4().hex,
        }
        identity = {
            **base,
            **profile,
            "typ": "ID",
            "aud": client_id,
            "exp": now + TOKEN_TTL_S,
            "nonce": nonce,
        }
        refresh = {**base, "typ": "Refresh", "aud": self.issuer(realm), "exp": now + REFRESH_TTL_S,
                   "username": username, "jti": uuid.uuid4().hex}  # fmt: skip
        return {
            "access_token": self.sign(access),
            "id_token": self.sign({k: v for k, v in identity.items() if v is not None}),
            "refresh_token": self.sign(refresh),
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_S,
            "refresh_expires_in": REFRESH_TTL_S,
            "scope": "openid profile email",
        }


class OAuthError(Exception):
    """Answered as OAuth 2.0 says (RFC 6749 5.2): 400 ``{"error", "error_description"}``."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _oauth_error(code: str, description: str) -> OAuthError:
    return OAuthError(code, description)


def _oauth_response(request: Request[Any, Any, State], exc: OAuthError) -> Response[dict[str, str]]:
    return Response({"error": exc.code, "error_description": exc.description}, status_code=400)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _state(request: Request[Any, Any, State]) -> IssuerState:
    issuer: IssuerState = request.app.state.issuer
    return issuer


@get("/realms/{realm:str}/.well-known/openid-configuration")
async def discovery(realm: str, request: Request[Any, Any, State]) -> dict[str, Any]:
    issuer = _state(request)
    base = f"{issuer.issuer(realm)}/protocol/openid-connect"
    return {
        "issuer": issuer.issuer(realm),
        "authorization_endpoint": f"{base}/auth",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/certs",
        "userinfo_endpoint": f"{base}/userinfo",
        "end_session_endpoint": f"{base}/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
    }


@get(f"{OIDC}/certs")
async def certs(realm: str, request: Request[Any, Any, State]) -> dict[str, Any]:
    issuer = _state(request)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(issuer.key.public_key(), as_dict=True)
    return {"keys": [{**jwk, "kid": issuer.kid, "use": "sig", "alg": "RS256"}]}


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Sign in — echonats (local)</title>
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin-top:.5rem}}</style></head>
<body><h1>Sign in</h1><p>Local development issuer of echonats: any name signs in, nobody is checked.</p>
<form method="post"><label>User name<input name="username" required maxlength="{max}" autofocus></label>
{hidden}<button type="submit">Sign in</button></form></body></html>"""
_AUTH_PARAMS = ("client_id", "redirect_uri", "state", "nonce", "response_mode", "code_challenge",
                "code_challenge_method", "scope", "response_type")  # fmt: skip


@get(f"{OIDC}/auth")
async def login_page(realm: str, request: Request[Any, Any, State]) -> Response[str]:
    params = request.query_params
    _check_redirect(params.get("redirect_uri"))
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params.get(name) or "")}">'
        for name in _AUTH_PARAMS
    )
    return Response(_PAGE.format(max=MAX_USERNAME_CHARS, hidden=hidden), media_type="text/html")


@post(f"{OIDC}/auth", status_code=302)
async def login(
    realm: str,
    request: Request[Any, Any, State],
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),  # noqa: B008 (Litestar's idiom)
) -> Redirect:
    redirect_uri = _check_redirect(data.get("redirect_uri"))
    username = (data.get("username") or "").strip()
    if not 1 <= len(username) <= MAX_USERNAME_CHARS or not username.isprintable():
        raise HTTPException(
            status_code=400, detail=f"a user name of 1..{MAX_USERNAME_CHARS} printable characters"
        )
    challenge = data.get("code_challenge") or None
    if challenge and data.get("code_challenge_method") != "S256":
        raise HTTPException(status_code=400, detail="only the S256 code challenge method is supported")
    code = secrets.token_urlsafe(32)
    _state(request).codes[code] = _Grant(
        realm, data.get("client_id") or "", redirect_uri, username, data.get("nonce") or None, challenge,
        time.monotonic() + CODE_TTL_S,
    )  # fmt: skip
    answer = urlencode({"state": data.get("state") or "", "session_state": uuid.uuid4().hex, "code": code})
    separator = "#" if data.get("response_mode") == "fragment" else ("&" if "?" in redirect_uri else "?")
    return Redirect(f"{redirect_uri}{separator}{answer}")


@post(f"{OIDC}/token", status_code=200)
async def token(
    realm: str,
    request: Request[Any, Any, State],
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),  # noqa: B008
) -> dict[str, Any]:
    issuer = _state(request)
    grant_type = data.get("grant_type")
    if grant_type == "authorization_code":
        grant = issuer.codes.pop(data.get("code") or "", None)  # one use
        if grant is None or grant.expires < time.monotonic() or grant.realm != realm:
            raise _oauth_error("invalid_grant", "unknown, used or expired code")
        if data.get("redirect_uri") != grant.redirect_uri:
            raise _oauth_error("invalid_grant", "redirect_uri differs from the authorization request's")
        if grant.challenge is not None:
            verifier = data.get("code_verifier") or ""
            if _b64(hashlib.sha256(verifier.encode()).digest()) != grant.challenge:
                raise _oauth_error("invalid_grant", "PKCE verification failed")
        return issuer.tokens(realm, grant.client_id or data.get("client_id", ""), grant.username, grant.nonce)
    if grant_type == "refresh_token":
        claims = issuer.verify(data.get("refresh_token") or "", realm, "Refresh")
        return issuer.tokens(realm, str(claims.get("azp", "")), str(claims["username"]), None)
    raise _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")


@get(f"{OIDC}/userinfo")
async def userinfo(realm: str, request: Request[Any, Any, State]) -> dict[str, Any]:
    header = request.headers.get("authorization") or ""
    claims = _state(request).verify(header.removeprefix("Bearer ").strip(), realm, "Bearer")
    return {"sub": claims["sub"], "preferred_username": claims["preferred_username"], "name": claims["name"]}


@get(f"{OIDC}/logout", status_code=302)
async def logout(realm: str, request: Request[Any, Any, State]) -> Redirect | Response[str]:
    target = request.query_params.get("post_logout_redirect_uri") or request.query_params.get("redirect_uri")
    if target:
        return Redirect(_check_redirect(target))
    return Response("signed out", media_type="text/plain", status_code=200)


def _check_redirect(uri: str | None) -> str:
    """A redirect target must be an absolute http(s) URL (this issuer trusts any client: dev only)."""
    parts = urlsplit(uri or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HTTPException(status_code=400, detail="redirect_uri must be an absolute http(s) URL")
    return uri or ""


def create_issuer_app(public_url: str, *, cors_origins: list[str] | None = None) -> Litestar:
    """The issuer, for tokens whose ``iss`` is ``<public_url>/realms/<realm>``. ``cors_origins``:
    the front-ends allowed to call the token endpoint (None: any origin, echoed with credentials)."""
    cors = CORSConfig(
        allow_origins=list(cors_origins or []),
        allow_origin_regex=None if cors_origins else ".*",  # the request's own origin, echoed
        allow_credentials=True,
        allow_headers=["Authorization", "Content-Type"],
    )
    app = Litestar(
        route_handlers=[discovery, certs, login_page, login, token, userinfo, logout],
        cors_config=cors,
        openapi_config=None,
        exception_handlers={OAuthError: _oauth_response},
    )
    app.state.issuer = IssuerState(public_url)
    return app
