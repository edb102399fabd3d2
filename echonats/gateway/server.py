"""Run one gateway process under uvicorn."""

from __future__ import annotations

import uvicorn
from litestar.types import ASGIApp

from echonats.gateway.http_limits import HttpLimits, bounded_http_protocol
from echonats.gateway.ws_framing import capture_transport
from echonats.model.errors import ConfigError
from echonats.settings import Settings


def check_gateway_settings(settings: Settings) -> None:
    settings.require_service_urls()
    if not settings.auth.jwt_secret and not settings.auth.jwks_url:
        raise ConfigError("ECHONATS_JWT_SECRET: required unless ECHONATS_JWT_JWKS_URL is set")


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        # Outermost, so it sees uvicorn's own ``send`` before Litestar wraps it (see gateway.wire).
        capture_transport(app),
        host=settings.gateway.host,
        port=settings.gateway.port,
        # httptools (uvicorn's fast parser) plus header size/time and body time limits.
        http=bounded_http_protocol(
            HttpLimits(
                max_header_bytes=settings.gateway.http_max_header_bytes,
                header_timeout_s=settings.gateway.http_header_timeout_s,
                body_timeout_s=settings.gateway.http_body_timeout_s,
            )
        ),
        # Per-message deflate compresses every frame once per socket: it would defeat encode-once fanout.
        ws_per_message_deflate=False,
        ws_max_size=settings.realtime.max_frame_bytes,  # larger frames: close 1009
        ws_ping_interval=20.0,  # protocol pings; a peer silent for ping+timeout is closed
        ws_ping_timeout=20.0,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
