"""STOMP sessions of tokens without a tenant claim (EchoPulse's): one connection serves every
workspace of its user, each frame checked in the workspace of its channel; nothing of a workspace
the user is not in (or left) reaches it. With stomp.py, a real client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.settings import Settings, load_settings
from tests.integration.api import bearer, gateway_client
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import serve_gateway
from tests.integration.test_stomp import Recorder, stomp_py


@pytest.fixture
def settings_(service_env: dict[str, str]) -> Settings:
    return load_settings(
        {**service_env, "ECHONATS_ADMIN_TOKEN": ADMIN_TOKEN, "ECHONATS_SELF_SERVICE_WORKSPACES": "true"}
    )


@pytest.fixture
async def base(settings_: Settings) -> AsyncIterator[str]:
    async with serve_gateway(settings_) as url:
        yield url


@pytest.fixture
async def api(settings_: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with gateway_client(settings_) as client:
        yield client


class People:
    def __init__(self, settings: Settings, api: AsyncTestClient[Any]) -> None:
        self.settings = settings
        self.api = api

    def token(self, name: str) -> str:
        return mint_dev_token(self.settings.auth, tenant_id=None, user_id=f"id-{name}", name=name)

    def headers(self, name: str) -> dict[str, str]:
        return bearer(self.token(name))

    async def server_with_channel(self, owner: str, name: str) -> tuple[str, str]:
        server = (
            await self.api.post("/api/servers", json={"name": name}, headers=self.headers(owner))
        ).json()
        channel = await self.api.post(
            f"/api/servers/{server['id']}/channels", json={"name": "general"}, headers=self.headers(owner)
        )
        assert channel.status_code == 201, channel.text
        return str(server["id"]), str(channel.json()["id"])

    async def join(self, name: str, server: str) -> None:
        joined = await self.api.post(f"/api/servers/{server}/members", json={}, headers=self.headers(name))
        assert joined.status_code == 200, joined.text

    async def post(self, name: str, channel: str, body: str) -> None:
        sent = await self.api.post(
            f"/api/v1/channels/{channel}/messages", json={"body": body}, headers=self.headers(name)
        )
        assert sent.status_code == 201, sent.text


@pytest.fixture
def people(settings_: Settings, api: AsyncTestClient[Any]) -> People:
    return People(settings_, api)


def contents(recorder: Recorder, subscription: str) -> list[str]:
    return [
        json.loads(f.body)["content"]
        for f in recorder.of("message")
        if f.headers["subscription"] == subscription
    ]


async def subscribe(conn: Any, recorder: Recorder, destination: str, sub_id: str) -> None:
    conn.subscribe(destination, id=sub_id, headers={"receipt": sub_id})
    await recorder.receipt(sub_id)


async def test_one_connection_serves_two_servers_and_loses_the_one_left(base: str, people: People) -> None:
    server_a, channel_a = await people.server_with_channel("ada", "A")
    server_b, channel_b = await people.server_with_channel("ada", "B")
    for server in (server_a, server_b):
        await people.join("bob", server)
    async with stomp_py(base, people.token("bob")) as (conn, bob):
        await subscribe(conn, bob, f"/channels/{channel_a}", "a")
        await subscribe(conn, bob, f"/channels/{channel_b}", "b")
        await subscribe(conn, bob, f"/servers/{server_b}/user-left", "left-b")
        # EchoPulse's SEND: a JSON string body, no content-type, the token repeated on the frame.
        token = {"Authorization": f"Bearer {people.token('bob')}", "receipt": "s1"}
        conn.send(f"/app/channels/{channel_a}", json.dumps('in "A"'), headers=token)
        await bob.receipt("s1")
        conn.send(
            f"/app/channels/{channel_b}", "in B", headers={"content-type": "text/plain", "receipt": "s2"}
        )
        await bob.receipt("s2")
        await bob.messages(2)
        assert contents(bob, "a") == ['in "A"']
        assert contents(bob, "b") == ["in B"]

        left = await people.api.delete(f"/api/servers/{server_b}/members", headers=people.headers("bob"))
        assert left.status_code == 204
        await people.post("ada", channel_b, "after bob left")
        await people.post("ada", channel_a, "still in A")
        await bob.wait(lambda: "still in A" in contents(bob, "a"), "A's message")
        assert contents(bob, "b") == ["in B"]  # B's channel stopped at once
        # The session stays, but nothing of B reaches it any more: its events neither.
        conn.send(f"/app/channels/{channel_b}", "x", headers={"content-type": "text/plain", "receipt": "s3"})
        await bob.wait(lambda: bool(bob.of("error")), "the refused send")
        assert bob.of("error")[-1].headers["code"] == "not_found"
        assert conn.is_connected()


async def test_a_workspace_the_user_is_not_in_stays_dark(base: str, people: People) -> None:
    server_a, channel_a = await people.server_with_channel("ada", "A")
    _, channel_e = await people.server_with_channel("eve", "Eve's")
    async with stomp_py(base, people.token("eve")) as (conn, eve):
        await subscribe(conn, eve, f"/channels/{channel_a}", "foreign")
        for kind in ("channels/created", "user-joined"):
            await subscribe(conn, eve, f"/servers/{server_a}/{kind}", kind)
        await subscribe(conn, eve, f"/channels/{channel_e}", "own")
        conn.send(f"/app/channels/{channel_a}", "sneak", headers={"receipt": "s"})
        await eve.wait(lambda: bool(eve.of("error")), "the refused send")
        refused = eve.of("error")[-1]
        assert refused.headers["code"] == "not_found"
        assert refused.headers["receipt-id"] == "s"

        await people.post("ada", channel_a, "secret")
        await people.join("bob", server_a)
        await people.api.post(
            f"/api/servers/{server_a}/channels", json={"name": "x"}, headers=people.headers("ada")
        )
        await people.post("eve", channel_e, "mine")
        await eve.wait(lambda: contents(eve, "own") == ["mine"], "eve's own message")
        assert [f.headers["subscription"] for f in eve.of("message")] == ["own"]
        assert conn.is_connected()
