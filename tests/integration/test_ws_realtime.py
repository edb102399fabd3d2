"""Typing, presence, rate limits and slow consumers over the WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
from contextlib import AsyncExitStack
from typing import Any

from litestar.testing import AsyncTestClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from echonats.settings import Settings
from tests.integration.api import Workspace
from tests.integration.realtime import Client, serve_gateway, ws_client


def _with_realtime(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, realtime=dataclasses.replace(settings.realtime, **changes))


async def _barrier(*clients: Client) -> None:
    """Everything sent to these clients before now has arrived once their pongs have."""
    for client in clients:
        pongs = len(client.of_type("pong"))
        await client.send(type="ping")
        await client.wait_for_type("pong", count=pongs + 1)


async def test_typing_reaches_other_subscribers_only(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    general = await workspace.channel("general")
    other = await workspace.channel("other")
    async with serve_gateway(gateway_settings) as base, \
            ws_client(base, workspace.token("ann", "Ann")) as ann, \
            ws_client(base, workspace.token("ben", "Ben")) as ben, \
            ws_client(base, workspace.token("cat", "Cat")) as cat:  # fmt: skip
        for client, channel in ((ann, general), (ben, general), (cat, other)):
            await client.send(type="subscribe", channelId=channel)
            await client.wait_for_type("subscribed")
        await ann.send(type="typing", channelId=general)
        typing = (await ben.wait_for_type("typing_indicator"))[0]
        assert typing == {"type": "typing_indicator", "channelId": general, "userId": "ann",
                          "payload": {"displayName": "Ann"}}  # fmt: skip
        for _ in range(5):  # throttled: at most one per user and channel per interval
            await ann.send(type="typing", channelId=general)
        await _barrier(ann)
        await ben.send(type="typing", channelId=general)
        await ann.wait_for_type("typing_indicator")
        await _barrier(ann, ben, cat)
    assert len(ben.of_type("typing_indicator")) == 1
    assert [f["userId"] for f in ann.of_type("typing_indicator")] == ["ben"]  # never its own
    assert cat.of_type("typing_indicator") == []


async def test_presence_goes_to_the_tenant_and_nobody_else(
    workspace: Workspace, client: AsyncTestClient[Any], gateway_settings: Settings
) -> None:
    from tests.integration.api import create_workspace
    from tests.integration.conftest import ADMIN_TOKEN

    other_tenant = await create_workspace(client, gateway_settings, ADMIN_TOKEN, name="Other")
    async with serve_gateway(gateway_settings) as base, \
            ws_client(base, workspace.token("obs")) as observer, \
            ws_client(base, other_tenant.token("outsider")) as outsider:  # fmt: skip
        async with ws_client(base, workspace.token("dan")):
            await observer.wait(
                lambda: {"userId": "dan", "status": "online"} in _presence(observer), what="online"
            )
            async with ws_client(base, workspace.token("dan")):  # a second tab: no new presence
                await _barrier(observer)
            response = await client.get("/api/v1/presence?userIds=dan,obs,ghost", headers=workspace.owner)
            assert response.json()["items"] == [
                {"userId": "dan", "status": "online"},
                {"userId": "obs", "status": "online"},
                {"userId": "ghost", "status": "offline"},
            ]
        await observer.wait(
            lambda: {"userId": "dan", "status": "offline"} in _presence(observer), what="offline"
        )
        await _barrier(observer, outsider)
    assert [p for p in _presence(observer) if p["userId"] == "dan"] == [
        {"userId": "dan", "status": "online"},
        {"userId": "dan", "status": "offline"},
    ]
    assert all(p["userId"] == "outsider" for p in _presence(outsider))  # nothing of the other tenant


def _presence(client: Client) -> list[dict[str, str]]:
    return [{"userId": f["userId"], "status": f["payload"]["status"]} for f in client.of_type("presence")]


async def test_burst_above_the_user_limit_is_refused_and_not_stored(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    channel = await workspace.channel("general")
    limited = _with_realtime(gateway_settings, rate_user_per_second=0.5, rate_user_burst=5)
    async with serve_gateway(limited) as base, ws_client(base, workspace.token("flood")) as flood:
        for i in range(12):
            await flood.send(type="send", channelId=channel, body=f"m{i}", nonce=f"n{i}")
        await flood.wait(
            lambda: len(flood.of_type("ack")) + len(flood.of_type("error")) == 12, what="12 answers"
        )
    acks, errors = flood.of_type("ack"), flood.of_type("error")
    assert len(acks) == 5
    assert {e["code"] for e in errors} == {"rate_limited"}
    assert all(e["retryAfterMs"] > 0 for e in errors)
    assert [e["ref"] for e in errors] == [f"n{i}" for i in range(5, 12)]
    assert gateway_settings.postgres.url
    stored = await _stream_ids(workspace, channel)
    assert stored == sorted(a["messageId"] for a in acks)


async def _stream_ids(workspace: Workspace, channel: str) -> list[int]:
    history = await workspace.client.get(
        f"/api/v1/channels/{channel}/messages?limit=100", headers=workspace.owner
    )
    return sorted(m["id"] for m in history.json()["items"])


async def test_rest_rate_limit_answers_429_with_headers(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    from tests.integration.api import gateway_client

    channel = await workspace.channel("general")
    limited = _with_realtime(gateway_settings, rate_user_per_second=0.5, rate_user_burst=2)
    async with gateway_client(limited) as rest:
        url = f"/api/v1/channels/{channel}/messages"
        statuses = [(await rest.post(url, json={"body": "x"}, headers=workspace.owner)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [201, 201, 429]
    refused = statuses[2]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit"] == "1"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"]["retryAfterMs"] > 0


async def test_slow_consumer_is_closed_and_delays_nobody(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    from tests.integration.conftest import ADMIN_TOKEN

    await workspace.set_limits(ADMIN_TOKEN, maxMessagesPerSecond=100_000)
    channel = await workspace.channel("firehose")
    # Readers share this process's event loop with the gateway and may lag by ~10 messages plus up
    # to half a queue of presence frames; 128 leaves them room while the non-reader overflows.
    # The slow client reads again only after all 500 messages: its close may wait for it that long.
    settings = _with_realtime(gateway_settings, send_queue=128, close_timeout_s=120.0)
    total = 500
    async with serve_gateway(settings) as base:
        # The slow client subscribes and then never reads: a tiny receive buffer and a client-side
        # queue of one frame make the server's writes back up quickly.
        slow_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow_sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        async with connect(f"{base}/ws?token={workspace.token('slow')}", sock=slow_sock, max_queue=1) as slow:
            await slow.send(json.dumps({"type": "subscribe", "channelId": channel}))
            await slow.recv()  # subscribed
            slow.transport.pause_reading()  # from now on this client reads nothing at all
            async with AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(ws_client(base, workspace.token(f"r{i}")))
                    for i in range(50)
                ]
                for c in clients:
                    await c.send(type="subscribe", channelId=channel)
                await asyncio.gather(*(c.wait_for_type("subscribed") for c in clients))
                body = "x" * 2000
                sent: list[int] = []
                for i in range(total):
                    sent.append(await workspace.send(channel, f"{i} {body}"))
                    if i % 10 == 9:  # readers share this event loop: keep pace by counts, not time
                        await asyncio.gather(*(c.wait_for_type("message", count=i + 1) for c in clients))
                await asyncio.gather(
                    *(c.wait_for_type("message", count=total, timeout_s=60) for c in clients)
                )
                for c in clients:
                    assert [f["payload"]["messageId"] for f in c.of_type("message")] == sent
            # Now read what reached the slow client: a prefix of the messages, then the close frame.
            received: list[int] = []
            slow.transport.resume_reading()
            with contextlib.suppress(ConnectionClosed):
                async with asyncio.timeout(30):
                    async for raw in slow:
                        frame = json.loads(raw)
                        if frame["type"] == "message":
                            received.append(frame["payload"]["messageId"])
            assert slow.close_code == 4008
            assert received == sent[: len(received)]
            assert len(received) < total
