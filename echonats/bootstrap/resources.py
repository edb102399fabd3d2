"""Connections to NATS, PostgreSQL and Redis, stream provisioning, and the use cases over them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient

from echonats.adapters.connections import (
    NatsProbe,
    PostgresProbe,
    ReconnectListener,
    RedisProbe,
    connect_nats,
    create_pg_pool,
    create_redis,
)
from echonats.adapters.nats.event_publisher import JetStreamEventPublisher
from echonats.adapters.nats.message_log import JetStreamMessageLog
from echonats.adapters.nats.streams import ensure_streams
from echonats.adapters.postgres.messages import next_message_id
from echonats.adapters.postgres.outbox import PostgresOutbox
from echonats.adapters.postgres.store import PostgresStore
from echonats.core.event_sink import PublishThenForget
from echonats.core.ports import DependencyProbe, RateLimiter
from echonats.core.services import Services
from echonats.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Resources:
    nats: NatsClient
    pg: asyncpg.Pool[asyncpg.Record]
    redis: aioredis.Redis
    reconnect_listeners: list[ReconnectListener] = field(default_factory=list)

    def probes(self, timeout_s: float) -> list[DependencyProbe]:
        return [
            NatsProbe(self.nats, timeout_s),
            PostgresProbe(self.pg, timeout_s),
            RedisProbe(self.redis, timeout_s),
        ]


@contextlib.asynccontextmanager
async def open_resources(settings: Settings, *, name: str) -> AsyncIterator[Resources]:
    listeners: list[ReconnectListener] = []
    async with contextlib.AsyncExitStack() as stack:
        nc = await connect_nats(settings, name=name, reconnect_listeners=listeners)
        stack.push_async_callback(_close_nats, nc)
        pool = await create_pg_pool(settings)
        stack.push_async_callback(pool.close)
        redis_client = create_redis(settings)
        stack.push_async_callback(redis_client.aclose)
        yield Resources(nats=nc, pg=pool, redis=redis_client, reconnect_listeners=listeners)


async def _close_nats(nc: NatsClient) -> None:
    if nc.is_closed:
        return
    try:
        await nc.drain()
    except Exception as exc:  # shutting down: a failed drain must not mask the exit reason
        log.warning("NATS drain failed (%r); closing", exc)
        with contextlib.suppress(Exception):
            await nc.close()


async def prepare_streams(settings: Settings, resources: Resources) -> None:
    """Idempotent: every process may call it at start (streams and their first sequence)."""
    await ensure_streams(
        resources.nats.jetstream(),
        replicas=settings.nats.stream_replicas,
        next_message_id=await next_message_id(resources.pg),
    )


def build_services(
    resources: Resources, limiter: RateLimiter | None = None, *, self_service_workspaces: bool = False
) -> Services:
    return Services.build(
        store=PostgresStore(resources.pg),
        log=JetStreamMessageLog(resources.nats),
        # Publish after commit, then the store drops the outbox rows of what got out.
        publisher=PublishThenForget(JetStreamEventPublisher(resources.nats), PostgresOutbox(resources.pg)),
        limiter=limiter,
        self_service_workspaces=self_service_workspaces,
    )
