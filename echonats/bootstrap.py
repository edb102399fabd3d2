"""Composition root: the only place that turns Settings into connected adapters and apps."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from litestar import Litestar
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
from echonats.adapters.jetstream import (
    DUPLICATE_WINDOW,
    JetStreamEventPublisher,
    JetStreamMessageLog,
    ensure_streams,
    next_message_id,
)
from echonats.adapters.jwt_auth import JwtVerifier
from echonats.adapters.postgres_store import PostgresStore
from echonats.adapters.redis_ratelimit import RedisRateLimiter
from echonats.adapters.redis_realtime import RedisPresenceStore, RedisTypingThrottle
from echonats.core.ports import DependencyProbe, RateLimiter, TokenVerifier
from echonats.core.services import Services
from echonats.gateway.fanout import Hub
from echonats.gateway.invalidation import listen_for_revocations
from echonats.gateway.limits import HandshakeGuard, SocketCounter
from echonats.gateway.presence import PresenceTracker
from echonats.gateway.ws import Realtime
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


def build_services(resources: Resources, limiter: RateLimiter | None = None) -> Services:
    return Services.build(
        store=PostgresStore(resources.pg),
        log=JetStreamMessageLog(resources.nats),
        publisher=JetStreamEventPublisher(resources.nats, resources.pg),
        limiter=limiter,
    )


@contextlib.asynccontextmanager
async def realtime_for(
    settings: Settings, resources: Resources, services: Services, verifier: TokenVerifier
) -> AsyncIterator[Realtime]:
    rt = settings.realtime
    hub = Hub(
        resources.nats, JetStreamMessageLog(resources.nats), services.access, replay_limit=rt.replay_limit
    )
    resources.reconnect_listeners.append(hub.catch_up)
    await listen_for_revocations(
        resources.nats, services.access, services.tenant_limits, services.membership.members, hub
    )
    presence_store = RedisPresenceStore(
        resources.redis, ttl_s=rt.presence_ttl_s, idle_after_s=rt.presence_idle_after_s
    )
    tracker = PresenceTracker(presence_store, resources.nats, heartbeat_s=rt.presence_heartbeat_s)
    tracker.start()
    try:
        yield Realtime(
            services=services,
            hub=hub,
            nc=resources.nats,
            presence=tracker,
            typing=RedisTypingThrottle(resources.redis, interval_s=rt.typing_interval_s),
            send_queue=rt.send_queue,
            max_frame_bytes=rt.max_frame_bytes,
            close_timeout_s=rt.close_timeout_s,
            verifier=verifier,
            handshakes=HandshakeGuard(rt.handshakes_per_ip_per_second, rt.handshakes_per_ip_burst),
            sockets=SocketCounter(rt.max_sockets_per_user),
        )
    finally:
        await tracker.stop()
        await hub.close()


def create_gateway_app(settings: Settings) -> Litestar:
    from echonats.gateway.app import build_app

    verifier = JwtVerifier(settings.auth)  # validates the auth settings before anything connects

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_resources(settings, name="echonats-gateway") as resources:
            await prepare_streams(settings, resources)
            limiter = RedisRateLimiter(
                resources.redis,
                user_per_second=settings.realtime.rate_user_per_second,
                user_burst=settings.realtime.rate_user_burst,
                resend_window_s=DUPLICATE_WINDOW.total_seconds(),  # resends within it are free
            )
            services = build_services(resources, limiter)
            async with realtime_for(settings, resources, services, verifier) as realtime:
                app.state.resources = resources
                app.state.services = services
                app.state.realtime = realtime
                app.state.presence_store = realtime.presence.store
                app.state.verifier = verifier
                app.state.admin_token = settings.auth.admin_token
                app.state.probes = resources.probes(settings.gateway.ready_timeout_s)
                app.state.ready_timeout_s = settings.gateway.ready_timeout_s
                yield

    return build_app(lifespan=[lifespan])
