"""EchoPulse's REST surface with tokens that carry no tenant (a user across workspaces): every route
of its front-end with its exact JSON shape and permission rule, and isolation of workspaces."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.settings import Settings
from tests.integration.api import bearer
from tests.integration.conftest import ADMIN_TOKEN

OWNER_ROLE = {
    "name": "owner",
    "description": "Owns the workspace: everything admins may do, and delete it.",
    "color": "#e67e22",
    "permissions": ["DELETE_SERVER", "MANAGE_CHANNELS", "MANAGE_MEMBERS", "MANAGE_ROLES"],
}
ADMIN_ROLE = {
    "name": "admin",
    "description": "Manages channels, members and roles.",
    "color": "#3498db",
    "permissions": ["MANAGE_CHANNELS", "MANAGE_MEMBERS", "MANAGE_ROLES"],
}
MEMBER_ROLE = {
    "name": "member",
    "description": "Reads and writes in the channels they can see.",
    "color": "#95a5a6",
    "permissions": [],
}


@pytest.fixture
def api(self_service_api: AsyncTestClient[Any]) -> AsyncTestClient[Any]:
    return self_service_api


def user(settings: Settings, name: str) -> dict[str, str]:
    """A token like EchoPulse's Keycloak gives: no tenant claim."""
    return bearer(mint_dev_token(settings.auth, tenant_id=None, user_id=f"id-{name}", name=name))


async def new_server(api: AsyncTestClient[Any], headers: dict[str, str], name: str) -> str:
    response = await api.post("/api/servers", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_user_creates_joins_uses_and_leaves_servers(
    api: AsyncTestClient[Any], self_service_settings: Settings
) -> None:
    ada, bob = user(self_service_settings, "ada"), user(self_service_settings, "bob")
    empty = await api.get("/api/users", headers=ada)
    assert empty.json() == {"id": "id-ada", "username": "ada", "displayName": "ada", "memberships": []}

    created = await api.post("/api/servers", json={"name": "Guild"}, headers=ada)
    assert created.status_code == 201
    server = created.json()["id"]
    details = {
        "id": server,
        "name": "Guild",
        "defaultRole": MEMBER_ROLE,
        "roles": [OWNER_ROLE, ADMIN_ROLE, MEMBER_ROLE],
    }
    assert created.json() == details
    assert (await api.get(f"/api/servers/{server}", headers=ada)).json() == details
    me = (await api.get("/api/users", headers=ada)).json()
    assert me["memberships"] == [{"server": {"id": server, "name": "Guild"}, "roles": [OWNER_ROLE]}]

    channel = await api.post(f"/api/servers/{server}/channels", json={"name": "general"}, headers=ada)
    assert channel.status_code == 201
    channel_id = channel.json()["id"]
    assert channel.json() == {"id": channel_id, "name": "general"}
    assert (await api.get(f"/api/servers/{server}/channels", headers=ada)).json() == [channel.json()]

    # Bob is in no server: the server, its channels, members and posts do not exist for him.
    hidden = [f"/api/servers/{server}", *(f"/api/servers/{server}/{p}" for p in ("channels", "members"))]
    for path in (*hidden, f"/api/channels/{channel_id}/posts"):
        response = await api.get(path, headers=bob)
        assert response.status_code == 404, (path, response.text)
    assert (await api.get(f"/api/servers/{uuid.uuid4()}", headers=ada)).status_code == 404

    joined = await api.post(f"/api/servers/{server}/members", json={}, headers=bob)
    assert joined.status_code == 200
    assert joined.json() == {"server": {"id": server, "name": "Guild"}}
    again = await api.post(f"/api/servers/{server}/members", json={}, headers=bob)
    assert again.json() == joined.json()  # joining twice: the same membership
    members = (await api.get(f"/api/servers/{server}/members", headers=bob)).json()
    assert sorted(members, key=lambda m: m["user"]["id"]) == [
        {"user": {"id": "id-ada", "username": "ada", "displayName": "ada"}, "roles": [OWNER_ROLE]},
        {"user": {"id": "id-bob", "username": "bob", "displayName": "bob"}, "roles": [MEMBER_ROLE]},
    ]

    for body in ("first", "second"):
        sent = await api.post(f"/api/v1/channels/{channel_id}/messages", json={"body": body}, headers=bob)
        assert sent.status_code == 201, sent.text
    posts = (await api.get(f"/api/channels/{channel_id}/posts", headers=ada)).json()
    assert [(p["username"], p["content"], p["channelId"]) for p in posts] == [
        ("bob", "first", channel_id),
        ("bob", "second", channel_id),
    ]
    assert all(isinstance(p["id"], int) and p["timestamp"] for p in posts)

    # Permissions: a member may not manage channels or delete the server.
    refused = [
        await api.post(f"/api/servers/{server}/channels", json={"name": "x"}, headers=bob),
        await api.delete(f"/api/servers/{server}/channels/{channel_id}", headers=bob),
        await api.delete(f"/api/servers/{server}", headers=bob),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert "MANAGE_CHANNELS" in refused[0].json()["error"]["message"]

    left = await api.delete(f"/api/servers/{server}/members", headers=bob)
    assert left.status_code == 204
    assert (await api.get("/api/users", headers=bob)).json()["memberships"] == []
    assert (await api.get(f"/api/channels/{channel_id}/posts", headers=bob)).status_code == 404
    # The last owner cannot leave: the workspace keeps one.
    assert (await api.delete(f"/api/servers/{server}/members", headers=ada)).status_code == 409


async def test_deleting_a_server_takes_its_channels_messages_and_members(
    api: AsyncTestClient[Any], self_service_settings: Settings
) -> None:
    ada, bob = user(self_service_settings, "ada"), user(self_service_settings, "bob")
    server = await new_server(api, ada, "Doomed")
    kept = await new_server(api, ada, "Kept")
    await api.post(f"/api/servers/{server}/members", json={}, headers=bob)
    channel = (await api.post(f"/api/servers/{server}/channels", json={"name": "c"}, headers=ada)).json()[
        "id"
    ]
    await api.post(f"/api/v1/channels/{channel}/messages", json={"body": "hi"}, headers=ada)

    assert (await api.delete(f"/api/servers/{server}/channels/{channel}", headers=ada)).status_code == 204
    channel = (await api.post(f"/api/servers/{server}/channels", json={"name": "d"}, headers=ada)).json()[
        "id"
    ]
    await api.post(f"/api/v1/channels/{channel}/messages", json={"body": "hi"}, headers=ada)
    assert (await api.delete(f"/api/servers/{server}", headers=ada)).status_code == 204

    assert (await api.get(f"/api/servers/{server}", headers=ada)).status_code == 404
    assert (await api.get(f"/api/channels/{channel}/posts", headers=ada)).status_code == 404
    assert [m["server"]["id"] for m in (await api.get("/api/users", headers=ada)).json()["memberships"]] == [
        kept
    ]
    assert (await api.get("/api/users", headers=bob)).json()["memberships"] == []
    # Its id no longer joins anything.
    assert (await api.post(f"/api/servers/{server}/members", json={}, headers=bob)).status_code == 404


async def test_tenant_less_tokens_reach_only_their_workspaces_through_api_v1(
    api: AsyncTestClient[Any], self_service_settings: Settings
) -> None:
    ada, eve = user(self_service_settings, "ada"), user(self_service_settings, "eve")
    server = await new_server(api, ada, "Private club")
    channel = (await api.post(f"/api/servers/{server}/channels", json={"name": "c"}, headers=ada)).json()[
        "id"
    ]
    mine = await api.get("/api/v1/channels", headers={**ada, "Echonats-Tenant": server})
    assert [c["id"] for c in mine.json()["items"]] == [channel]
    for path in (f"/api/v1/channels/{channel}", f"/api/v1/channels/{channel}/messages"):
        assert (await api.get(path, headers=eve)).status_code == 404
    assert (
        await api.post(f"/api/v1/channels/{channel}/messages", json={"body": "x"}, headers=eve)
    ).status_code == 404
    assert (await api.get("/api/v1/channels", headers={**eve, "Echonats-Tenant": server})).status_code == 404
    assert (await api.get("/api/v1/channels", headers={**eve, "Echonats-Tenant": "nope"})).status_code == 422
    # Naming no workspace at all: refused as before.
    assert (await api.get("/api/v1/channels", headers=eve)).status_code == 403


async def test_tokens_bound_to_a_tenant_keep_working_and_stay_bound(
    api: AsyncTestClient[Any], self_service_settings: Settings
) -> None:
    ada = user(self_service_settings, "ada")
    server = await new_server(api, ada, "Guild")
    created = await api.post(
        "/api/v1/admin/tenants",
        json={"name": "Acme", "adminEmail": "o@example.com", "adminDisplayName": "Owner"},
        headers=bearer(ADMIN_TOKEN),
    )
    acme = created.json()["id"]
    bound = bearer(mint_dev_token(self_service_settings.auth, tenant_id=acme, user_id="id-ada", name="ada"))
    me = (await api.get("/api/users", headers=bound)).json()
    assert [m["server"]["id"] for m in me["memberships"]] == [acme]  # provisioned there, as before
    assert (await api.get(f"/api/servers/{server}", headers=bound)).status_code == 404
    assert (await api.post("/api/servers", json={"name": "x"}, headers=bound)).status_code == 403
    assert (await api.post(f"/api/servers/{server}/members", json={}, headers=bound)).status_code == 403


async def test_self_service_is_off_by_default(
    client: AsyncTestClient[Any], gateway_settings: Settings
) -> None:
    ada = user(gateway_settings, "ada")
    refused = await client.post("/api/servers", json={"name": "Guild"}, headers=ada)
    assert refused.status_code == 403
    assert "ECHONATS_SELF_SERVICE_WORKSPACES" in refused.json()["error"]["message"]
    assert (
        await client.post(f"/api/servers/{uuid.uuid4()}/members", json={}, headers=ada)
    ).status_code == 403


async def test_bad_input_is_a_4xx(api: AsyncTestClient[Any], self_service_settings: Settings) -> None:
    ada = user(self_service_settings, "ada")
    server = await new_server(api, ada, "Guild")
    cases = [
        await api.post("/api/servers", json={"name": ""}, headers=ada),
        await api.post("/api/servers", json={"name": "x" * 500}, headers=ada),
        await api.post("/api/servers", json={"nom": "x"}, headers=ada),
        await api.post(f"/api/servers/{server}/channels", json={"name": "\u0000"}, headers=ada),
        await api.get("/api/servers/not-a-uuid", headers=ada),
        await api.get("/api/users"),
    ]
    assert all(400 <= r.status_code < 500 for r in cases), [(r.status_code, r.text) for r in cases]
