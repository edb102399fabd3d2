"""Socket lifecycle on /ws and /ws/stomp: dropping sockets whose close cannot finish, socket limits
per user and per client IP, and closing at the token's expiry (with reauth)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.adapters.jwt_auth import JwtVerifier
from echonats.gateway.stomp_frames import FrameParser, serialize
from echonats.model import Principal
from echonats.settings import Settings
from tests.integration.api import Workspace, wait_for
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import Client, metric, serve_gateway, ws_client

GAUGE = "echostream_websocket_connections"


def _with_realtime(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, realtime=dataclasses.replace(settings.realtime, **changes))


def _token(workspace: Workspace, user: str, ttl_s: int = 3600) -> str:
    return mint_dev_token(
        workspace.settings.auth, tenant_id=workspace.tenant_id, user_id=user, name=user, ttl_s=ttl_s
    )


def _http(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base.replace("ws://", "http://"), timeout=30)


async def _stomp_frame(ws: ClientConnection, parser: FrameParser, timeout_s: float = 30) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            data = await ws.recv()
            frames = parser.feed(data.encode() if isinstance(data, str) else data)
            if frames:
                return frames[0]


async def _closed(ws: ClientConnection, timeout_s: float = 30) -> int | None:
    """Read (and drop) everything until the connection ends; its close code (1006: no close frame)."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout_s):
            while True:
                await ws.recv()
    return ws.close_code


async def _subscribe(ws: ClientConnection, protocol: str, token: str, channel: str) -> None:
    if protocol == "json":
        await ws.send(json.dumps({"type": "subscribe", "channelId": channel}))
        async with asyncio.timeout(30):
            while json.loads(await ws.recv())["type"] != "subscribed":  # presence frames come too
                pass
        return
    parser = FrameParser()
    await ws.send(
        serialize("CONNECT", {"accept-version": "1.2", "Authorization": f"Bearer {token}"}).decode()
    )
    assert (await _stomp_frame(ws, parser)).command == "CONNECTED"
    headers = {"id": "s1", "destination": f"/channels/{channel}", "receipt": "r1"}
    await ws.send(serialize("SUBSCRIBE", headers).decode())
    assert (await _stomp_frame(ws, parser)).command == "RECEIPT"


# -- item 7: a close that cannot finish ends with the TCP connection dropped ----------------------


@pytest.mark.parametrize("protocol", ["json", "stomp"])
async def test_a_slow_consumer_that_never_reads_is_dropped_after_the_close_timeout(
    workspace: Workspace, gateway_settings: Settings, protocol: str
) -> None:
    await workspace.set_limits(ADMIN_TOKEN, maxMessagesPerSecond=100_000)
    channel = await workspace.channel("firehose")
    # Small buffers everywhere, so a client that stops reading overflows after a few dozen messages.
    settings = _with_realtime(gateway_settings, send_queue=16, socket_send_buffer=4096, close_timeout_s=1.0)
    async with serve_gateway(settings) as base, _http(base) as http:
        before = await metric(http, GAUGE)
        closes_before = await metric(http, "echonats_ws_slow_consumer_closes_total")
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
        token = _token(workspace, "slow")
        path = "/ws" if protocol == "json" else "/ws/stomp"
        async with connect(f"{base}{path}?token={token}", sock=raw, max_queue=1, close_timeout=1) as slow:
            await _subscribe(slow, protocol, token, channel)
            assert await metric(http, GAUGE) == before + 1
            slow.transport.pause_reading()  # from now on this client reads nothing at all

            async def gave_up() -> bool:
                return await metric(http, "echonats_ws_slow_consumer_closes_total") > closes_before

            for i in range(2000):  # far more than the buffers hold; stops at the 4008
                await workspace.send(channel, f"{i} {'x' * 3900}")
                if i % 5 == 4 and await gave_up():
                    break
            assert await gave_up(), "the client never counted as a slow consumer"

            # The close frame cannot get out (the client reads nothing): the server must drop the
            # TCP connection itself, and with it the socket's hub entry and gauge.
            async def gauge_back() -> bool:
                return await metric(http, GAUGE) == before

            await wait_for(gauge_back, timeout_s=30, what="the slow consumer's socket to be dropped")
            slow.transport.resume_reading()
            assert await _closed(slow) == 1006  # EOF without a close frame: the server aborted


# -- item 8: sockets per user, upgrades per IP ----------------------------------------------------


async def _admitted(client: Client) -> bool:
    """True once the socket answers a ping; False if the server closed it instead (its close frame
    may arrive before our ping goes out: then sending it fails)."""
    with contextlib.suppress(AssertionError, ConnectionClosed):
        await client.send(type="ping")
        await client.wait_for_type("pong", timeout_s=30)
        return True
    return False


async def test_a_user_gets_at_most_the_configured_sockets_per_gateway_json_and_stomp_together(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    settings = _with_realtime(gateway_settings, max_sockets_per_user=2)
    ann = _token(workspace, "ann")
    async with serve_gateway(settings) as base:
        async with ws_client(base, ann) as first, ws_client(base, ann) as second:
            assert await _admitted(first)
            assert await _admitted(second)
            async with ws_client(base, ann) as third:
                assert await third.wait_closed(timeout_s=30) == 4029
            async with connect(f"{base}/ws/stomp?token={ann}", open_timeout=10) as stomp:
                await stomp.send(serialize("CONNECT", {"accept-version": "1.2"}).decode())
                error = await _stomp_frame(stomp, FrameParser())
                assert (error.command, error.get("code")) == ("ERROR", "limit_exceeded")
                assert await _closed(stomp) == 4029
            async with ws_client(base, _token(workspace, "bob")) as bob:  # other users are not affected
                assert await _admitted(bob)

        # Closed sockets give their place back (the server's side finishes a moment after ours).
        async def admitted_again() -> bool:
            async with ws_client(base, ann) as again:
                return await _admitted(again)

        await wait_for(admitted_again, timeout_s=30, what="a socket of ann to be admitted again")


async def test_upgrades_over_the_per_ip_rate_get_429_before_any_token_is_verified(
    workspace: Workspace, gateway_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    original = JwtVerifier.verify

    async def counting(self: JwtVerifier, token: str) -> Principal:
        verified.append(token)
        return await original(self, token)

    monkeypatch.setattr(JwtVerifier, "verify", counting)
    # Three upgrades at once, then (practically) none: nothing refills during the test.
    settings = _with_realtime(gateway_settings, handshakes_per_ip_per_second=0.001, handshakes_per_ip_burst=3)
    token = _token(workspace, "ann")
    async with serve_gateway(settings) as base:
        async with ws_client(base, "not-a-token") as bad:
            assert await bad.wait_closed(timeout_s=30) == 4001  # refused tokens count as upgrades too
        async with ws_client(base, token) as one, ws_client(base, token) as two:
            assert await _admitted(one)
            assert await _admitted(two)
        for path in ("/ws", "/ws/stomp"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{base}{path}?token={token}", open_timeout=10):
                    pass
            assert refused.value.response.status_code == 429
            assert int(refused.value.response.headers["Retry-After"]) >= 1
    assert len(verified) == 3  # the refused upgrades never reached the verifier


# -- item 10: closed at the token's exp, unless a reauth brings a fresh token ---------------------


async def test_a_socket_is_closed_with_4001_at_its_tokens_expiry_and_foreign_tokens_do_not_renew_it(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    async with serve_gateway(gateway_settings) as base, ws_client(base, _token(workspace, "ann", 5)) as ann:
        await ann.send(type="reauth", token=_token(workspace, "bob"))  # another user's token
        await ann.send(type="reauth", token="garbage")
        errors = await ann.wait_for_type("error", count=2)
        assert [e["code"] for e in errors] == ["forbidden", "unauthenticated"]
        assert not ann.of_type("reauthenticated")
        assert await ann.wait_closed(timeout_s=30) == 4001  # the old expiry still stands


async def test_reauth_with_a_fresh_token_moves_the_expiry(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    channel = await workspace.channel("general")
    async with (
        serve_gateway(gateway_settings) as base,
        ws_client(base, _token(workspace, "ann", 4)) as ann,
        ws_client(base, _token(workspace, "witness", 7)) as witness,
    ):
        await ann.send(type="subscribe", channelId=channel)
        await ann.wait_for_type("subscribed")
        await ann.send(type="reauth", token=_token(workspace, "ann", 3600))
        [renewed] = await ann.wait_for_type("reauthenticated")
        expires_at = datetime.fromisoformat(renewed["expiresAt"])
        assert (expires_at - datetime.now(UTC)).total_seconds() > 3000
        # The witness's token expires after ann's first one did: once it is closed, ann's old
        # expiry has passed too, and ann is still connected and receiving.
        assert await witness.wait_closed(timeout_s=30) == 4001
        message_id = await workspace.send(channel, "still here")
        await ann.wait(lambda: any(m["payload"]["messageId"] == message_id for m in ann.of_type("message")))
        assert ann.close_code is None


async def test_stomp_sessions_get_an_error_and_4001_at_expiry_unless_a_frame_brings_a_fresh_token(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    async with serve_gateway(gateway_settings) as base:
        url = f"{base}/ws/stomp"
        async with connect(url, open_timeout=10) as short, connect(url, open_timeout=10) as refreshed:
            parsers = {short: FrameParser(), refreshed: FrameParser()}
            for ws, ttl in ((refreshed, 4), (short, 7)):
                headers = {
                    "accept-version": "1.2",
                    "Authorization": f"Bearer {_token(workspace, 'ann', ttl)}",
                }
                await ws.send(serialize("CONNECT", headers).decode())
                assert (await _stomp_frame(ws, parsers[ws])).command == "CONNECTED"
            # A client that repeats Authorization on its frames renews the session with a fresh token.
            fresh = {"Authorization": f"Bearer {_token(workspace, 'ann')}", "receipt": "r1"}
            await refreshed.send(serialize("SUBSCRIBE", {"id": "1", "destination": "/x", **fresh}).decode())
            assert (await _stomp_frame(refreshed, parsers[refreshed])).command == "RECEIPT"
            error = await _stomp_frame(short, parsers[short])
            assert (error.command, error.get("code")) == ("ERROR", "unauthenticated")
            assert await _closed(short) == 4001
            # `refreshed`'s first token expired before `short`'s did; it is still open.
            await refreshed.send(
                serialize("SUBSCRIBE", {"id": "2", "destination": "/y", "receipt": "r2"}).decode()
            )
            receipt = await _stomp_frame(refreshed, parsers[refreshed])
            assert (receipt.command, receipt.get("receipt-id")) == ("RECEIPT", "r2")
