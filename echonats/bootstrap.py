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
from echonats.core.ports import DependencyProbe
from echonats.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Resources:
    nats: NatsClient
    pg: asyncpg.Pool
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


def create_gateway_app(settings: Settings) -> Litestar:
    from echonats.gateway.app import build_app

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_resources(settings, name="echonats-gateway") as resources:
            app.state.resources = resources
            app.state.probes = resources.probes(settings.gateway.ready_timeout_s)
            app.state.ready_timeout_s = settings.gateway.ready_timeout_s
            yield

    return build_app(settings, lifespan=[lifespan])
