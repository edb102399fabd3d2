"""Operations: metrics move with traffic, readiness follows NATS, SIGTERM drains without loss."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import AsyncTestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from echonats.devstack.stack import find_nats_server, free_port
from echonats.metrics import WORKER as WORKER_METRICS
from echonats.settings import NatsSettings, Settings
from tests.integration.api import Workspace, gateway_client, running_persist_worker, wait_for
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import gateway_process, serve_gateway, ws_client


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def _metrics(client: AsyncTestClient[Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return _samples((await client.get("/metrics")).text)


async def test_metrics_follow_traffic(
    client: AsyncTestClient[Any], workspace: Workspace, gateway_settings: Settings
) -> None:
    channel = await workspace.channel("metrics")
    before = await _metrics(client)
    async with serve_gateway(gateway_settings) as base, ws_client(base, workspace.token("m")) as ws:
        await ws.send(type="subscribe", channelId=channel)
        await ws.wait_for_type("subscribed")
        during = await _metrics(client)
        for i in range(3):
            await workspace.send(channel, f"m{i}")
        await ws.wait_for_type("message", count=3)
        await ws.send(type="send", channelId=channel, body="over ws", nonce="x")
        await ws.wait_for_type("ack")
        after = await _metrics(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("echonats_messages_sent_total", transport="rest") == 3
    assert delta("echonats_messages_sent_total", transport="websocket") == 1
    assert delta("echonats_send_ack_seconds_count") == 4
    assert delta("echostream_fanout_messages_processed_total") >= 4
    assert delta("echostream_websocket_messages_broadcast_total") >= 4
    assert delta("echostream_fanout_processing_time_seconds_count") >= 4
    route = "/api/v1/channels/{channel_id}/messages"  # the template: ids never become labels
    assert (
        delta("echonats_http_request_duration_seconds_count", method="POST", route=route, status="201") == 3
    )
    gauge = ("echostream_websocket_connections", ())
    assert during[gauge] == before.get(gauge, 0.0) + 1


@contextmanager
def _nats_server(port: int, store: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [find_nats_server(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)


async def test_readiness_follows_nats_and_recovers(
    workspace: Workspace, gateway_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    own_nats = dataclasses.replace(gateway_settings, nats=NatsSettings(url=f"nats://127.0.0.1:{port}"))

    async def ready_status(client: AsyncTestClient[Any]) -> int:
        return (await client.get("/ready")).status_code

    with _nats_server(port, tmp_path / "js") as first_nats:
        async with gateway_client(own_nats) as client, running_persist_worker(own_nats):
            workspace.client = client
            channel = await workspace.channel("outage")
            first = await workspace.send(channel, "before")
            assert await ready_status(client) == 200
            # NATS goes away (SIGTERM, then it comes back on the same port with the same store).
            first_nats.terminate()

            async def not_ready() -> bool:
                response = await client.get("/ready")
                return response.status_code == 503 and response.json()["checks"]["nats"] != "ok"

            await wait_for(not_ready, timeout_s=15, what="/ready to report NATS down")
            with _nats_server(port, tmp_path / "js"):

                async def ready_again() -> bool:
                    return await ready_status(client) == 200

                await wait_for(ready_again, timeout_s=20, what="/ready to recover")
                second = await workspace.send(channel, "after")

                async def both_persisted() -> bool:
                    assert gateway_settings.postgres.url
                    rows = await _persisted_ids(gateway_settings.postgres.url, channel)
                    return rows == [first, second]

                # The persist worker's consumer is bound again after the reconnect.
                await wait_for(both_persisted, timeout_s=20, what="both messages persisted")


async def _persisted_ids(url: str, channel: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [
            r["id"]
            for r in await conn.fetch("SELECT id FROM messages WHERE channel_id = $1 ORDER BY id", channel)
        ]
    finally:
        await conn.close()


async def test_sigterm_under_load_loses_no_acked_message(
    service_env: dict[str, str], client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    await workspace.set_limits(ADMIN_TOKEN, maxMessagesPerSecond=100_000)
    channel = await workspace.channel("drain")
    env = {**service_env, "ECHONATS_ADMIN_TOKEN": ADMIN_TOKEN, "ECHONATS_RATE_USER_PER_SECOND": "100000",
           "ECHONATS_RATE_USER_BURST": "100000"}  # fmt: skip
    with gateway_process(env) as (process, http_base):
        async with httpx.AsyncClient() as http:

            async def up() -> bool:
                try:
                    return (await http.get(f"{http_base}/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(up, timeout_s=30, what="the gateway process")
        ws_base = http_base.replace("http://", "ws://")
        senders = [ws_client(ws_base, workspace.token(f"s{i}")) for i in range(4)]
        clients = [await s.__aenter__() for s in senders]
        try:
            stop_sending = asyncio.Event()

            async def send_forever(index: int) -> None:
                n = 0
                while not stop_sending.is_set() and clients[index].close_code is None:
                    try:
                        await clients[index].send(
                            type="send", channelId=channel, body=f"{index}-{n}", nonce=f"{index}-{n}"
                        )
                    except Exception:
                        return
                    n += 1
                    await asyncio.sleep(0.002)  # pacing the load, not synchronising

            tasks = [asyncio.create_task(send_forever(i)) for i in range(len(clients))]
            await clients[0].wait_for_type("ack", count=50)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            codes = [await c.wait_closed(timeout_s=20) for c in clients]
            stop_sending.set()
            await asyncio.gather(*tasks)
            # uvicorn re-raises the signal after its graceful shutdown: exit status -15 is a clean stop.
            assert process.wait(timeout=20) in (0, -signal.SIGTERM)
            elapsed = time.monotonic() - started
        finally:
            for s in senders:
                await s.__aexit__(None, None, None)
    assert elapsed < 15, f"drain took {elapsed:.1f}s"
    assert set(codes) == {1012}
    acked = sorted({a["messageId"] for c in clients for a in c.of_type("ack")})
    assert len(acked) >= 50
    history: list[int] = []
    url = f"/api/v1/channels/{channel}/messages?limit=100"
    while True:
        page = (await client.get(url, headers=workspace.owner)).json()
        history.extend(m["id"] for m in page["items"])
        if not page["hasMore"]:
            break
        url = f"/api/v1/channels/{channel}/messages?limit=100&before={page['nextCursor']}"
    assert set(acked) <= set(history)


async def test_each_process_role_serves_only_its_own_metrics(client: AsyncTestClient[Any]) -> None:
    gateway = (await client.get("/metrics")).text
    worker = generate_latest(WORKER_METRICS).decode()  # what the worker's metrics port serves
    for text in (gateway, worker):
        assert "process_cpu_seconds_total" in text
    assert "echostream_websocket_connections" in gateway
    assert "echonats_persist_batch_size" not in gateway
    assert "echonats_persist_batch_size" in worker
    assert "echostream_" not in worker
    assert "echonats_http_request_duration_seconds" not in worker
