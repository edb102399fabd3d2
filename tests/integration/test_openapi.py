from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient

EXPECTED_OPERATIONS = {
    ("post", "/api/v1/admin/tenants"), ("get", "/api/v1/admin/tenants"),
    ("get", "/api/v1/admin/tenants/{tenant_id}"), ("patch", "/api/v1/admin/tenants/{tenant_id}"),
    ("post", "/api/v1/admin/tenants/{tenant_id}/users"),
    ("get", "/api/v1/users/me"), ("get", "/api/v1/members"), ("patch", "/api/v1/members/{user_id}"),
    ("delete", "/api/v1/members/{user_id}"), ("post", "/api/v1/members/{user_id}/reinstate"),
    ("post", "/api/v1/members/me/leave"),
    ("post", "/api/v1/channels"), ("get", "/api/v1/channels"), ("get", "/api/v1/channels/{channel_id}"),
    ("patch", "/api/v1/channels/{channel_id}"), ("delete", "/api/v1/channels/{channel_id}"),
    ("get", "/api/v1/channels/{channel_id}/members"), ("post", "/api/v1/channels/{channel_id}/members"),
    ("delete", "/api/v1/channels/{channel_id}/members/{user_id}"),
    ("post", "/api/v1/channels/{channel_id}/join"), ("post", "/api/v1/channels/{channel_id}/leave"),
    ("post", "/api/v1/channels/{channel_id}/messages"), ("get", "/api/v1/channels/{channel_id}/messages"),
    ("get", "/health"), ("get", "/ready"), ("get", "/metrics"),
}  # fmt: skip


async def test_every_route_is_documented_with_schemas(client: AsyncTestClient[Any]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operations = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert operations >= EXPECTED_OPERATIONS
    components = schema["components"]["schemas"]
    for method, path in EXPECTED_OPERATIONS:
        operation = schema["paths"][path][method]
        if (
            method in ("post", "patch")
            and "{" not in path.rsplit("/", 1)[-1]
            and path.endswith(("tenants", "users", "channels", "members", "messages"))
        ):
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert "$ref" in body, (method, path)
        if path.startswith("/api/"):
            codes = set(operation["responses"])
            assert codes & {"200", "201", "204"}, (method, path)
            assert "401" in codes, (method, path)
    assert {"ErrorResponse", "MessageOut", "MessagePage", "ChannelOut", "TenantOut"} <= set(components)
    assert set(components["MessagePage"]["properties"]) == {"items", "nextCursor", "hasMore", "position"}
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


async def test_the_docs_and_the_web_client_load_nothing_from_elsewhere(client: AsyncTestClient[Any]) -> None:
    """Offline: every script, stylesheet and icon of /schema and / is served by the gateway itself."""
    for page in ("/schema", "/schema/swagger", "/"):
        response = await client.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html"), page
        found = re.findall(r"""(?:src|href)=["']([^"'#][^"']*)["']""", response.text)  # not #anchors
        assets = [a for a in found if not a.startswith("https://swagger.io")]  # links the UI shows
        assert assets, page
        for asset in assets:
            assert asset.startswith("/"), (page, asset)  # no http(s)://, no protocol-relative //cdn
            assert not asset.startswith("//"), (page, asset)
            fetched = await client.get(asset)
            assert fetched.status_code == 200, (page, asset)
            assert len(fetched.content) > 100, (page, asset)
    swagger = (await client.get("/schema")).text
    assert "SwaggerUIBundle" in swagger
    assert '"openapi":' in swagger  # the schema is embedded in the page
    assert (await client.get("/app/no-such-file.js")).status_code == 404


async def test_the_web_client_learns_how_to_sign_in(client: AsyncTestClient[Any]) -> None:
    config = (await client.get("/api/v1/web-config")).json()  # no token needed
    assert config == {"oidcIssuer": None, "oidcClientId": "echonats-web", "devTokens": True}
