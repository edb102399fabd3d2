"""Faults: PostgreSQL stopped under load, Redis restarted, one node of a 3-node NATS cluster SIGKILLed.

Each test breaks only services it started itself (a test-local LocalStack or its own nats-servers), never
the session stack. Waits poll with deadlines; processes are stopped even on failure. ``-s`` shows figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import nats
import pytest
from nats.aio.msg import Msg

from echonats.adapters.nats import subjects
from echonats.adapters.nats.persist_stream import JetStreamPersistStream
from echonats.adapters.postgres.migrations import apply_migrations
from echonats.adapters.postgres.persist_sink import PostgresPersistSink
from echonats.devstack.stack import LocalStack, StackUrls
from echonats.settings import NatsSettings, PostgresSettings, RedisSettings, Settings
from echonats.workers.persist import PersistWorker
from tests.integration.api import running_persist_worker, wait_for
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import (
    Attempt,
    Client,
    HttpTenant,
    Load,
    connect_when_ready,
    lead_stream_on,
    metric,
    nats_cluster,
    node_of,
    rest_send,
    serve_gateway,
    tenant_gateway,
    until,
    wait_ready,
    ws_client,
    ws_send,
)

PG_OUTAGE_S = 10.0


@contextmanager
def private_stack(**services: bool) -> Iterator[tuple[LocalStack, StackUrls]]:
    """Only the named services, private to one test: stopping them disturbs no other test."""
    stack = LocalStack(**{"nats": False, "postgres": False, "redis": False, **services}, durable=False)
    urls = stack.start()
    try:
        yield stack, urls
    finally:
        stack.stop()


async def assert_persisted_exactly_once(url: str, channel: str, acked: dict[int, str]) -> None:
    async def rows() -> list[tuple[int, str]]:
        conn = await asyncpg.connect(url)
        try:
            found = await conn.fetch(
                "SELECT id, nonce FROM messages WHERE channel_id = $1 ORDER BY id", channel
            )
        finally:
            await conn.close()
        return [(r["id"], r["nonce"]) for r in found]

    async def caught_up() -> bool:
        return {i for i, _ in await rows()} >= set(acked)

    await wait_for(caught_up, timeout_s=30, what="every acked message in PostgreSQL")
    stored = await rows()
    assert dict(stored) == acked  # the acked ids, each with its own nonce: nothing lost, nothing extra
    assert len({nonce for _, nonce in stored}) == len(stored)  # and no message stored twice


# -- PostgreSQL ----------------------------------------------------------------------------------------


@asynccontextmanager
async def pg_under_load(
    gateway_settings: Settings,
) -> AsyncIterator[tuple[LocalStack, HttpTenant, str, Load]]:
    """Gateway and persist worker on a private PostgreSQL; a REST and a WebSocket sender keep sending.
    On yield the tenant's cached limits and the WebSocket sender's cached access were just read."""
    with private_stack(postgres=True) as (stack, urls):
        await apply_migrations(urls.database_url or "")
        settings = dataclasses.replace(gateway_settings, postgres=PostgresSettings(url=urls.database_url))
        async with (
            tenant_gateway(settings, ADMIN_TOKEN) as (base, tenant, channel),
            running_persist_worker(settings),
            ws_client(base, tenant.token("ws-sender")) as ws,
        ):
            load = Load()
            load.start("r", lambda n: rest_send(tenant, "rest-sender", channel, n), retry=False, pause_s=0.02)
            try:
                await until(lambda: len(load.acked("rest")) >= 10, what="REST sends acked")
                await tenant.set_limits(maxMessagesPerSecond=100_000)  # evicts the cached limits
                load.start("w", lambda n: ws_send(ws, channel, n), retry=False, pause_s=0.02)
                await until(lambda: len(load.acked("ws")) >= 1, what="a first WebSocket ack")
                yield stack, tenant, channel, load
            finally:
                await load.finish()


def outage_summary(load: Load, down: float, up: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for transport in ("rest", "ws"):
        during = [a for a in load.attempts if a.transport == transport and down <= a.started < up]
        acks = [a.ended - down for a in during if a.message_id is not None]
        refused = [a.started - down for a in during if a.message_id is None]
        out[transport] = {
            "attempts": len(during),
            "acked": len(acks),
            "last_ack_s": round(max(acks), 2) if acks else None,
            "first_refusal_s": round(min(refused), 2) if refused else None,
            "outcomes": sorted({a.outcome for a in during}),
        }
    return out


async def test_postgres_outage_under_load_loses_no_acked_message(gateway_settings: Settings) -> None:
    async with pg_under_load(gateway_settings) as (stack, tenant, channel, load):
        nc = await nats.connect(tenant.settings.nats.url or "")
        try:
            js = nc.jetstream()
            down = time.monotonic()
            await asyncio.to_thread(stack.stop_service, "postgres")
            await wait_ready(tenant.http, "postgres")

            async def worker_retried() -> bool:  # a batch that failed was nak'ed and is delivered again
                info = await js.consumer_info(subjects.MESSAGES_STREAM, subjects.PERSIST_CONSUMER)
                return (info.num_redelivered or 0) > 0

            await wait_for(worker_retried, timeout_s=PG_OUTAGE_S, what="the persist worker to retry")
            await asyncio.sleep(max(0.0, down + PG_OUTAGE_S - time.monotonic()))  # the outage's length
            restarting = time.monotonic()
            await asyncio.to_thread(stack.restart_service, "postgres")
            await wait_ready(tenant.http, None)
            up = time.monotonic()
            await until(
                lambda: min(len(load.acked(t, after=up)) for t in ("rest", "ws")) >= 5, what="acks again"
            )
            await load.finish()
            await assert_persisted_exactly_once(tenant.settings.postgres.url or "", channel, load.acked())
            assert (await js.stream_info(subjects.DEAD_LETTER_STREAM)).state.messages == 0
            assert sorted(set(await tenant.history_ids(channel))) == sorted(load.acked())
        finally:
            await nc.close()
    summary = outage_summary(load, down, restarting)
    print(
        f"\nPostgreSQL down {restarting - down:.1f}s, ready {up - restarting:.1f}s after restart: {summary}"
    )
    # Recently authorized senders keep being acked throughout (stale-but-recent caches, D21: JetStream
    # is the log); without that, REST sends got 503 at once and WebSocket sends 5 s into the outage.
    assert {a.outcome for a in load.attempts} == {"ack"}, summary
    assert min(summary["rest"]["acked"], summary["ws"]["acked"]) > 50


async def test_postgres_shutdown_mid_query_answers_unavailable(gateway_settings: Settings) -> None:
    with private_stack(postgres=True) as (stack, urls):
        url = urls.database_url or ""
        await apply_migrations(url)
        settings = dataclasses.replace(gateway_settings, postgres=PostgresSettings(url=url))
        async with (
            tenant_gateway(settings, ADMIN_TOKEN) as (base, tenant, channel),
            ws_client(base, tenant.token("ws-user")) as ws,
        ):
            await ws.send(type="ping")
            await ws.wait_for_type("pong")
            # Hold the tables both sends read first, so both are inside a query when PostgreSQL stops.
            locker = await asyncpg.connect(url)
            await locker.execute("BEGIN; LOCK TABLE tenant_members, channels IN ACCESS EXCLUSIVE MODE")
            rest = asyncio.create_task(rest_send(tenant, "rest-user", channel, "cut-rest"))
            over_ws = asyncio.create_task(ws_send(ws, channel, "cut-ws"))

            async def both_blocked() -> bool:
                waiting = await locker.fetchval("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted")
                return int(waiting) >= 2

            await wait_for(both_blocked, what="both sends blocked in PostgreSQL")
            await asyncio.to_thread(stack.stop_service, "postgres")
            outcomes = [(await rest).outcome, *await asyncio.gather(over_ws, return_exceptions=True)]
            locker.terminate()
    print(f"\nin flight when PostgreSQL stopped: {outcomes}")
    assert outcomes[0] == "503 unavailable"
    assert isinstance(outcomes[1], Attempt), outcomes[1]  # the socket was not closed on the sender
    assert outcomes[1].outcome == "unavailable"


@pytest.mark.parametrize(
    ("error", "delivered"),
    [
        # What asyncpg raises for a pooled connection that got the shutdown's FATAL while idle (seen once
        # in the outage test above; it used to kill the worker).
        (asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"), 1),
        (ConnectionRefusedError(111, "Connect call failed"), 9),  # a long outage: used to dead-letter
    ],
    ids=["driver-state-error", "ninth-attempt"],
)
async def test_persist_worker_naks_while_postgres_is_unavailable(
    settings: Settings, error: Exception, delivered: int
) -> None:
    class DyingPool:
        def acquire(self) -> DyingPool:
            return self

        async def __aenter__(self) -> None:
            raise error

        async def __aexit__(self, *_: object) -> None:
            return None

    record = {"tenantId": str(uuid.uuid4()), "channelId": str(uuid.uuid4()), "senderId": "u", "body": "b"}
    data = json.dumps({**record, "createdAt": datetime.now(UTC).isoformat()}).encode()
    nc = await nats.connect(settings.nats.url or "")
    try:
        reply = f"$JS.ACK.{subjects.MESSAGES_STREAM}.{subjects.PERSIST_CONSUMER}.{delivered}.7.7.0.0"
        answers = await nc.subscribe(reply, max_msgs=1)
        msg = Msg(nc, subject="echo.t.ch.c.msg", reply=reply, data=data)
        stream = JetStreamPersistStream(nc)
        worker = PersistWorker(stream, PostgresPersistSink(cast(Any, DyingPool())))
        assert await worker.store(stream.deliveries([msg])) is False
        # Retried later, however long the outage lasts: never dead-lettered (which would be a +TERM).
        assert (await answers.next_msg(timeout=5)).data.startswith(b"-NAK")
    finally:
        await nc.close()


# -- Redis ---------------------------------------------------------------------------------------------


def online(client: Client, user: str) -> bool:
    return {"type": "presence", "userId": user, "payload": {"status": "online"}} in client.frames


async def test_redis_restart_keeps_chat_working(gateway_settings: Settings) -> None:
    realtime = dataclasses.replace(
        gateway_settings.realtime, rate_user_per_second=1.0, rate_user_burst=3, presence_heartbeat_s=0.5
    )
    with private_stack(redis=True) as (stack, urls):
        settings = dataclasses.replace(
            gateway_settings, redis=RedisSettings(url=urls.redis_url), realtime=realtime
        )
        async with (
            tenant_gateway(settings, ADMIN_TOKEN) as (base, tenant, channel),
            ws_client(base, tenant.token("obs")) as observer,
        ):
            await observer.send(type="subscribe", channelId=channel)
            await observer.wait_for_type("subscribed")
            fail_open = await metric(tenant.http, "echonats_rate_limit_fail_open_total")
            await asyncio.to_thread(stack.stop_service, "redis")
            await wait_ready(tenant.http, "redis")
            # Rate limiting fails open: a burst well above the user's burst (3) all goes through.
            burst = [await rest_send(tenant, "sender", channel, f"down-{i}") for i in range(8)]
            assert [a.outcome for a in burst] == ["ack"] * 8
            assert await metric(tenant.http, "echonats_rate_limit_fail_open_total") >= fail_open + 8
            ids = {a.message_id for a in burst}
            await observer.wait(
                lambda: ids <= {f["payload"]["messageId"] for f in observer.of_type("message")}
            )
            async with ws_client(base, tenant.token("during")) as during:  # presence is best effort
                assert (await ws_send(during, channel, "during-1")).outcome == "ack"
                await asyncio.to_thread(stack.restart_service, "redis")
                await wait_ready(tenant.http, None)
                # The heartbeats register the socket opened during the outage; a new one is announced.
                await observer.wait(lambda: online(observer, "during"), what="'during' online")
                async with ws_client(base, tenant.token("late")) as late:
                    await observer.wait(lambda: online(observer, "late"), what="'late' online")
                    replies = [
                        a.outcome
                        for a in await asyncio.gather(*(ws_send(late, channel, f"l{i}") for i in range(6)))
                    ]
            assert observer.close_code is None  # connected throughout
    slowest = max(a.ended - a.started for a in burst)
    print(f"\nRedis down: slowest send {slowest * 1000:.0f} ms; a burst of 6 after the restart: {replies}")
    assert replies.count("rate_limited") >= 2  # limits apply again
    assert replies.count("ack") >= 1


# -- NATS cluster --------------------------------------------------------------------------------------


@pytest.mark.parametrize("victim_leads", [True, False], ids=["stream-leader", "stream-follower"])
async def test_nats_node_killed_under_load_loses_nothing(
    gateway_settings: Settings, tmp_path: Path, victim_leads: bool
) -> None:
    """Gateway A serves the reader, on the victim; gateway B, on the other nodes, takes the sends. The victim
    leads the stream (acks stop until a new leader is elected) or follows (A must repair the gap)."""
    with nats_cluster(tmp_path) as cluster:
        nc = await connect_when_ready(cluster)

        def on(urls: list[str]) -> Settings:
            return dataclasses.replace(
                gateway_settings, nats=NatsSettings(url=",".join(urls), stream_replicas=3)
            )

        try:
            async with tenant_gateway(on(cluster.urls), ADMIN_TOKEN) as (base, tenant, channel):
                victim = await node_of(cluster, "echonats-gateway")
                leader = victim if victim_leads else next(n for n in cluster.monitors if n != victim)
                await lead_stream_on(nc, subjects.MESSAGES_STREAM, leader)
                others = [
                    url for node, url in zip(cluster.monitors, cluster.urls, strict=True) if node != victim
                ]
                async with (
                    serve_gateway(on(others)) as base_b,
                    httpx.AsyncClient(base_url=base_b.replace("ws://", "http://"), timeout=30) as http_b,
                    running_persist_worker(on(cluster.urls)),
                    ws_client(base, tenant.token("reader")) as reader,
                ):
                    await reader.send(type="subscribe", channelId=channel)
                    await reader.wait_for_type("subscribed")
                    senders, load = dataclasses.replace(tenant, http=http_b), Load()
                    for s in ("a", "b"):
                        load.start(
                            s, functools.partial(rest_send, senders, s, channel), retry=True, pause_s=0.005
                        )
                    await until(lambda: len(load.acked()) >= 50, what="sends acked before the kill")
                    repaired = await metric(tenant.http, "echonats_fanout_gaps_repaired_total")
                    killed = time.monotonic()
                    cluster.processes[victim].send_signal(signal.SIGKILL)
                    await until(lambda: len(load.acked(after=killed)) >= 100, timeout_s=60, what="acks after")
                    await load.finish()
                    acked = load.acked()

                    def received() -> list[int]:
                        return [f["payload"]["messageId"] for f in reader.of_type("message")]

                    await reader.wait(
                        lambda: set(received()) >= set(acked), timeout_s=20, what="every message"
                    )
                    assert received() == sorted(acked)  # each acked message once, in id order, nothing else
                    repaired = await metric(tenant.http, "echonats_fanout_gaps_repaired_total") - repaired
                    assert sorted(await tenant.history_ids(channel)) == sorted(acked)  # pages retried on 503
                    await assert_persisted_exactly_once(gateway_settings.postgres.url or "", channel, acked)
        finally:
            await nc.close()
    first_ack = (
        min(a.ended for a in load.attempts if a.message_id is not None and a.started >= killed) - killed
    )
    refused = sorted({a.outcome for a in load.attempts if a.message_id is None})
    print(
        f"\nkilled {victim} (A's node, stream {'leader' if victim_leads else 'follower'}): first ack of a "
        f"send started after it {first_ack:.2f}s later; {len(load.attempts) - len(acked)} refused attempts "
        f"{refused} retried; {len(acked)} acked; {repaired:.0f} read back by gap repair"
    )


async def test_history_is_served_while_the_persist_consumer_fails_over(
    gateway_settings: Settings, tmp_path: Path
) -> None:
    with nats_cluster(tmp_path) as cluster:
        nc = await connect_when_ready(cluster)
        settings = dataclasses.replace(
            gateway_settings, nats=NatsSettings(url=",".join(cluster.urls), stream_replicas=3)
        )
        try:
            async with (
                tenant_gateway(settings, ADMIN_TOKEN) as (_, tenant, channel),
                running_persist_worker(settings),
            ):
                sent = await rest_send(tenant, "u", channel, "before")
                # The persist consumer's leader: a node the gateway is not connected to.
                gateway_node = await node_of(cluster, "echonats-gateway")
                victim = next(n for n in cluster.monitors if n != gateway_node)
                await lead_stream_on(nc, subjects.MESSAGES_STREAM, victim, consumer=subjects.PERSIST_CONSUMER)
                cluster.processes[victim].send_signal(signal.SIGKILL)
                started = time.monotonic()
                response = await tenant.http.get(
                    f"/api/v1/channels/{channel}/messages", headers=tenant.auth()
                )
                took = time.monotonic() - started
        finally:
            await nc.close()
    print(f"\nhistory right after the persist consumer's leader died: {response.status_code} in {took:.2f}s")
    assert response.status_code == 200, response.text
    assert [m["id"] for m in response.json()["items"]] == [sent.message_id]
