"""The local OIDC issuer: Keycloak's authorization code flow with PKCE as keycloak-js runs it, its
tokens accepted by echonats' own verifier through the JWKS, refresh, userinfo, CORS."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import uvicorn

from echonats.adapters.jwt_auth import JwtVerifier
from echonats.devstack.stack import free_port
from echonats.issuer import create_issuer_app
from echonats.settings import AuthSettings

REALM = "echopulse"
CLIENT = "echo-pulse-front-end"
FRONT = "http://localhost:4200"


@asynccontextmanager
async def running_issuer() -> AsyncIterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(create_issuer_app(base), host="127.0.0.1", port=port, log_level="warning")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("issuer exited during start-up")
                await asyncio.sleep(0.01)  # polling the started flag with a deadline
        yield base
    finally:
        server.should_exit = True
        await task


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def _log_in(http: httpx.AsyncClient, base: str, name: str, challenge: str, mode: str) -> dict[str, str]:
    oidc = f"{base}/realms/{REALM}/protocol/openid-connect"
    params = {
        "client_id": CLIENT,
        "redirect_uri": f"{FRONT}/",
        "state": "st-1",
        "nonce": "n-1",
        "response_mode": mode,
        "response_type": "code",
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = await http.get(f"{oidc}/auth", params=params)
    assert page.status_code == 200
    assert "<form" in page.text
    form = {**params, "username": name}
    answer = await http.post(f"{oidc}/auth", data=form)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == FRONT
    got = parse_qs(location.fragment if mode == "fragment" else location.query)
    return {k: v[0] for k, v in got.items()}


async def test_code_flow_with_pkce_gives_tokens_echonats_accepts_and_a_working_refresh() -> None:
    async with running_issuer() as base, httpx.AsyncClient(timeout=10) as http:
        oidc = f"{base}/realms/{REALM}/protocol/openid-connect"
        discovery = (await http.get(f"{base}/realms/{REALM}/.well-known/openid-configuration")).json()
        assert discovery["token_endpoint"] == f"{oidc}/token"
        assert discovery["issuer"] == f"{base}/realms/{REALM}"
        verifier, challenge = _pkce()
        callback = await _log_in(http, base, "Ann", challenge, "fragment")
        assert callback["state"] == "st-1"
        token_form = {
            "grant_type": "authorization_code",
            "code": callback["code"],
            "client_id": CLIENT,
            "redirect_uri": f"{FRONT}/",
        }
        wrong = await http.post(f"{oidc}/token", data={**token_form, "code_verifier": "not-it"})
        assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
        callback = await _log_in(http, base, "Ann", challenge, "query")  # a failed exchange burns the code
        token_form["code"] = callback["code"]
        tokens = (await http.post(f"{oidc}/token", data={**token_form, "code_verifier": verifier})).json()
        again = await http.post(f"{oidc}/token", data={**token_form, "code_verifier": verifier})
        assert again.status_code == 400  # one use
        identity = jwt.decode(tokens["id_token"], options={"verify_signature": False})
        assert (identity["nonce"], identity["aud"]) == ("n-1", CLIENT)
        assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "RS256"
        verifier_ = JwtVerifier(AuthSettings(jwks_url=f"{oidc}/certs", issuer=f"{base}/realms/{REALM}"))
        principal = await verifier_.verify(tokens["access_token"])
        assert (principal.display_name, principal.tenant_id) == (
            "Ann",
            None,
        )  # no tenant claim: Discord-style
        assert "user" in principal.roles
        assert principal.expires_at is not None
        info = (
            await http.get(f"{oidc}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        ).json()
        assert (info["sub"], info["preferred_username"]) == (principal.user_id, "Ann")
        refreshed = await http.post(
            f"{oidc}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": CLIENT,
            },
        )
        assert refreshed.status_code == 200
        assert (
            await verifier_.verify(refreshed.json()["access_token"])
        ).user_id == principal.user_id  # same user
        forged = await http.post(
            f"{oidc}/token", data={"grant_type": "refresh_token", "refresh_token": tokens["access_token"]}
        )
        assert forged.status_code == 400  # an access token is no refresh token
        out = await http.get(f"{oidc}/logout", params={"post_logout_redirect_uri": f"{FRONT}/"})
        assert (out.status_code, out.headers["location"]) == (302, f"{FRONT}/")


async def test_the_token_endpoint_answers_a_front_end_origin_with_credentials() -> None:
    async with running_issuer() as base, httpx.AsyncClient(timeout=10) as http:
        oidc = f"{base}/realms/{REALM}/protocol/openid-connect"
        preflight: Any = await http.options(
            f"{oidc}/token",
            headers={
                "Origin": FRONT,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code in (200, 204)
        assert preflight.headers["access-control-allow-origin"] == FRONT
        assert preflight.headers["access-control-allow-credentials"] == "true"
        bad = await http.post(f"{oidc}/auth", data={"redirect_uri": "javascript:alert(1)", "username": "x"})
        assert bad.status_code == 400
