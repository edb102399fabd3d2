from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.settings import Settings
from tests.integration.api import Workspace, bearer
from tests.integration.conftest import ADMIN_TOKEN

NEW_TENANT = {"name": "Globex", "adminEmail": "hank@globex.com", "adminDisplayName": "Hank"}


async def test_create_tenant_returns_the_contract(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/api/v1/admin/tenants", json=NEW_TENANT, headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "adminUserId", "maxChannels", "maxMessagesPerSecond", "createdAt"}
    assert body["name"] == "Globex"
    assert body["maxChannels"] == 500
    assert body["maxMessagesPerSecond"] == 100


async def test_admin_routes_need_a_platform_admin(
    client: AsyncTestClient[Any], workspace: Workspace, gateway_settings: Settings
) -> None:
    assert (await client.post("/api/v1/admin/tenants", json=NEW_TENANT)).status_code == 401
    member = await client.post("/api/v1/admin/tenants", json=NEW_TENANT, headers=workspace.owner)
    assert member.status_code == 403
    assert member.json()["error"]["code"] == "forbidden"
    platform_jwt = mint_dev_token(
        gateway_settings.auth, tenant_id=None, user_id="ops", roles=["platform-admin"]
    )
    assert (
        await client.post("/api/v1/admin/tenants", json=NEW_TENANT, headers=bearer(platform_jwt))
    ).status_code == 201


async def test_list_get_and_update_limits(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    admin = bearer(ADMIN_TOKEN)
    listed = (await client.get("/api/v1/admin/tenants", headers=admin)).json()
    assert [t["id"] for t in listed["items"]] == [workspace.tenant_id]
    patched = await client.patch(
        f"/api/v1/admin/tenants/{workspace.tenant_id}", json={"maxChannels": 2}, headers=admin
    )
    assert patched.status_code == 200
    assert patched.json()["maxChannels"] == 2
    assert patched.json()["maxMessagesPerSecond"] == 100
    fetched = (await client.get(f"/api/v1/admin/tenants/{workspace.tenant_id}", headers=admin)).json()
    assert fetched["maxChannels"] == 2
    bad = await client.patch(
        f"/api/v1/admin/tenants/{workspace.tenant_id}", json={"maxMessagesPerSecond": 0}, headers=admin
    )
    assert bad.status_code == 400
    missing = await client.get("/api/v1/admin/tenants/00000000-0000-0000-0000-000000000000", headers=admin)
    assert missing.status_code == 404


async def test_tenant_list_pages_by_cursor(client: AsyncTestClient[Any]) -> None:
    admin = bearer(ADMIN_TOKEN)
    for index in range(3):
        body = {**NEW_TENANT, "name": f"T{index}"}
        assert (await client.post("/api/v1/admin/tenants", json=body, headers=admin)).status_code == 201
    first = (await client.get("/api/v1/admin/tenants?limit=2", headers=admin)).json()
    assert len(first["items"]) == 2
    second = (
        await client.get(f"/api/v1/admin/tenants?limit=2&after={first['nextCursor']}", headers=admin)
    ).json()
    assert len(second["items"]) == 1
    assert second["nextCursor"] is None
    ids = [t["id"] for t in first["items"] + second["items"]]
    assert len(set(ids)) == 3


async def test_create_user_in_tenant(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    response = await client.post(
        f"/api/v1/admin/tenants/{workspace.tenant_id}/users",
        json={"email": "ada@example.com", "displayName": "Ada"},
        headers=bearer(ADMIN_TOKEN),
    )
    assert response.status_code == 201
    user = response.json()
    assert user["role"] == "member"
    assert user["tenantId"] == workspace.tenant_id
    me = await client.get("/api/v1/users/me", headers=workspace.as_user(user["id"]))
    assert me.json()["displayName"] == "Ada"  # the created user, not re-provisioned


async def test_bad_input_gets_4xx_with_the_error_envelope(client: AsyncTestClient[Any]) -> None:
    admin = bearer(ADMIN_TOKEN)
    cases = [
        ({"content": b"{not json", "headers": {**admin, "content-type": "application/json"}}, 400),
        ({"json": {**NEW_TENANT, "extra": 1}, "headers": admin}, 400),
        ({"json": {**NEW_TENANT, "name": 5}, "headers": admin}, 400),
        ({"json": {**NEW_TENANT, "adminEmail": "nope"}, "headers": admin}, 422),
        ({"json": {**NEW_TENANT, "name": "   "}, "headers": admin}, 422),
        ({"json": {**NEW_TENANT, "name": "x" * 70_000}, "headers": admin}, 413),
    ]
    for kwargs, status in cases:
        response = await client.post("/api/v1/admin/tenants", **kwargs)
        assert response.status_code == status, (kwargs.get("json"), response.text)
        error = response.json()["error"]
        assert error["code"]
        assert error["message"]
