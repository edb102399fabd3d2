from __future__ import annotations

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
    assert set(components["MessagePage"]["properties"]) == {"items", "nextCursor", "hasMore"}
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
