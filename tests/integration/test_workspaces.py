"""The web client's workspace routes (/api/v1/workspaces) and `/ws?tenant=` for tokens without a
tenant claim: who may list, create and join, and which socket is let into which workspace."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.settings import Settings
from tests.integration.api import bearer, create_workspace, gateway_client
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import serve_gateway, ws_client


@pytest.fixture
def api(self_service_api: AsyncTestClient[Any]) -> AsyncTestClient[Any]:
    return self_service_api


def token(settings: Settings, name: str, tenant: str | None = None) -> str:
    return mint_dev_token(settings.auth, tenant_id=tenant, user_id=f"id-{name}", name=name)


async def test_users_list_create_and_join_workspaces(
    api: AsyncTestClient[Any], self_service_settings: Settings
) -> None:
    ada = bearer(token(self_service_settings, "ada"))
    bob = bearer(token(self_service_settings, "bob"))
    assert (await api.get("/api/v1/workspaces", headers=ada)).json() == {"items": [], "selfService": True}

    created = await api.post("/api/v1/workspaces", json={"name": "Zeta"}, headers=ada)
    assert created.status_code == 201, created.text
    zeta = created.json()
    assert (zeta["name"], zeta["role"]) == ("Zeta", "owner")
    acme = (await api.post("/api/v1/workspaces", json={"name": "acme"}, headers=ada)).json()

    joined = await api.post(f"/api/v1/workspaces/{zeta['id']}/join", headers=bob)
    assert joined.status_code == 200, joined.text
    assert joined.json() == {"id": zeta["id"], "name": "Zeta", "role": "member"}
    again = await api.post(f"/api/v1/workspaces/{zeta['id']}/join", headers=ada)
    assert again.json()["role"] == "owner"  # already in: that membership, unchanged

    listed = (await api.get("/api/v1/workspaces", headers=ada)).json()
    assert [w["name"] for w in listed["items"]] == ["acme", "Zeta"]  # by name, case-insensitive
    assert [w["id"] for w in (await api.get("/api/v1/workspaces", headers=bob)).json()["items"]] == [
        zeta["id"]
    ]
    unknown = await api.post(f"/api/v1/workspaces/{uuid.uuid4()}/join", headers=bob)
    assert unknown.status_code == 404, unknown.text
    blank = await api.post("/api/v1/workspaces", json={"name": "  "}, headers=bob)
    assert (blank.status_code, blank.json()["error"]["code"]) == (422, "validation_failed"), blank.text
    bobs = (await api.get("/api/v1/workspaces", headers=bob)).json()["items"]
    assert acme["id"] not in [w["id"] for w in bobs]


async def test_a_token_with_a_tenant_claim_sees_its_one_workspace_and_creates_none(
    api: AsyncTestClient[Any], self_service_settings: Settings
) -> None:
    workspace = await create_workspace(api, self_service_settings, ADMIN_TOKEN)
    member = bearer(token(self_service_settings, "cy", workspace.tenant_id))
    await api.get("/api/v1/users/me", headers=member)
    listed = (await api.get("/api/v1/workspaces", headers=member)).json()
    assert [w["id"] for w in listed["items"]] == [workspace.tenant_id]
    assert listed["selfService"] is False
    refused = await api.post("/api/v1/workspaces", json={"name": "Mine"}, headers=member)
    assert refused.status_code == 403, refused.text


async def test_without_self_service_nobody_creates_or_joins(settings: Settings) -> None:
    async with gateway_client(settings) as api:
        ada = bearer(token(settings, "ada"))
        listed = (await api.get("/api/v1/workspaces", headers=ada)).json()
        assert listed == {"items": [], "selfService": False}
        created = await api.post("/api/v1/workspaces", json={"name": "Acme"}, headers=ada)
        assert created.status_code == 403, created.text
        joined = await api.post(f"/api/v1/workspaces/{uuid.uuid4()}/join", headers=ada)
        assert joined.status_code == 403, joined.text


async def test_the_json_socket_takes_the_workspace_from_the_query(
    api: AsyncTestClient[Any], self_service_settings: Settings
) -> None:
    ada_token = token(self_service_settings, "ada")
    ada = bearer(ada_token)
    acme = (await api.post("/api/v1/workspaces", json={"name": "Acme"}, headers=ada)).json()["id"]
    other = (await api.post("/api/v1/workspaces", json={"name": "Other"}, headers=ada)).json()["id"]
    channel = await api.post(
        "/api/v1/channels",
        json={"name": "general", "isPrivate": False},
        headers={**ada, "Echonats-Tenant": acme},
    )
    assert channel.status_code == 201, channel.text
    channel_id = channel.json()["id"]
    carol_token = token(self_service_settings, "carol")
    claimed = token(self_service_settings, "dan", other)  # a token bound to another workspace

    async with serve_gateway(self_service_settings) as base:
        async with ws_client(base, f"{ada_token}&tenant={acme}") as ws:
            await ws.send(type="subscribe", channelId=channel_id)
            await ws.wait_for_type("subscribed")
            await ws.send(type="send", channelId=channel_id, body="hello", nonce="n1")
            [ack] = await ws.wait_for_type("ack")
            [message] = await ws.wait_for_type("message")
            assert (message["payload"]["messageId"], message["body"]) == (ack["messageId"], "hello")
            # A refreshed token of the same user (still without a tenant claim) is accepted ...
            await ws.send(type="reauth", token=token(self_service_settings, "ada"))
            await ws.wait_for_type("reauthenticated")
            # ... another user's is not, and the socket stays.
            await ws.send(type="reauth", token=carol_token)
            [error] = await ws.wait_for_type("error")
            assert error["code"] == "forbidden"

        for query, code in (
            (f"{carol_token}&tenant={acme}", 4004),  # not a member: as if it did not exist
            (f"{ada_token}&tenant={uuid.uuid4()}", 4004),  # no such workspace
            (f"{ada_token}&tenant=not-a-uuid", 4004),
            (f"{claimed}&tenant={acme}", 4004),  # a token of another workspace
            (ada_token, 4003),  # no workspace named at all
        ):
            async with ws_client(base, query) as refused:
                assert await refused.wait_closed() == code, query
