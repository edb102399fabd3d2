from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.integration.api import Workspace


async def test_unknown_user_is_provisioned_on_first_call(
    client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    me = await client.get("/api/v1/users/me", headers=workspace.as_user("kc-sub-123", "Grace Hopper"))
    assert me.status_code == 200
    assert me.json() == {
        "id": "kc-sub-123",
        "tenantId": workspace.tenant_id,
        "displayName": "Grace Hopper",
        "email": None,
        "role": "member",
        "joinedAt": me.json()["joinedAt"],
    }
    again = await client.get("/api/v1/users/me", headers=workspace.as_user("kc-sub-123", "Grace Hopper"))
    assert again.json()["joinedAt"] == me.json()["joinedAt"]
    members = (await client.get("/api/v1/members", headers=workspace.owner)).json()["items"]
    assert sorted(m["id"] for m in members) == sorted(["kc-sub-123", workspace.owner_id])


async def test_member_list_pages(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    for user in ("u1", "u2", "u3"):
        await client.get("/api/v1/users/me", headers=workspace.as_user(user))
    ids: list[str] = []
    pages = 0
    url = "/api/v1/members?limit=2"
    while True:
        page = (await client.get(url, headers=workspace.owner)).json()
        pages += 1
        ids.extend(m["id"] for m in page["items"])
        if page["nextCursor"] is None:
            break
        url = f"/api/v1/members?limit=2&after={page['nextCursor']}"
    assert sorted(ids) == sorted(["u1", "u2", "u3", workspace.owner_id])
    assert pages == 2


async def test_role_changes_follow_the_rules(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    await client.get("/api/v1/users/me", headers=workspace.as_user("alice"))
    await client.get("/api/v1/users/me", headers=workspace.as_user("bob"))
    as_bob = await client.patch(
        "/api/v1/members/alice", json={"role": "admin"}, headers=workspace.as_user("bob")
    )
    assert as_bob.status_code == 403
    promoted = await client.patch("/api/v1/members/alice", json={"role": "admin"}, headers=workspace.owner)
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    # An admin may not mint owners, and nobody may demote the last owner.
    to_owner = await client.patch(
        "/api/v1/members/bob", json={"role": "owner"}, headers=workspace.as_user("alice")
    )
    assert to_owner.status_code == 403
    last_owner = await client.patch(
        f"/api/v1/members/{workspace.owner_id}", json={"role": "member"}, headers=workspace.owner
    )
    assert last_owner.status_code == 409
    bad_role = await client.patch("/api/v1/members/bob", json={"role": "god"}, headers=workspace.owner)
    assert bad_role.status_code == 400
    unknown = await client.patch("/api/v1/members/nobody", json={"role": "admin"}, headers=workspace.owner)
    assert unknown.status_code == 404


async def test_removed_member_stays_out_until_reinstated(
    client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    await client.get("/api/v1/users/me", headers=workspace.as_user("mallory"))
    assert (await client.delete("/api/v1/members/mallory", headers=workspace.owner)).status_code == 204
    blocked = await client.get("/api/v1/users/me", headers=workspace.as_user("mallory"))
    assert blocked.status_code == 403
    assert "removed" in blocked.json()["error"]["message"]
    members = (await client.get("/api/v1/members", headers=workspace.owner)).json()["items"]
    assert "mallory" not in [m["id"] for m in members]
    assert (
        await client.post("/api/v1/members/mallory/reinstate", headers=workspace.owner)
    ).status_code == 201
    assert (await client.get("/api/v1/users/me", headers=workspace.as_user("mallory"))).status_code == 200


async def test_leave_and_come_back(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    await client.post(f"/api/v1/channels/{channel}/join", headers=workspace.as_user("carol"))
    assert (
        await client.post("/api/v1/members/me/leave", headers=workspace.as_user("carol"))
    ).status_code == 204
    members = (await client.get(f"/api/v1/channels/{channel}/members", headers=workspace.owner)).json()[
        "items"
    ]
    assert "carol" not in [m["userId"] for m in members]
    # The issuer still vouches for carol in this tenant: her next call joins again, as a member.
    assert (await client.get("/api/v1/users/me", headers=workspace.as_user("carol"))).json()[
        "role"
    ] == "member"
    owner_leaves = await client.post("/api/v1/members/me/leave", headers=workspace.owner)
    assert owner_leaves.status_code == 409
