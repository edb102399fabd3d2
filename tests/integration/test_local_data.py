"""`echonats run` as a developer uses it: data kept in ECHONATS_DATA_DIR across restarts (also after
the run was killed), nothing kept with --ephemeral, and N gateways sharing the one configured port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sys
from pathlib import Path

import httpx

from tests.integration.api import bearer, wait_for
from tests.integration.realtime import Client, ws_client
from tests.integration.running import (
    Tenant,
    create_tenant,
    echonats_run,
    send_and_ack,
    subscribed_client,
)


async def history(http: httpx.AsyncClient, tenant: Tenant) -> list[int]:
    response = await http.get(
        f"/api/v1/channels/{tenant.channel_id}/messages", headers=bearer(tenant.token())
    )
    assert response.status_code == 200, response.text
    return [int(item["id"]) for item in response.json()["items"]]


async def test_data_survives_a_restart_and_a_killed_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with (
        echonats_run(data_dir=data) as first,
        httpx.AsyncClient(base_url=first.base, timeout=10) as http,
    ):
        tenant = await create_tenant(http)
        async with subscribed_client(first, tenant) as client:
            sent = await send_and_ack(client, tenant, "kept")
        assert f"Data          {data.resolve()}" in "".join(first.stdout)
    assert (data / "postgres" / "PG_VERSION").is_file()
    assert (data / "nats" / "jetstream").is_dir()

    async with (
        echonats_run(data_dir=data) as second,
        httpx.AsyncClient(base_url=second.base, timeout=10) as http,
    ):
        assert await history(http, tenant) == [sent]  # the tenant, its channel and the message
        async with subscribed_client(second, tenant) as client:
            again = await send_and_ack(client, tenant, "second run")
        assert again > sent
        # Killed outright: no clean stop, its lock and PostgreSQL's pid file left behind.
        second.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(second.process.wait, 30)
    await wait_for(
        lambda: asyncio.to_thread(_nothing_runs_from, data),
        timeout_s=30,
        what="the killed run's services to exit",
    )
    # Worse than that: after a power loss, PostgreSQL's pid file names a pid that now is someone
    # else's (here: this test's), and a service of the lost run still runs from the folder.
    pid_file = data / "postgres" / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{data / 'postgres'}\n")
    orphan = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(300)", str(data / "nats")
    )
    (data / "pids").write_text(json.dumps({"nats": orphan.pid}))
    try:
        async with (
            echonats_run(data_dir=data) as third,
            httpx.AsyncClient(base_url=third.base, timeout=10) as http,
        ):
            assert await history(http, tenant) == [again, sent]
            # killed before the new services started
            assert await asyncio.wait_for(orphan.wait(), 10) == -signal.SIGKILL
            assert re.search(r"killing nats \(pid \d+\), left running by a killed run", third.log())
    finally:
        if orphan.returncode is None:
            orphan.kill()
        await orphan.wait()


def _nothing_runs_from(folder: Path) -> bool:
    needle = str(folder.resolve()).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if needle in cmdline.read_bytes():
                return False
    return True


async def test_an_ephemeral_run_keeps_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"  # configured, and ignored by --ephemeral
    async with (
        echonats_run("--ephemeral", data_dir=data) as first,
        httpx.AsyncClient(base_url=first.base) as http,
    ):
        tenant = await create_tenant(http)
        assert "Data          temp folders, deleted on exit (--ephemeral)" in "".join(first.stdout)
    async with (
        echonats_run("--ephemeral", data_dir=data) as second,
        httpx.AsyncClient(base_url=second.base) as http,
    ):
        response = await http.get("/api/v1/channels", headers=bearer(tenant.token()))
        assert response.status_code in (401, 403, 404), response.text  # that tenant is gone
    assert not data.exists()


def _free_port_run(count: int) -> int:
    """A port P with P..P+count free, below the kernel's ephemeral range so that no outgoing
    connection of another test takes one of them meanwhile."""
    for _ in range(100):
        port = random.randrange(20000, 30000 - count)
        with contextlib.ExitStack() as held:
            try:
                for offset in range(count + 1):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return port
    raise AssertionError("no run of free ports found")


async def connections_of(http: httpx.AsyncClient, port: int) -> int:
    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    found = re.search(r"^echostream_websocket_connections (\S+)$", text, re.MULTILINE)
    assert found, text
    return int(float(found.group(1)))


async def test_gateways_share_one_port_and_each_message_reaches_every_subscriber_once() -> None:
    gateways, sockets = 2, 24
    port = _free_port_run(gateways)
    async with (
        echonats_run("--gateways", str(gateways), port=port) as stack,
        httpx.AsyncClient(base_url=stack.base, timeout=10) as http,
    ):
        assert f"({gateways} gateways sharing port {port})" in "".join(stack.stdout)
        tenant = await create_tenant(http)
        async with contextlib.AsyncExitStack() as exits:
            clients: list[Client] = []
            for _ in range(sockets):
                client = await exits.enter_async_context(
                    ws_client(stack.base.replace("http", "ws", 1), tenant.token())
                )
                await client.send(type="subscribe", channelId=tenant.channel_id)
                await client.wait_for_type("subscribed")
                clients.append(client)

            # Each gateway answers on PORT+K alone: its own /metrics count its own sockets.
            per_gateway = [await connections_of(http, port + k) for k in range(1, gateways + 1)]
            assert sum(per_gateway) == sockets, per_gateway
            assert min(per_gateway) > 0, per_gateway  # the kernel spread the connections

            sent = [await send_and_ack(clients[i], tenant, f"n{i}") for i in range(5)]

            def delivered(client: Client) -> list[int]:
                return [int(f["payload"]["messageId"]) for f in client.of_type("message")]

            async def everyone_has_all() -> bool:
                return all(set(sent) <= set(delivered(client)) for client in clients)

            await wait_for(everyone_has_all, timeout_s=20, what="every message on every socket")
            for client in clients:
                assert delivered(client) == sent  # once each, in order
