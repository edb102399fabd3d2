"""WebSocket test harness: real uvicorn gateways (in-process or as processes) and a small client."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from echonats.bootstrap.gateway import create_gateway_app
from echonats.devstack.stack import free_port
from echonats.gateway.listener import listening_socket
from echonats.gateway.server import uvicorn_config
from echonats.settings import Settings, with_overrides


@asynccontextmanager
async def serve_gateway(settings: Settings) -> AsyncIterator[str]:
    """A real uvicorn gateway in this event loop on a free port; yields its ws:// base URL."""
    port = free_port()
    # Keeps the other gateway settings (limits, timeouts) a test may have set.
    gateway = with_overrides(
        settings, gateway=dataclasses.replace(settings.gateway, host="127.0.0.1", port=port)
    )
    server = uvicorn.Server(uvicorn_config(create_gateway_app(gateway), gateway))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    sock = listening_socket(gateway)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("gateway exited during start-up")
                await asyncio.sleep(0.01)  # polling the started flag with a deadline
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextmanager
def gateway_process(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`echonats gateway` as a separate process; yields it and its http:// base URL once ready."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "echonats", "gateway"],
        env={**os.environ, **env, "ECHONATS_GATEWAY_PORT": str(port)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Client:
    """A JSON WebSocket client that keeps every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.close_code: int | None = None

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self._arrived.set()

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    async def wait(self, predicate: Any, timeout_s: float = 10.0, what: str = "frames") -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                if self._reader.done() and not predicate():
                    raise AssertionError(
                        f"connection closed ({self.close_code}) before {what}: {self.frames[-5:]}"
                    )
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_for_type(self, kind: str, count: int = 1, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        await self.wait(lambda: len(self.of_type(kind)) >= count, timeout_s, f"{count} {kind} frame(s)")
        return self.of_type(kind)

    async def wait_closed(self, timeout_s: float = 10.0) -> int | None:
        async with asyncio.timeout(timeout_s):
            await asyncio.shield(self._reader)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


@asynccontextmanager
async def ws_client(base: str, token: str | None, **options: Any) -> AsyncIterator[Client]:
    url = f"{base}/ws" + (f"?token={token}" if token else "")
    async with connect(url, open_timeout=10, **options) as ws:
        client = Client(ws)
        try:
            yield client
        finally:
            await client.close()


# -- Load and fault harness (appended; its imports sit here so the code above stays untouched) --------

import contextlib  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import nats  # noqa: E402
from nats.aio.client import Client as NatsClient  # noqa: E402

from echonats.adapters.dev_tokens import mint_dev_token  # noqa: E402
from echonats.devstack.stack import find_nats_server, set_parent_death_signal  # noqa: E402
from tests.integration.api import bearer, wait_for  # noqa: E402


@dataclass
class HttpTenant:
    """A tenant of a real gateway (``tenant_gateway``), driven over HTTP."""

    http: httpx.AsyncClient
    settings: Settings
    id: str
    owner: str
    admin_token: str

    def token(self, user: str) -> str:
        return mint_dev_token(self.settings.auth, tenant_id=self.id, user_id=user, name=user, roles=())

    def auth(self, user: str | None = None) -> dict[str, str]:
        return bearer(self.token(user or self.owner))

    async def set_limits(self, **limits: int) -> None:  # also evicts the gateway's cached limits
        url = f"/api/v1/admin/tenants/{self.id}"
        patched = await self.http.patch(url, json=limits, headers=bearer(self.admin_token))
        assert patched.status_code == 200, patched.text

    async def history_ids(self, channel: str) -> list[int]:
        """Every message id of the channel, newest first."""
        ids: list[int] = []
        url = f"/api/v1/channels/{channel}/messages?limit=100"
        while True:
            page = await self.page(url)
            ids += [m["id"] for m in page["items"]]
            if not page["hasMore"]:
                return ids
            url = f"/api/v1/channels/{channel}/messages?limit=100&before={page['nextCursor']}"

    async def page(self, url: str) -> dict[str, Any]:
        """A history page; asked again while refused (503), within 30 s."""
        page: dict[str, Any] = {}

        async def fetched() -> bool:
            nonlocal page
            response = await self.http.get(url, headers=self.auth())
            page = response.json()
            return response.status_code == 200

        await wait_for(fetched, timeout_s=30, what=f"a history page ({url})")
        return page


@asynccontextmanager
async def tenant_gateway(settings: Settings, admin_token: str) -> AsyncIterator[tuple[str, HttpTenant, str]]:
    """``serve_gateway``, a tenant made through its admin API (no tenant rate limit to speak of) and a
    public channel: yields the ws:// base URL, the tenant and the channel id."""
    async with (
        serve_gateway(settings) as base,
        httpx.AsyncClient(base_url=base.replace("ws://", "http://"), timeout=30) as http,
    ):
        body = {"name": "Acme", "adminEmail": "owner@example.com", "adminDisplayName": "Owner"}
        created = await http.post("/api/v1/admin/tenants", json=body, headers=bearer(admin_token))
        assert created.status_code == 201, created.text
        tenant = HttpTenant(http, settings, created.json()["id"], created.json()["adminUserId"], admin_token)
        await tenant.set_limits(maxMessagesPerSecond=100_000)
        made = await http.post(
            "/api/v1/channels", json={"name": "c", "isPrivate": False}, headers=tenant.auth()
        )
        assert made.status_code == 201, made.text
        yield base, tenant, made.json()["id"]


@dataclass(frozen=True)
class Attempt:
    transport: str
    nonce: str
    started: float
    ended: float
    message_id: int | None  # None: not acknowledged
    outcome: str  # "ack", "<HTTP status> <code>" (REST) or the error frame's code (WebSocket)


async def rest_send(tenant: HttpTenant, user: str, channel: str, nonce: str) -> Attempt:
    """One send over REST with ``nonce`` as body and nonce."""
    started, path = time.monotonic(), f"/api/v1/channels/{channel}/messages"
    try:
        response = await tenant.http.post(
            path, json={"body": nonce, "nonce": nonce}, headers=tenant.auth(user)
        )
    except httpx.HTTPError as exc:
        return Attempt("rest", nonce, started, time.monotonic(), None, type(exc).__name__)
    ok, body = response.status_code == 201, response.json()
    outcome = "ack" if ok else f"{response.status_code} {body['error']['code']}"
    return Attempt("rest", nonce, started, time.monotonic(), body["id"] if ok else None, outcome)


async def ws_send(client: Client, channel: str, nonce: str) -> Attempt:
    """One send over a WebSocket, waiting for its ack or error frame."""
    started, seen = time.monotonic(), len(client.frames)
    await client.send(type="send", channelId=channel, body=nonce, nonce=nonce)

    def reply() -> dict[str, Any]:
        return next((f for f in client.frames[seen:] if nonce in (f.get("nonce"), f.get("ref"))), {})

    await client.wait(lambda: bool(reply()), timeout_s=20, what=f"the reply to {nonce}")
    ok = reply()["type"] == "ack"
    outcome = "ack" if ok else str(reply()["code"])
    return Attempt("ws", nonce, started, time.monotonic(), reply()["messageId"] if ok else None, outcome)


@dataclass
class Load:
    """Senders in the background, every attempt recorded; ``retry`` resends a nonce until acked."""

    attempts: list[Attempt] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(
        self, name: str, send: Callable[[str], Awaitable[Attempt]], *, retry: bool, pause_s: float
    ) -> None:
        async def run() -> None:
            n = 0
            while not self.stop.is_set():
                n += 1
                while True:
                    self.attempts.append(attempt := await send(f"{name}-{n}"))
                    await asyncio.sleep(pause_s)  # pacing the load, not synchronising
                    if attempt.message_id is not None or not retry:
                        break

        self.tasks.append(asyncio.create_task(run()))

    def acked(self, transport: str | None = None, after: float = 0.0) -> dict[int, str]:
        """Acked message ids (of sends started at or after ``after``) and their nonces."""
        return {
            a.message_id: a.nonce
            for a in self.attempts
            if a.message_id is not None and a.started >= after and transport in (None, a.transport)
        }

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


@dataclass
class NatsCluster:
    urls: list[str] = field(default_factory=list)
    monitors: dict[str, str] = field(default_factory=dict)  # server name -> monitoring URL
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


@contextmanager
def nats_cluster(directory: Path, size: int = 3) -> Iterator[NatsCluster]:
    """``size`` nats-servers with JetStream routed into one cluster (servers n1..nN); all stopped on exit."""
    ports = {f"n{i}": (free_port(), free_port(), free_port()) for i in range(1, size + 1)}
    routes = ", ".join(f"nats-route://127.0.0.1:{route}" for _, route, _ in ports.values())
    cluster = NatsCluster()
    try:
        for name, (client, route, monitor) in ports.items():
            conf = directory / f"{name}.conf"
            conf.write_text(
                f"server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n"
                f'jetstream {{\n  store_dir: "{directory / name}"\n}}\n'
                f"cluster {{\n  name: t\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n"
            )
            with open(directory / f"{name}.log", "wb") as log:
                cluster.processes[name] = subprocess.Popen(
                    [find_nats_server(), "-c", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=set_parent_death_signal,
                )
            cluster.urls.append(f"nats://127.0.0.1:{client}")
            cluster.monitors[name] = f"http://127.0.0.1:{monitor}"
        yield cluster
    finally:
        for process in cluster.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in cluster.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def connect_when_ready(cluster: NatsCluster) -> NatsClient:
    """A client, once every node reports healthy and JetStream answers (the cluster has a meta leader)."""
    nc: NatsClient | None = None
    async with httpx.AsyncClient(timeout=1) as http:

        async def ready() -> bool:
            nonlocal nc
            try:
                if not all(
                    [(await http.get(f"{m}/healthz")).status_code == 200 for m in cluster.monitors.values()]
                ):
                    return False
                nc = nc or await nats.connect(
                    servers=cluster.urls, name="test-observer", reconnect_time_wait=0.2
                )
                await nc.jetstream(timeout=1).account_info()
            except (httpx.HTTPError, nats.errors.Error, OSError, TimeoutError):
                return False
            return True

        await wait_for(ready, timeout_s=30, what="a NATS cluster with a JetStream meta leader")
    assert nc is not None
    return nc


async def node_of(cluster: NatsCluster, connection_name: str) -> str:
    """The server a named NATS connection (e.g. ``echonats-gateway``) is connected to."""
    async with httpx.AsyncClient(timeout=2) as http:
        for node, monitor in cluster.monitors.items():
            connections = (await http.get(f"{monitor}/connz")).json().get("connections") or []
            if any(c.get("name") == connection_name for c in connections):
                return node
    raise AssertionError(f"no node serves {connection_name}")


async def until(check: Callable[[], bool], *, timeout_s: float = 10, what: str) -> None:
    """``wait_for`` with a plain (not async) condition."""

    async def checked() -> bool:
        return check()

    await wait_for(checked, timeout_s=timeout_s, what=what)


async def wait_ready(http: httpx.AsyncClient, down: str | None) -> None:
    """Until the gateway's /ready names ``down`` as failing (503), or is 200 with ``down=None``."""

    async def matches() -> bool:
        response = await http.get("/ready")
        if down is None:
            return response.status_code == 200
        return response.status_code == 503 and response.json()["checks"][down] != "ok"

    await wait_for(matches, timeout_s=20, what=f"/ready: {down or 'everything'} {'down' if down else 'up'}")


async def metric(http: httpx.AsyncClient, name: str) -> float:
    """One unlabelled sample of a gateway's /metrics (0 when absent)."""
    found = re.search(rf"^{name} (\S+)$", (await http.get("/metrics")).text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def lead_stream_on(nc: NatsClient, stream: str, node: str, consumer: str | None = None) -> None:
    """Step the stream's (or its ``consumer``'s) leader down, preferring ``node``, until ``node`` leads."""
    request = json.dumps({"placement": {"preferred": node}}).encode()
    target = f"{stream}.{consumer}" if consumer else stream

    async def leads() -> bool:
        js = nc.jetstream(timeout=2)
        try:
            info = await (js.consumer_info(stream, consumer) if consumer else js.stream_info(stream))
        except nats.errors.TimeoutError:  # no leader answers while an election runs: ask again
            return False
        if info.cluster and info.cluster.leader == node:
            return True
        with contextlib.suppress(nats.errors.TimeoutError):  # an election takes a moment
            await nc.request(
                f"$JS.API.{'CONSUMER' if consumer else 'STREAM'}.LEADER.STEPDOWN.{target}", request
            )
        return False

    await wait_for(leads, timeout_s=30, what=f"{node} to lead {target}")
