"""Wires a gateway process: the Litestar app with its lifespan (connections, use cases, fanout hub,
revocations, presence) and the uvicorn server it runs on."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import uvicorn
from litestar import Litestar

from echonats.adapters.jwt_auth import JwtVerifier
from echonats.adapters.nats.event_publisher import JetStreamFeedLog
from echonats.adapters.nats.live import NatsAnnouncer, NatsLiveFeed
from echonats.adapters.nats.message_log import JetStreamMessageLog
from echonats.adapters.nats.streams import DUPLICATE_WINDOW
from echonats.adapters.redis.ratelimit import RedisRateLimiter
from echonats.adapters.redis.realtime import RedisPresenceStore, RedisTypingThrottle
from echonats.bootstrap.resources import Resources, build_services, open_resources, prepare_streams
from echonats.core.ports import TokenVerifier
from echonats.core.services import Services
from echonats.gateway.app import build_app
from echonats.gateway.fanout import Hub
from echonats.gateway.feed import FeedRouter
from echonats.gateway.invalidation import listen_for_revocations
from echonats.gateway.limits import HandshakeGuard, SocketCounter
from echonats.gateway.listener import inherited_socket, listening_socket
from echonats.gateway.presence import PresenceTracker
from echonats.gateway.server import check_gateway_settings, uvicorn_config
from echonats.gateway.web import WebClientConfig
from echonats.gateway.ws import Realtime
from echonats.settings import Settings

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def realtime_for(
    settings: Settings, resources: Resources, services: Services, verifier: TokenVerifier
) -> AsyncIterator[Realtime]:
    rt = settings.realtime
    feed = NatsLiveFeed(resources.nats)
    announcer = NatsAnnouncer(resources.nats)
    hub = Hub(feed, JetStreamMessageLog(resources.nats), services.access, replay_limit=rt.replay_limit)
    resources.reconnect_listeners.append(hub.catch_up)
    revocations = await listen_for_revocations(
        feed, services.access, services.tenant_limits, services.membership.members, hub
    )
    presence_store = RedisPresenceStore(
        resources.redis, ttl_s=rt.presence_ttl_s, idle_after_s=rt.presence_idle_after_s
    )
    tracker = PresenceTracker(presence_store, announcer, heartbeat_s=rt.presence_heartbeat_s)
    tracker.start()
    feed_router = FeedRouter(
        feed, JetStreamFeedLog(resources.nats), replay_limit=rt.replay_limit, receives=hub.receives
    )
    try:
        yield Realtime(
            services=services,
            hub=hub,
            feed_router=feed_router,
            feed=feed,
            typing_publisher=announcer,
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
        await revocations.cancel()
        await hub.close()
        await feed_router.close()


def create_gateway_app(settings: Settings) -> Litestar:
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
            services = build_services(
                resources, limiter, self_service_workspaces=settings.gateway.self_service_workspaces
            )
            async with realtime_for(settings, resources, services, verifier) as realtime:
                app.state.resources = resources
                app.state.services = services
                app.state.realtime = realtime
                app.state.presence_store = realtime.presence.store
                app.state.verifier = verifier
                app.state.admin_token = settings.auth.admin_token
                app.state.web_client = WebClientConfig(
                    oidc_issuer=settings.gateway.web_oidc_issuer,
                    oidc_client_id=settings.gateway.web_oidc_client_id,
                    dev_tokens=settings.auth.jwt_secret is not None,
                )
                app.state.probes = resources.probes(settings.gateway.ready_timeout_s)
                app.state.ready_timeout_s = settings.gateway.ready_timeout_s
                yield

    return build_app(
        lifespan=[lifespan],
        cors_origins=settings.gateway.cors_origin_list,
        web_client=settings.gateway.web_client,
    )


def serve_gateway(settings: Settings, *, inherited_fds: Sequence[int] = ()) -> int:
    """Serve on ECHONATS_GATEWAY_HOST:PORT, or on listening sockets inherited from `echonats run`."""
    check_gateway_settings(settings)
    server = uvicorn.Server(uvicorn_config(create_gateway_app(settings), settings))
    sockets = [inherited_socket(fd) for fd in inherited_fds] or [listening_socket(settings)]
    try:
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
    # uvicorn swallows lifespan start-up failures into should_exit; report them as a failure exit.
    return 0 if server.started else 1
