"""CORS for browser clients on another origin (EchoPulse's front-end at http://localhost:4200):
Litestar's CORS middleware, exact origins, credentials; off by default."""

from __future__ import annotations

import dataclasses

from echonats.settings import Settings, with_overrides
from tests.integration.api import bearer, create_workspace, gateway_client
from tests.integration.conftest import ADMIN_TOKEN

ORIGIN = "http://localhost:4200"


def _with_cors(settings: Settings, origins: str) -> Settings:
    return with_overrides(settings, gateway=dataclasses.replace(settings.gateway, cors_origins=origins))


async def test_a_preflight_and_a_call_from_an_allowed_origin_get_its_exact_origin_and_credentials(
    gateway_settings: Settings,
) -> None:
    settings = _with_cors(gateway_settings, f"{ORIGIN}, https://chat.example.com")
    async with gateway_client(settings) as client:
        workspace = await create_workspace(client, settings, ADMIN_TOKEN)
        preflight = await client.options(
            "/api/v1/channels",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code in (200, 204), preflight.text
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        listed = await client.get("/api/v1/channels", headers={"Origin": ORIGIN, **workspace.owner})
        assert listed.status_code == 200
        assert listed.headers["access-control-allow-origin"] == ORIGIN
        assert listed.headers["access-control-allow-credentials"] == "true"
        assert "x-request-id" in listed.headers["access-control-expose-headers"].lower()
        other = await client.get(
            "/api/v1/channels", headers={"Origin": "http://evil.example", **workspace.owner}
        )
        assert "access-control-allow-origin" not in other.headers  # the browser refuses to hand it over
        denied = await client.options(
            "/api/v1/channels",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in denied.headers


async def test_cors_is_off_by_default(gateway_settings: Settings) -> None:
    async with gateway_client(gateway_settings) as client:
        response = await client.get("/health", headers={"Origin": ORIGIN})
        assert "access-control-allow-origin" not in response.headers
        admin = await client.get("/api/v1/admin/tenants", headers={"Origin": ORIGIN, **bearer(ADMIN_TOKEN)})
        assert "access-control-allow-origin" not in admin.headers
