from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.integration.api import Workspace, bearer
from tests.integration.conftest import ADMIN_TOKEN


async def test_create_and_list_visibility(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    response = await client.post(
        "/api/v1/channels", json={"name": " general ", "isPrivate": False}, headers=workspace.owner
    )
    assert response.status_code == 201
    general = response.json()
    assert general["name"] == "general"
    assert general["isPrivate"] is False
    assert general["createdBy"] == workspace.owner_id
    secret = await workspace.channel("secret", private=True)

    def names(payload: dict[str, Any]) -> list[str]:
        return [c["name"] for c in payload["items"]]

    assert names((await client.get("/api/v1/channels", headers=workspace.owner)).json()) == [
        "general",
        "secret",
    ]
    assert names((await client.get("/api/v1/channels", headers=workspace.as_user("eve"))).json()) == [
        "general"
    ]
    for path in (
        f"/api/v1/channels/{secret}",
        f"/api/v1/channels/{secret}/members",
        f"/api/v1/channels/{secret}/messages",
    ):
        hidden = await client.get(path, headers=workspace.as_user("eve"))
        assert hidden.status_code == 404, path
        assert "secret" not in hidden.text


async def test_duplicate_names_conflict_case_insensitively(
    client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    await workspace.channel("Random")
    again = await client.post("/api/v1/channels", json={"name": "random"}, headers=workspace.owner)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


async def test_max_channels_is_enforced(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    await client.patch(
        f"/api/v1/admin/tenants/{workspace.tenant_id}", json={"maxChannels": 2}, headers=bearer(ADMIN_TOKEN)
    )
    await workspace.channel("one")
    await workspace.channel("two", private=True)
    third = await client.post("/api/v1/channels", json={"name": "three"}, headers=workspace.owner)
    assert third.status_code == 409
    assert third.json()["error"]["code"] == "limit_exceeded"
    assert third.json()["error"]["details"] == {"maxChannels": 2}


async def test_update_and_delete_need_a_moderator(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    channel = await workspace.channel("ops", by="creator")
    patch = {"name": "operations", "topic": "on call"}
    assert (
        await client.patch(f"/api/v1/channels/{channel}", json=patch, headers=workspace.as_user("rando"))
    ).status_code == 403
    renamed = await client.patch(
        f"/api/v1/channels/{channel}", json=patch, headers=workspace.as_user("creator")
    )
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["topic"]) == ("operations", "on call")
    assert (
        await client.delete(f"/api/v1/channels/{channel}", headers=workspace.as_user("rando"))
    ).status_code == 403
    assert (await client.delete(f"/api/v1/channels/{channel}", headers=workspace.owner)).status_code == 204
    assert (await client.get(f"/api/v1/channels/{channel}", headers=workspace.owner)).status_code == 404


async def test_private_channel_membership(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    secret = await workspace.channel("secret", private=True)
    await client.get("/api/v1/users/me", headers=workspace.as_user("dave"))
    outsider_invites = await client.post(
        f"/api/v1/channels/{secret}/members", json={"userId": "dave"}, headers=workspace.as_user("eve")
    )
    assert outsider_invites.status_code == 404
    assert (
        await client.post(f"/api/v1/channels/{secret}/join", headers=workspace.as_user("dave"))
    ).status_code == 404
    added = await client.post(
        f"/api/v1/channels/{secret}/members", json={"userId": "dave"}, headers=workspace.owner
    )
    assert added.status_code == 204
    twice = await client.post(
        f"/api/v1/channels/{secret}/members", json={"userId": "dave"}, headers=workspace.owner
    )
    assert twice.status_code == 409
    not_in_tenant = await client.post(
        f"/api/v1/channels/{secret}/members", json={"userId": "ghost"}, headers=workspace.owner
    )
    assert not_in_tenant.status_code == 404
    members = (
        await client.get(f"/api/v1/channels/{secret}/members", headers=workspace.as_user("dave"))
    ).json()
    assert {(m["userId"], m["role"]) for m in members["items"]} == {
        (workspace.owner_id, "owner"),
        ("dave", "member"),
    }
    assert (
        await client.get(f"/api/v1/channels/{secret}", headers=workspace.as_user("dave"))
    ).status_code == 200
    kick = await client.delete(f"/api/v1/channels/{secret}/members/dave", headers=workspace.owner)
    assert kick.status_code == 204
    assert (
        await client.get(f"/api/v1/channels/{secret}", headers=workspace.as_user("dave"))
    ).status_code == 404


async def test_join_and_leave_public_channel(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    channel = await workspace.channel("lobby")
    frank = workspace.as_user("frank")
    assert (await client.post(f"/api/v1/channels/{channel}/join", headers=frank)).status_code == 204
    assert (
        await client.post(f"/api/v1/channels/{channel}/join", headers=frank)
    ).status_code == 204  # idempotent
    members = (await client.get(f"/api/v1/channels/{channel}/members", headers=frank)).json()["items"]
    assert [m["userId"] for m in members].count("frank") == 1
    assert (
        await client.delete(f"/api/v1/channels/{channel}/members/{workspace.owner_id}", headers=frank)
    ).status_code == 403
    assert (await client.post(f"/api/v1/channels/{channel}/leave", headers=frank)).status_code == 204
    assert (await client.post(f"/api/v1/channels/{channel}/leave", headers=frank)).status_code == 404
