"""Composition root: the only place that turns Settings into connected adapters and apps."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from litestar import Litestar
from nats.aio.client import Client as NatsClient

from echonats.adapters.connections import (
    NatsProbe,
    PostgresProbe,
    RedisProbe,
    connect_nats,
    create_pg_pool,
    create_redis,
)
from echonats.adapters.jetstream import (
    JetStreamEventPublisher,
    JetStreamMessageLog,
    ensure_streams,
    next_message_id,
)
from echonats.adapters.jwt_auth import JwtVerifier
from echonats.adapters.postgres_store import PostgresStore
from echonats.core.ports import DependencyProbe
from echonats.core.services import Services
from echonats.gateway.invalidation import listen_for_revocations
from echonats.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Resources:
    nats: NatsClient
    pg: asyncpg.Pool[asyncpg.Record]
    redis: aioredis.Redis

    def probes(self, timeout_s: float) -> list[DependencyProbe]:
        return [
            NatsProbe(self.nats, timeout_s),
            PostgresProbe(self.pg, timeout_s),
            RedisProbe(self.redis, timeout_s),
        ]


@contextlib.asynccontextmanager
async def open_resources(settings: Settings, *, name: str) -> AsyncIterator[Resources]:
    async with contextlib.AsyncExitStack() as stack:
        nc = await connect_nats(settings, name=name)
        stack.push_async_callback(_close_nats, nc)
        pool = await create_pg_pool(settings)
        stack.push_async_callback(pool.close)
        redis_client = create_redis(settings)
        stack.push_async_callback(redis_client.aclose)
        yield Resources(nats=nc, pg=pool, redis=redis_client)


async def _close_nats(nc: NatsClient) -> None:
    if nc.is_closed:
        return
    try:
        await nc.drain()
    except Exception:
        log.warning("NATS drain failed; closing", exc_info=True)
        await nc.close()


async def prepare_streams(settings: Settings, resources: Resources) -> None:
    """Idempotent: every process may call it at start (streams and their first sequence)."""
    await ensure_streams(
        resources.nats.jetstream(),
        replicas=settings.nats.stream_replicas,
        next_message_id=await next_message_id(resources.pg),
    )


def build_services(resources: Resources) -> Services:
    return Services.build(
        store=PostgresStore(resources.pg),
        log=JetStreamMessageLog(resources.nats),
        publisher=JetStreamEventPublisher(resources.nats, resources.pg),
    )


def create_gateway_app(settings: Settings) -> Litestar:
    from echonats.gateway.app import build_app

    verifier = JwtVerifier(settings.auth)  # validates the auth settings before anything connects

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_resources(settings, name="echonats-gateway") as resources:
            await prepare_streams(settings, resources)
            services = build_services(resources)
            await listen_for_revocations(resources.nats, services.access)
            app.state.resources = resources
            app.state.services = services
            app.state.verifier = verifier
            app.state.admin_token = settings.auth.admin_token
            app.state.probes = resources.probes(settings.gateway.ready_timeout_s)
            app.state.ready_timeout_s = settings.gateway.ready_timeout_s
            yield

    return build_app(lifespan=[lifespan])
