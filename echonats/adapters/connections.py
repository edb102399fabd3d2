"""Connections to NATS, PostgreSQL and Redis, and the readiness probes over them.

Driver exceptions stop here: callers see ``Unavailable`` with the dependency named.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
import nats
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from redis.exceptions import RedisError

from echonats.model.errors import Unavailable
from echonats.settings import Settings

log = logging.getLogger(__name__)


ReconnectListener = Callable[[], Awaitable[None]]


async def connect_nats(
    settings: Settings, *, name: str, reconnect_listeners: list[ReconnectListener] | None = None
) -> NatsClient:
    """Connect; every listener is called after each successful reconnect (e.g. to catch up on
    republished messages that could not reach us meanwhile)."""
    url, _, _ = settings.require_service_urls()

    client: NatsClient | None = None

    async def on_disconnect() -> None:
        if client is not None and not (client.is_closed or client.is_draining):
            log.warning("NATS disconnected; reconnecting")

    async def on_reconnect() -> None:
        log.info("NATS reconnected")
        for listener in reconnect_listeners or []:
            try:
                await listener()
            except Exception:
                log.exception("reconnect listener failed")

    async def on_error(exc: Exception) -> None:
        log.warning("NATS error: %s", exc)

    try:
        client = await nats.connect(
            servers=[u.strip() for u in url.split(",")],
            name=name,
            connect_timeout=settings.nats.connect_timeout_s,
            # Never give up: readiness reports the outage and recovers by itself when NATS returns.
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise Unavailable(f"cannot connect to NATS at {url}: {exc}") from exc
    return client


async def create_pg_pool(settings: Settings) -> asyncpg.Pool:
    _, database_url, _ = settings.require_service_urls()
    try:
        pool = await asyncpg.create_pool(
            database_url, min_size=settings.postgres.pool_min, max_size=settings.postgres.pool_max
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise Unavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


def create_redis(settings: Settings) -> aioredis.Redis:
    _, _, redis_url = settings.require_service_urls()
    # from_url opens no socket: connections are made lazily by the pool.
    return aioredis.from_url(
        redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=15
    )


class NatsProbe:
    name = "nats"

    def __init__(self, client: NatsClient, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def check(self) -> None:
        if not self._client.is_connected:
            raise Unavailable("NATS: not connected")
        try:
            await asyncio.wait_for(self._client.flush(), self._timeout_s)  # a PING/PONG round trip
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"NATS: {exc or type(exc).__name__}") from exc


class PostgresProbe:
    name = "postgres"

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def check(self) -> None:
        try:
            await self._pool.fetchval("SELECT 1", timeout=self._timeout_s)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise Unavailable(f"PostgreSQL: {exc or type(exc).__name__}") from exc


class RedisProbe:
    name = "redis"

    def __init__(self, client: aioredis.Redis, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def check(self) -> None:
        try:
            await asyncio.wait_for(self._client.ping(), timeout=self._timeout_s)
        except (OSError, TimeoutError, RedisError) as exc:
            raise Unavailable(f"Redis: {exc or type(exc).__name__}") from exc
