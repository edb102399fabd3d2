"""echonats.client on the real stack: a gateway process killed (or stopped) and started again on the
same port while messages keep being posted through another gateway; the client reconnects by itself
and the application sees every message exactly once, in order. Also: rate-limited sends waited out
(the server's retryAfterMs) and stored once; a refused token raising at connect.

Every wait is on a condition with a deadline; the gateway process is stopped even on failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

import echonats.client
from echonats.client import Client, ClientClosed, ConnectionFailed, full_jitter
from echonats.devstack.stack import free_port
from echonats.gateway import protocol as p
from echonats.settings import Settings
from tests.integration.api import Workspace, wait_for
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import serve_gateway

Process = subprocess.Popen[bytes]


@contextmanager
def gateway_on(port: int, env: dict[str, str]) -> Iterator[Process]:
    """`echonats gateway` as a separate process on ``port`` (the same one across restarts)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "echonats", "gateway"],
        env={**os.environ, **env, "ECHONATS_GATEWAY_PORT": str(port)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_ready(process: Process, base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2.0) as http:

        async def ready() -> bool:
            assert process.poll() is None, f"gateway exited with {process.returncode}"
            try:
                return (await http.get("/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(ready, timeout_s=30, what=f"{base}/ready")


class Received:
    """What the application reads from ``events()``, in the background."""

    def __init__(self, chat: Client) -> None:
        self.events: list[Any] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._read(chat))

    async def _read(self, chat: Client) -> None:
        try:
            async with aclosing(chat.events()) as events:
                async for event in events:
                    self.events.append(event)
                    self._arrived.set()
        except ClientClosed:
            pass

    def message_ids(self) -> list[int]:
        return [e.payload.message_id for e in self.events if isinstance(e, p.MessageFrame)]

    async def until(self, check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not check():
                assert not self._task.done(), f"events() ended before {what}: {self._task}"
                self._arrived.clear()
                await self._arrived.wait()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_the_client_resumes_across_a_gateway_restart_without_loss_or_duplicate(
    env: dict[str, str], client: AsyncTestClient[Any], workspace: Workspace, stop: signal.Signals
) -> None:
    await workspace.set_limits(ADMIN_TOKEN, maxMessagesPerSecond=100_000)
    channel = await workspace.channel("resume")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    posted: list[int] = []

    async def post(count: int, label: str) -> None:  # through the in-process gateway, not the process
        for n in range(count):
            posted.append(await workspace.send(channel, f"{label}-{n}", by="poster"))

    with gateway_on(port, env) as first:
        await wait_ready(first, base)
        chat = echonats.client.connect(
            base, token=workspace.token("reader"), backoff=full_jitter(base_s=0.05, cap_s=0.5)
        )
        async with chat:
            received = Received(chat)
            try:
                await chat.subscribe(channel)
                await post(10, "before")
                await received.until(lambda: received.message_ids() == posted, "the first 10 messages")

                first.send_signal(stop)
                assert first.wait(timeout=20) in (0, -stop)  # SIGTERM: closed with 1012 first
                await post(10, "while down")
                outage_send = asyncio.create_task(chat.send(channel, "sent while down"))
                with gateway_on(port, env) as second:
                    await post(10, "while restarting")  # races the client's reconnect and replay
                    await wait_ready(second, base)
                    ack = await asyncio.wait_for(outage_send, 30)  # resent after the reconnect, same nonce
                    await post(5, "after")
                    own = await chat.send(channel, "sent after")
                    expected = sorted([*posted, ack.message_id, own.message_id])
                    await received.until(
                        lambda: len(received.message_ids()) >= len(expected), "every message"
                    )
                    await chat.ping()  # anything further (a duplicate, say) would have arrived by now
                    got = received.message_ids()
                    assert chat.reconnects >= 1
            finally:
                await received.stop()
    assert got == expected, f"missing {sorted(set(expected) - set(got))}, extra {len(got) - len(set(got))}"
    assert isinstance(ack, p.Ack)
    assert not [e for e in received.events if isinstance(e, p.ResyncRequired)]
    # The message sent while the gateway was down was stored once (the resend got its original id).
    bodies = [e.body for e in received.events if isinstance(e, p.MessageFrame)]
    assert bodies.count("sent while down") == 1
    assert bodies.count("sent after") == 1


async def test_rate_limited_sends_are_waited_out_and_each_stored_once(
    gateway_settings: Settings, client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    realtime = dataclasses.replace(gateway_settings.realtime, rate_user_per_second=5, rate_user_burst=2)
    limited = dataclasses.replace(gateway_settings, realtime=realtime)
    await workspace.set_limits(ADMIN_TOKEN, maxMessagesPerSecond=100_000)  # only the user limit bites
    channel = await workspace.channel("limited")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the client's waits, recorded and then really waited
        waits.append(seconds)
        await asyncio.sleep(seconds)

    async with serve_gateway(limited) as base, Client(base, workspace.token("bot"), sleep=sleep) as chat:
        acks = await asyncio.gather(*(chat.send(channel, f"burst {i}") for i in range(6)))
    assert waits, "6 sends at once with a burst of 2 must be refused at first"
    assert all(0 < w <= 1 for w in waits)  # the server's retryAfterMs at 5/s
    history = await client.get(f"/api/v1/channels/{channel}/messages", headers=workspace.owner)
    stored = sorted(m["id"] for m in history.json()["items"])
    assert stored == sorted(a.message_id for a in acks)  # every send stored, none twice
    assert len(set(stored)) == 6


async def test_a_refused_token_raises_at_connect(gateway_settings: Settings, workspace: Workspace) -> None:
    async with serve_gateway(gateway_settings) as base:
        with pytest.raises(ConnectionFailed) as raised:
            async with echonats.client.connect(base, token="not-a-jwt"):
                pass
    assert raised.value.code == 4001
