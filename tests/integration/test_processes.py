"""Real `python -m echonats` processes: two gateways sharing NATS, a persist worker and a gateway killed.

Every wait polls a condition with a deadline; every process is stopped (or reaped) even on failure.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.js.errors import NotFoundError

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.adapters.nats import subjects
from echonats.devstack.stack import StackUrls
from echonats.settings import AuthSettings, load_settings
from tests.integration.api import bearer, wait_for
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import Client, gateway_process, ws_client

Process = subprocess.Popen[bytes]


@pytest.fixture
async def db(stack_urls: StackUrls) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    assert stack_urls.database_url
    conn = await asyncpg.connect(stack_urls.database_url)
    try:
        yield conn
    finally:
        await conn.close()


def _stop(process: Process) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _sigkill(process: Process) -> None:
    process.kill()
    process.wait(timeout=10)


@contextmanager
def worker_process(env: dict[str, str]) -> Iterator[Process]:
    """`echonats worker` (persist consumer, outbox relay, presence sweeper) as a separate process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "echonats", "worker"],
        env={**os.environ, **env, "ECHONATS_WORKER_METRICS_PORT": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        _stop(process)


@asynccontextmanager
async def gateways(env: dict[str, str], count: int) -> AsyncIterator[list[tuple[Process, str]]]:
    """``count`` gateway processes, each answering 200 on /ready."""
    with ExitStack() as stack:
        started = [stack.enter_context(gateway_process(env)) for _ in range(count)]
        await asyncio.gather(*(wait_ready(process, base) for process, base in started))
        yield started


async def wait_ready(process: Process, base: str, timeout_s: float = 30.0) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2.0) as http:

        async def ready() -> bool:
            assert process.poll() is None, f"gateway {base} exited with {process.returncode}"
            try:
                return (await http.get("/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(ready, timeout_s=timeout_s, what=f"{base}/ready")


async def wait_worker_started(process: Process, nats_url: str, timeout_s: float = 30.0) -> None:
    """The worker has created its durable persist consumer (its consumers are running)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()

        async def started() -> bool:
            assert process.poll() is None, f"worker exited with {process.returncode}"
            try:
                await js.consumer_info(subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER)
            except NotFoundError:
                return False
            return True

        await wait_for(started, timeout_s=timeout_s, what="the worker's persist consumer")
    finally:
        await nc.close()


@dataclass
class Tenant:
    """A tenant created through a gateway process's REST API."""

    http: httpx.AsyncClient
    auth: AuthSettings
    tenant_id: str
    owner_id: str

    def token(self, user_id: str) -> str:
        return mint_dev_token(self.auth, tenant_id=self.tenant_id, user_id=user_id, name=user_id.title())

    def as_user(self, user_id: str | None = None) -> dict[str, str]:
        return bearer(self.token(user_id or self.owner_id))

    async def channel(self, name: str, *, private: bool = False) -> str:
        response = await self.http.post(
            "/api/v1/channels", json={"name": name, "isPrivate": private}, headers=self.as_user()
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def send(self, channel_id: str, body: str, *, by: str | None = None) -> int:
        response = await self.http.post(
            f"/api/v1/channels/{channel_id}/messages", json={"body": body}, headers=self.as_user(by)
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def history_ids(self, channel_id: str, base: str) -> list[int]:
        """Every id in the channel's REST history read from ``base``, oldest first."""
        ids: list[int] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            response = await self.http.get(
                f"{base}/api/v1/channels/{channel_id}/messages", params=params, headers=self.as_user()
            )
            assert response.status_code == 200, response.text
            page = response.json()
            ids += [item["id"] for item in page["items"]]
            if not page["hasMore"]:
                return ids[::-1]
            params["before"] = page["nextCursor"]


async def create_tenant(http: httpx.AsyncClient, env: dict[str, str]) -> Tenant:
    admin = bearer(ADMIN_TOKEN)
    body = {"name": "Procs", "adminEmail": "owner@example.com", "adminDisplayName": "Owner"}
    response = await http.post("/api/v1/admin/tenants", json=body, headers=admin)
    assert response.status_code == 201, response.text
    tenant = response.json()
    # The tenant limit (default 100/s, burst one second's worth) is not what these tests are about.
    limits = {"maxMessagesPerSecond": 1_000_000}
    patched = await http.patch(f"/api/v1/admin/tenants/{tenant['id']}", json=limits, headers=admin)
    assert patched.status_code == 200, patched.text
    return Tenant(http, load_settings(env).auth, tenant["id"], tenant["adminUserId"])


def message_ids(client: Client, channel_id: str | None = None) -> list[int]:
    frames = client.of_type("message")
    return [f["payload"]["messageId"] for f in frames if channel_id in (None, f["channelId"])]


async def barrier(client: Client) -> None:
    """Everything the gateway queued for ``client`` before the pong has arrived."""
    pongs = len(client.of_type("pong"))
    await client.send(type="ping")
    await client.wait_for_type("pong", count=pongs + 1)


async def subscribe(client: Client, channel_id: str, **extra: Any) -> None:
    done = len(client.of_type("subscribed"))
    await client.send(type="subscribe", channelId=channel_id, **extra)
    await client.wait_for_type("subscribed", count=done + 1)


async def test_two_gateway_processes_deliver_every_message_once_in_history_order(
    env: dict[str, str],
) -> None:
    total = 200
    async with (
        gateways(env, 2) as [(_, base_a), (_, base_b)],
        httpx.AsyncClient(base_url=base_a, timeout=30) as http,
    ):
        tenant = await create_tenant(http, env)
        general = await tenant.channel("general")
        secret = await tenant.channel("secret", private=True)
        ws_a, ws_b = base_a.replace("http", "ws", 1), base_b.replace("http", "ws", 1)
        async with (
            ws_client(ws_a, tenant.token("alice")) as alice,
            ws_client(ws_a, tenant.token("amy")) as amy,
            ws_client(ws_b, tenant.token("bea")) as bea,
            ws_client(ws_b, tenant.token(tenant.owner_id)) as owner,
            ws_client(ws_b, tenant.token("eve")) as eve,
        ):
            await asyncio.gather(subscribe(amy, general), subscribe(bea, general), subscribe(owner, secret))
            await eve.send(type="subscribe", channelId=secret)
            error = (await eve.wait_for_type("error"))[0]
            assert (error["code"], error["ref"]) == ("not_found", secret)

            for i in range(total):
                await alice.send(type="send", channelId=general, body=f"m{i}", nonce=f"n{i}")
            acks = await alice.wait_for_type("ack", count=total, timeout_s=30)
            assert [a["nonce"] for a in acks] == [f"n{i}" for i in range(total)]
            acked = [a["messageId"] for a in acks]
            assert acked == sorted(set(acked))  # one sender's sends are stored in the order sent

            secret_ids = [await tenant.send(secret, f"classified {i}") for i in range(3)]
            for ws in (amy, bea):
                await ws.wait_for_type("message", count=total, timeout_s=30)
            await owner.wait_for_type("message", count=len(secret_ids))
            for ws in (amy, bea, owner, eve):
                await barrier(ws)  # nothing else is on its way: the counts below are final

            history = await tenant.history_ids(general, base_b)
            assert history == acked
            assert message_ids(amy) == history  # on A: each once, in history order
            assert message_ids(bea) == history  # on B, through NATS: the same
            assert message_ids(owner) == secret_ids
            assert eve.of_type("message") == []  # the outsider on B saw nothing of the private channel


async def test_persist_worker_killed_mid_stream_loses_and_duplicates_nothing(
    env: dict[str, str], stack_urls: StackUrls, db: asyncpg.Connection[asyncpg.Record]
) -> None:
    senders, per_sender = 20, 100
    total = senders * per_sender
    acked: list[int] = []
    assert stack_urls.nats_url
    async with gateways(env, 1) as [(_, base)], httpx.AsyncClient(base_url=base, timeout=30) as http:
        tenant = await create_tenant(http, env)
        channel = await tenant.channel("firehose")

        async def persisted() -> int:
            query = "SELECT count(*) FROM messages WHERE channel_id = $1"
            return int(await db.fetchval(query, channel))

        async def send_many(user: str) -> None:
            for i in range(per_sender):
                acked.append(await tenant.send(channel, f"{user} {i}", by=user))

        with worker_process(env) as first:
            await wait_worker_started(first, stack_urls.nats_url)
            sending = asyncio.gather(*(send_many(f"sender{s}") for s in range(senders)))
            try:

                async def a_third_persisted() -> bool:
                    if sending.done():
                        sending.result()  # a failed sender fails the test here
                    return await persisted() >= total // 3

                await wait_for(a_third_persisted, timeout_s=30, what="a third of the messages in PostgreSQL")
                _sigkill(first)
                at_kill = (len(acked), await persisted())  # (acked, persisted) when the worker died
                assert at_kill[0] < total, f"the senders were done before the kill: {at_kill}"
                with worker_process(env) as second:
                    await sending
                    assert len(acked) == total

                    async def all_acked_persisted() -> bool:
                        assert second.poll() is None, f"worker exited with {second.returncode}"
                        return await persisted() >= total

                    # Messages the killed worker had fetched but not acked come back only after the
                    # persist consumer's ack_wait (30 s): the deadline leaves room for that.
                    await wait_for(
                        all_acked_persisted, timeout_s=45, what="every acked message in PostgreSQL"
                    )
            finally:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)

    rows = await db.fetch("SELECT id FROM messages WHERE channel_id = $1", channel)
    assert {row["id"] for row in rows} == set(acked), f"killed after {at_kill} (acked, persisted)"
    counts = await db.fetchrow("SELECT count(*) AS n, count(DISTINCT id) AS d FROM messages")
    assert counts is not None
    assert counts["n"] == counts["d"] == len(set(acked)) == total  # no duplicates, no extra rows anywhere


def presence_of(client: Client, user_id: str) -> list[str]:
    return [f["payload"]["status"] for f in client.of_type("presence") if f["userId"] == user_id]


async def test_killed_gateway_turns_its_users_offline_and_they_resume_elsewhere(
    env: dict[str, str], stack_urls: StackUrls
) -> None:
    ttl = 2.0
    env = {**env, "ECHONATS_PRESENCE_TTL": str(ttl), "ECHONATS_PRESENCE_HEARTBEAT": "0.5"}
    assert stack_urls.nats_url
    with worker_process(env) as worker:
        async with (
            gateways(env, 2) as [(process_a, base_a), (_, base_b)],
            httpx.AsyncClient(base_url=base_b, timeout=30) as http,
        ):
            await wait_worker_started(worker, stack_urls.nats_url)
            tenant = await create_tenant(http, env)
            general = await tenant.channel("general")
            ws_a, ws_b = base_a.replace("http", "ws", 1), base_b.replace("http", "ws", 1)
            async with ws_client(ws_b, tenant.token("obs")) as obs:
                # Subscribing flushes B's NATS subscriptions, its tenant presence interest included.
                await subscribe(obs, general)
                async with ws_client(ws_a, tenant.token("kim")) as kim:
                    await subscribe(kim, general)
                    await obs.wait(lambda: "online" in presence_of(obs, "kim"), what="kim online")
                    for i in range(10):
                        await kim.send(type="send", channelId=general, body=f"kim {i}", nonce=f"k{i}")
                    kim_acked = [a["messageId"] for a in await kim.wait_for_type("ack", count=10)]
                    others_before = [await tenant.send(general, f"ann {i}", by="ann") for i in range(3)]
                    await kim.wait_for_type("message", count=13)
                    last_seen = message_ids(kim)[-1]
                    assert sorted(message_ids(kim)) == sorted(kim_acked + others_before)

                    _sigkill(process_a)
                    killed_at = time.monotonic()
                    meanwhile = [await tenant.send(general, f"ann late {i}", by="ann") for i in range(5)]
                    await obs.wait(
                        lambda: presence_of(obs, "kim")[-1:] == ["offline"], timeout_s=15, what="kim offline"
                    )
                    offline_after = time.monotonic() - killed_at
                    assert presence_of(obs, "kim") == ["online", "offline"]  # each change once
                    assert offline_after < ttl + 5, f"offline only after {offline_after:.1f}s"
                    await kim.wait_closed()

                history = await tenant.history_ids(general, base_b)
                assert set(kim_acked) <= set(history)
                assert history == sorted([*kim_acked, *others_before, *meanwhile])

                async with ws_client(ws_b, tenant.token("kim")) as kim:
                    await subscribe(kim, general, since=last_seen)
                    await kim.wait_for_type("message", count=len(meanwhile))
                    await barrier(kim)
                    assert message_ids(kim) == meanwhile
