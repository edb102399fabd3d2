"""A membership revoked through one gateway takes effect on another at once, not after its cache TTL."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from echonats.settings import Settings
from tests.integration.api import Workspace, gateway_client, wait_for


async def test_removal_on_gateway_b_stops_sends_on_gateway_a(
    client: AsyncTestClient[Any], workspace: Workspace, gateway_settings: Settings
) -> None:
    secret = await workspace.channel("secret", private=True)
    await client.get("/api/v1/users/me", headers=workspace.as_user("zoe"))
    added = await client.post(
        f"/api/v1/channels/{secret}/members", json={"userId": "zoe"}, headers=workspace.owner
    )
    assert added.status_code == 204
    url = f"/api/v1/channels/{secret}/messages"
    zoe = workspace.as_user("zoe")
    # Gateway A (`client`) now has zoe's access to the channel cached.
    assert (await client.post(url, json={"body": "first"}, headers=zoe)).status_code == 201

    async with gateway_client(gateway_settings) as gateway_b:
        removed = await gateway_b.delete(f"/api/v1/channels/{secret}/members/zoe", headers=workspace.owner)
        assert removed.status_code == 204

    async def refused_on_a() -> bool:
        response = await client.post(url, json={"body": "should not be stored"}, headers=zoe)
        assert response.status_code in (201, 404)
        return response.status_code == 404

    await wait_for(refused_on_a, timeout_s=4.0, what="gateway A to refuse zoe (cache TTL is 5 s)")
