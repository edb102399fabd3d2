"""The JSON WebSocket protocol against a real uvicorn gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from litestar.testing import AsyncTestClient

from echonats.adapters.nats import subjects
from echonats.settings import Settings
from tests.integration.api import Workspace
from tests.integration.realtime import serve_gateway, ws_client


@pytest.fixture
async def ws_base(gateway_settings: Settings) -> AsyncIterator[str]:
    async with serve_gateway(gateway_settings) as base:
        yield base


async def test_bad_tokens_are_closed_with_4001(ws_base: str, workspace: Workspace) -> None:
    for token in (None, "garbage", workspace.token("u")[:-4] + "AAAA"):
        async with ws_client(ws_base, token) as client:
            assert await client.wait_closed() == 4001


async def test_removed_member_is_closed_with_4003(
    ws_base: str, client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    await client.get("/api/v1/users/me", headers=workspace.as_user("mallory"))
    await client.delete("/api/v1/members/mallory", headers=workspace.owner)
    async with ws_client(ws_base, workspace.token("mallory")) as ws:
        assert await ws.wait_closed() == 4003


async def test_send_ack_and_delivery(ws_base: str, workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    async with ws_client(ws_base, workspace.token("alice", "Alice")) as alice, \
            ws_client(ws_base, workspace.token("bob", "Bob")) as bob:  # fmt: skip
        for ws in (alice, bob):
            await ws.send(type="subscribe", channelId=channel)
            await ws.wait_for_type("subscribed")
        await alice.send(type="send", channelId=channel, body="hello bob", nonce="n1")
        ack = (await alice.wait_for_type("ack"))[0]
        delivered = (await bob.wait_for_type("message"))[0]
        assert ack["nonce"] == "n1"
        assert delivered == {
            "type": "message",
            "channelId": channel,
            "userId": "alice",
            "body": "hello bob",
            "payload": {
                "messageId": ack["messageId"],
                "senderDisplayName": "Alice",
                "createdAt": ack["createdAt"],
            },
        }
        # The sender gets its own message too (other tabs and devices rely on it).
        assert (await alice.wait_for_type("message"))[0]["payload"]["messageId"] == ack["messageId"]


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(
    ws_base: str, workspace: Workspace
) -> None:
    channel = await workspace.channel("general")
    async with ws_client(ws_base, workspace.token("alice")) as ws:
        bad_frames: list[str | bytes] = [
            '{"type":"dance"}',
            '{"type":"subscribe","channelId":"' + channel + '","extra":1}',
            '{"type":"send","channelId":"not-a-uuid","body":"x"}',
            "not json",
            "[1,2,3]",
            b"\x00\x01binary",
            '{"type":"send","channelId":"' + channel + '","body":"   "}',
        ]
        for frame in bad_frames:
            await ws.send_raw(frame)
        errors = await ws.wait_for_type("error", count=len(bad_frames))
        assert [e["code"] for e in errors] == ["bad_request"] * 6 + ["validation_failed"]
        await ws.send(type="ping")
        await ws.wait_for_type("pong")


async def test_private_channel_outsider_gets_nothing(ws_base: str, workspace: Workspace) -> None:
    secret = await workspace.channel("secret", private=True)
    async with ws_client(ws_base, workspace.token(workspace.owner_id)) as owner, \
            ws_client(ws_base, workspace.token("eve")) as eve:  # fmt: skip
        await owner.send(type="subscribe", channelId=secret)
        await owner.wait_for_type("subscribed")
        await eve.send(type="subscribe", channelId=secret)
        error = (await eve.wait_for_type("error"))[0]
        assert (error["code"], error["ref"]) == ("not_found", secret)
        await eve.send(type="send", channelId=secret, body="let me in", nonce="x")
        assert (await eve.wait_for_type("error", count=2))[1]["code"] == "not_found"
        await workspace.send(secret, "classified")
        await owner.wait_for_type("message")
        await eve.send(type="ping")
        await eve.wait_for_type("pong")  # everything before the pong has arrived
        assert eve.of_type("message") == []


async def test_nonce_repeated_three_times_is_one_message(
    ws_base: str, workspace: Workspace, client: AsyncTestClient[Any]
) -> None:
    channel = await workspace.channel("general")
    async with ws_client(ws_base, workspace.token("alice")) as ws:
        for _ in range(3):
            await ws.send(type="send", channelId=channel, body="once", nonce="same")
        acks = await ws.wait_for_type("ack", count=3)
    assert len({a["messageId"] for a in acks}) == 1
    assert len({a["createdAt"] for a in acks}) == 1
    history = await client.get(f"/api/v1/channels/{channel}/messages", headers=workspace.owner)
    assert [m["id"] for m in history.json()["items"]] == [acks[0]["messageId"]]


async def test_resume_with_since_replays_exactly_the_missed_messages(
    ws_base: str, workspace: Workspace
) -> None:
    channel = await workspace.channel("general")
    async with ws_client(ws_base, workspace.token("bob")) as bob:
        await bob.send(type="subscribe", channelId=channel)
        await bob.wait_for_type("subscribed")
        last_seen = await workspace.send(channel, "before the disconnect")
        await bob.wait_for_type("message")
    missed = [await workspace.send(channel, f"missed {i}") for i in range(100)]
    async with ws_client(ws_base, workspace.token("bob")) as bob:
        await bob.send(type="subscribe", channelId=channel, since=last_seen)
        await bob.wait_for_type("message", count=100)
        live = await workspace.send(channel, "live again")
        await bob.wait_for_type("message", count=101)
        await bob.send(type="ping")
        await bob.wait_for_type("pong")
    ids = [f["payload"]["messageId"] for f in bob.of_type("message")]
    assert ids == [*missed, live]


async def test_resume_while_messages_keep_arriving_has_no_gap_or_duplicate(
    ws_base: str, workspace: Workspace
) -> None:
    channel = await workspace.channel("general")
    first = await workspace.send(channel, "first")
    sent: list[int] = []

    async def keep_sending() -> None:
        for i in range(60):
            sent.append(await workspace.send(channel, f"m{i}"))

    sender = asyncio.create_task(keep_sending())
    async with ws_client(ws_base, workspace.token("bob")) as bob:
        await bob.send(type="subscribe", channelId=channel, since=first)
        await sender
        await bob.wait_for_type("message", count=len(sent))
        await bob.send(type="ping")
        await bob.wait_for_type("pong")
        ids = [f["payload"]["messageId"] for f in bob.of_type("message")]
    assert ids == sent


async def test_since_older_than_the_stream_asks_for_a_resync(
    ws_base: str, workspace: Workspace, gateway_settings: Settings
) -> None:
    channel = await workspace.channel("general")
    ids = [await workspace.send(channel, f"m{i}") for i in range(5)]
    assert gateway_settings.nats.url
    nc = await nats.connect(gateway_settings.nats.url)
    try:  # age out everything before ids[2], as max_age would
        await nc.jetstream().purge_stream(subjects.MESSAGES_STREAM, seq=ids[2])
    finally:
        await nc.close()
    async with ws_client(ws_base, workspace.token("bob")) as bob:
        await bob.send(type="subscribe", channelId=channel, since=ids[0])
        assert (await bob.wait_for_type("resync_required"))[0]["channelId"] == channel
        await bob.send(type="unsubscribe", channelId=channel)
        await bob.wait_for_type("unsubscribed")
        await bob.send(type="subscribe", channelId=channel, since=ids[1])  # nothing missing
        await bob.wait_for_type("message", count=3)
        live = await workspace.send(channel, "live")
        await bob.wait_for_type("message", count=4)
    assert [f["payload"]["messageId"] for f in bob.of_type("message")] == [*ids[2:], live]


async def test_revocations_reach_live_sockets(
    ws_base: str, workspace: Workspace, client: AsyncTestClient[Any]
) -> None:
    secret = await workspace.channel("secret", private=True)
    public = await workspace.channel("public")
    for user in ("zed", "yan"):
        await client.get("/api/v1/users/me", headers=workspace.as_user(user))
        added = await client.post(
            f"/api/v1/channels/{secret}/members", json={"userId": user}, headers=workspace.owner
        )
        assert added.status_code == 204
    async with (
        ws_client(ws_base, workspace.token("zed")) as zed,
        ws_client(ws_base, workspace.token("yan")) as yan,
    ):
        for channel in (secret, public):
            await zed.send(type="subscribe", channelId=channel)
            await zed.wait_for_type("subscribed", count=2 if channel == public else 1)
        await yan.send(type="subscribe", channelId=secret)
        await yan.wait_for_type("subscribed")
        removed = await client.delete(f"/api/v1/channels/{secret}/members/zed", headers=workspace.owner)
        assert removed.status_code == 204
        assert (await zed.wait_for_type("unsubscribed"))[0]["channelId"] == secret
        after = await workspace.send(secret, "zed must not see this")
        await yan.wait(lambda: any(m["payload"]["messageId"] == after for m in yan.of_type("message")))
        await workspace.send(public, "zed still reads public channels")
        await zed.wait_for_type("message")
        assert [m["channelId"] for m in zed.of_type("message")] == [public]
        # Removed from the workspace: disconnected at once.
        await client.delete("/api/v1/members/yan", headers=workspace.owner)
        assert await yan.wait_closed() == 4003
