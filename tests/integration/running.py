"""`echonats run` as a user runs it: a real process tree, its banner awaited, stopped with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

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


def _start(env: dict[str, str], args: Sequence[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "echonats", "run", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@asynccontextmanager
async def echonats_run(
    *args: str, data_dir: Path | None = None, port: int | None = None
) -> AsyncIterator[RunningStack]:
    """`echonats run ARGS` (with --ephemeral unless a data dir is given), stopped with Ctrl-C."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHONATS_")}
    env.update(
        ECHONATS_GATEWAY_PORT=str(port),
        ECHONATS_WORKER_METRICS_PORT=str(free_port()),
        ECHONATS_ADMIN_TOKEN=ADMIN,
        ECHONATS_RATE_USER_PER_SECOND="100000",
        ECHONATS_RATE_USER_BURST="100000",
        ECHONATS_LOG_FORMAT="text",
        ECHONATS_LOCAL_ISSUER_PORT="0",
    )
    if data_dir is None:
        args = ("--ephemeral", *args)
    else:
        env["ECHONATS_DATA_DIR"] = str(data_dir)
    process = _start(env, args)
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
