"""A member of tenant A, holding ids from tenant B, can reach nothing of B."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from echonats.settings import Settings
from tests.integration.api import Workspace, create_workspace
from tests.integration.conftest import ADMIN_TOKEN


async def test_ids_from_another_tenant_behave_as_not_found(
    client: AsyncTestClient[Any], workspace: Workspace, gateway_settings: Settings
) -> None:
    other = await create_workspace(client, gateway_settings, ADMIN_TOKEN, name="Other Corp")
    their_public = await other.channel("their-public")
    their_private = await other.channel("their-private", private=True)
    await other.send(their_public, "their secret words")
    await client.get("/api/v1/users/me", headers=other.as_user("their-user"))

    me = workspace.owner  # an owner: the strongest role in tenant A
    requests: list[tuple[str, str, dict[str, Any] | None]] = []
    for channel in (their_public, their_private):
        base = f"/api/v1/channels/{channel}"
        requests += [
            ("GET", base, None),
            ("PATCH", base, {"name": "pwned"}),
            ("DELETE", base, None),
            ("GET", f"{base}/members", None),
            ("POST", f"{base}/members", {"userId": workspace.owner_id}),
            ("DELETE", f"{base}/members/{other.owner_id}", None),
            ("POST", f"{base}/join", None),
            ("POST", f"{base}/leave", None),
            ("GET", f"{base}/messages", None),
            ("POST", f"{base}/messages", {"body": "hello from A"}),
        ]
    requests += [
        ("PATCH", f"/api/v1/members/{other.owner_id}", {"role": "member"}),
        ("DELETE", "/api/v1/members/their-user", None),
        ("POST", "/api/v1/members/their-user/reinstate", None),
    ]
    for method, url, body in requests:
        response = await client.request(method, url, json=body, headers=me)
        assert response.status_code == 404, (method, url, response.status_code, response.text)
        for leak in ("their-public", "their-private", "their secret words", other.tenant_id):
            assert leak not in response.text, (method, url)

    listed = await client.get("/api/v1/channels", headers=me)
    assert all(c["id"] not in (their_public, their_private) for c in listed.json()["items"])
    members = await client.get("/api/v1/members", headers=me)
    assert {m["id"] for m in members.json()["items"]} == {workspace.owner_id}
    # Tenant admin routes stay platform-only, whatever the tenant role.
    assert (await client.get(f"/api/v1/admin/tenants/{other.tenant_id}", headers=me)).status_code == 403

    # B is untouched.
    history = await client.get(f"/api/v1/channels/{their_public}/messages", headers=other.owner)
    assert [m["body"] for m in history.json()["items"]] == ["their secret words"]
    channel = await client.get(f"/api/v1/channels/{their_public}", headers=other.owner)
    assert channel.json()["name"] == "their-public"


async def test_token_for_a_tenant_that_does_not_exist(
    client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    from echonats.adapters.dev_tokens import mint_dev_token

    token = mint_dev_token(
        workspace.settings.auth, tenant_id="00000000-0000-4000-8000-000000000000", user_id="x"
    )
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    no_tenant = mint_dev_token(workspace.settings.auth, tenant_id=None, user_id="x")
    assert (
        await client.get("/api/v1/channels", headers={"Authorization": f"Bearer {no_tenant}"})
    ).status_code == 403


async def test_a_token_of_another_tenant_cannot_rename_a_member(
    client: AsyncTestClient[Any], workspace: Workspace, gateway_settings: Settings
) -> None:
    # One identity (same sub) in tenants A and B; B's issuer calls her something else.
    other = await create_workspace(client, gateway_settings, ADMIN_TOKEN, name="Other Corp")
    channel = await workspace.channel("general")
    in_a = await client.post(f"/api/v1/channels/{channel}/join", headers=workspace.as_user("sam", "Sam A"))
    assert in_a.status_code == 204, in_a.text
    me_b = await client.get("/api/v1/users/me", headers=other.as_user("sam", "Mallory B"))
    assert me_b.json()["displayName"] == "Mallory B"

    members_a = (await client.get("/api/v1/members", headers=workspace.owner)).json()["items"]
    assert {m["id"]: m["displayName"] for m in members_a}["sam"] == "Sam A"
    in_channel = (await client.get(f"/api/v1/channels/{channel}/members", headers=workspace.owner)).json()
    assert {m["userId"]: m["displayName"] for m in in_channel["items"]}["sam"] == "Sam A"
    me_a = await client.get("/api/v1/users/me", headers=workspace.as_user("sam", "Sam A"))
    assert me_a.json()["displayName"] == "Sam A"
    sent = await client.post(
        f"/api/v1/channels/{channel}/messages", json={"body": "hi"}, headers=workspace.as_user("sam")
    )
    assert sent.json()["senderDisplayName"] == "Sam A"
    members_b = (await client.get("/api/v1/members", headers=other.owner)).json()["items"]
    assert {m["id"]: m["displayName"] for m in members_b}["sam"] == "Mallory B"
