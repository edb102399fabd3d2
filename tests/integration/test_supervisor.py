"""`echonats run` supervising its children: a crashed worker or gateway is restarted while the rest
keeps serving, and a stop signal stops gateways, then the worker, then the services.

Every wait polls a condition with a deadline or waits on output lines; the stack is stopped (and
killed if need be) even when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.devstack.stack import free_port
from echonats.settings import DEV_JWT_SECRET, load_settings
from tests.integration.api import bearer, wait_for
from tests.integration.realtime import Client, ws_client

ADMIN = "supervisor-test-admin-token-0123456789"
START_TIMEOUT_S = 90.0  # a loaded 2-core machine starts three services and two Pythons slowly


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    port: int
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return "".join(self.stderr)

    def database_url(self) -> str:
        found = re.search(r"PostgreSQL\s+(postgresql://\S+)", "".join(self.stdout))
        assert found, "".join(self.stdout)
        return found.group(1)

    def child_pid(self, command: str) -> int | None:
        """The live direct child running `echonats <command>` (children are in their own sessions)."""
        try:
            pids = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            return None
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if argv[1:4] == [b"-m", b"echonats", command.encode()] and state != "Z":
                return int(pid)
        return None


def _reader(stream: object, into: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.extend(stream), daemon=True)  # type: ignore[call-overload]
    thread.start()
    return thread


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "echonats", "run"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@asynccontextmanager
async def echonats_run() -> AsyncIterator[RunningStack]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHONATS_")}
    env.update(
        ECHONATS_GATEWAY_PORT=str(port),
        ECHONATS_WORKER_METRICS_PORT=str(free_port()),
        ECHONATS_ADMIN_TOKEN=ADMIN,
        ECHONATS_RATE_USER_PER_SECOND="100000",
        ECHONATS_RATE_USER_BURST="100000",
        ECHONATS_LOG_FORMAT="text",
    )
    process = _start(env)
    stack = RunningStack(process, port)
    readers = [_reader(process.stdout, stack.stdout), _reader(process.stderr, stack.stderr)]
    try:

        async def banner() -> bool:
            assert process.poll() is None, f"echonats run exited with {process.returncode}: {stack.log()}"
            return any("Ctrl-C stops everything" in line for line in stack.stdout)

        await wait_for(banner, timeout_s=START_TIMEOUT_S, what="the banner of echonats run")
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for reader in readers:
            reader.join(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@dataclass
class Tenant:
    http: httpx.AsyncClient
    tenant_id: str
    owner_id: str
    channel_id: str = ""

    def token(self) -> str:
        auth = load_settings({"ECHONATS_JWT_SECRET": DEV_JWT_SECRET}).auth
        return mint_dev_token(auth, tenant_id=self.tenant_id, user_id=self.owner_id, name="Owner")


async def create_tenant(http: httpx.AsyncClient) -> Tenant:
    body = {"name": "Supervised", "adminEmail": "owner@example.com", "adminDisplayName": "Owner"}
    response = await http.post("/api/v1/admin/tenants", json=body, headers=bearer(ADMIN))
    assert response.status_code == 201, response.text
    tenant = Tenant(http, response.json()["id"], response.json()["adminUserId"])
    created = await http.post(
        "/api/v1/channels", json={"name": "general", "isPrivate": False}, headers=bearer(tenant.token())
    )
    assert created.status_code == 201, created.text
    tenant.channel_id = created.json()["id"]
    return tenant


@asynccontextmanager
async def subscribed_client(stack: RunningStack, tenant: Tenant) -> AsyncIterator[Client]:
    async with ws_client(stack.base.replace("http", "ws", 1), tenant.token()) as client:
        await client.send(type="subscribe", channelId=tenant.channel_id)
        await client.wait_for_type("subscribed")
        yield client


async def send_and_ack(client: Client, tenant: Tenant, nonce: str) -> int:
    acks = len(client.of_type("ack"))
    await client.send(type="send", channelId=tenant.channel_id, body=f"body {nonce}", nonce=nonce)
    frames = await client.wait_for_type("ack", count=acks + 1, timeout_s=20)
    assert frames[-1]["nonce"] == nonce
    return int(frames[-1]["messageId"])


async def ready(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/ready")).status_code == 200
    except httpx.TransportError:
        return False


async def test_killed_worker_is_restarted_while_the_gateway_keeps_serving() -> None:
    async with echonats_run() as stack, httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        tenant = await create_tenant(http)
        async with subscribed_client(stack, tenant) as client:
            before = await send_and_ack(client, tenant, "before")
            old = stack.child_pid("worker")
            gateway = stack.child_pid("gateway")
            assert old
            assert gateway

            os.kill(old, signal.SIGKILL)
            # Sent while no worker runs: JetStream acknowledges it, the gateway does not need the worker.
            during = await send_and_ack(client, tenant, "during")
            assert await ready(http)

            async def restarted() -> bool:
                assert stack.process.poll() is None, f"echonats run exited: {stack.log()}"
                return stack.child_pid("worker") not in (None, old)

            await wait_for(restarted, timeout_s=30, what="a new worker process")
            new = stack.child_pid("worker")
            conn = await asyncpg.connect(stack.database_url())
            try:

                async def persisted() -> bool:
                    query = "SELECT count(*) FROM messages WHERE id = ANY($1::bigint[])"
                    return int(await conn.fetchval(query, [before, during])) == 2

                await wait_for(persisted, timeout_s=45, what="both messages in PostgreSQL")
            finally:
                await conn.close()

            after = await send_and_ack(client, tenant, "after")  # the same socket, never closed
            await client.wait(lambda: after in [f["payload"]["messageId"] for f in client.of_type("message")])
            assert client.close_code is None
            assert stack.child_pid("gateway") == gateway  # the gateway was left alone
            assert stack.child_pid("worker") == new  # and the new worker stays up
            assert re.search(rf"worker \(pid {old}\) exited with signal SIGKILL", stack.log()), stack.log()
            assert await ready(http)


async def test_killed_gateway_is_restarted_on_its_port() -> None:
    async with echonats_run() as stack, httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        tenant = await create_tenant(http)
        old, worker = stack.child_pid("gateway"), stack.child_pid("worker")
        assert old
        assert worker
        os.kill(old, signal.SIGKILL)

        async def back() -> bool:
            assert stack.process.poll() is None, f"echonats run exited: {stack.log()}"
            return stack.child_pid("gateway") not in (None, old) and await ready(http)

        await wait_for(back, timeout_s=45, what="a new gateway answering /ready on the same port")
        async with subscribed_client(stack, tenant) as client:
            await send_and_ack(client, tenant, "after restart")
        assert stack.child_pid("worker") == worker
        assert re.search(rf"gateway-1 \(pid {old}\) exited with signal SIGKILL", stack.log()), stack.log()


# What a gateway or worker logs when a service went away under it.
SERVICE_ERRORS = re.compile(r"ConnectionError|Traceback|drain failed|shutting down|NATS disconnected")


@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGTERM], ids=["sighup", "sigterm"])
async def test_stop_signal_stops_gateways_then_worker_then_services(stop_signal: signal.Signals) -> None:
    async with echonats_run() as stack, httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        tenant = await create_tenant(http)
        async with subscribed_client(stack, tenant) as client:
            await send_and_ack(client, tenant, "one")
            stack.process.send_signal(stop_signal)
            assert await client.wait_closed(timeout_s=30) == 1012
        assert await asyncio.to_thread(stack.process.wait, 60) == 0
    log = stack.log()
    assert not SERVICE_ERRORS.search(log), log
    assert "killing it" not in log  # each stopped within its bound, none SIGKILLed
    order = [
        log.index("gateway-1 stopped ("),  # uvicorn re-raises SIGTERM after its graceful shutdown
        log.index("worker stopped (exit code 0)"),
        log.index("echonats.devstack.supervisor: stopped"),
    ]
    assert order == sorted(order), log
