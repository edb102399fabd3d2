"""Typed configuration, read from ``ECHONATS_*`` environment variables at start-up.

Every field declares its variable, default and help text in one place; the loader, the
``echonats config`` listing and the README table are all derived from these declarations, so
they cannot drift apart. Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from echonats.envconfig import Variable, env, group_from_env, groups, variables_of
from echonats.model.errors import ConfigError

# Used only by `echonats run` on a local stack and by `echonats token` when no secret is set, so
# the two agree out of the box; a gateway started on its own never falls back to it.
DEV_JWT_SECRET = "echonats-local-development-secret-not-for-production"  # noqa: S105 - documented dev-only


@dataclass(frozen=True, slots=True)
class NatsSettings:
    url: str | None = field(
        default=None,
        metadata=env(
            "ECHONATS_NATS_URL",
            "NATS server URL(s), comma separated. Unset: `echonats run` starts a private nats-server.",
            schemes=("nats", "tls", "ws", "wss"),
        ),
    )
    stream_replicas: int = field(
        default=1,
        metadata=env(
            "ECHONATS_NATS_STREAM_REPLICAS",
            "JetStream replicas for echonats streams (3 on a cluster).",
            minimum=1,
            maximum=5,
        ),
    )
    connect_timeout_s: float = field(
        default=5.0,
        metadata=env(
            "ECHONATS_NATS_CONNECT_TIMEOUT", "Seconds to wait for the first NATS connection.", minimum=0.1
        ),
    )


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    url: str | None = field(
        default=None,
        metadata=env(
            "ECHONATS_DATABASE_URL",
            "PostgreSQL URL. Unset: `echonats run` starts a private PostgreSQL.",
            schemes=("postgres", "postgresql"),
        ),
    )
    pool_min: int = field(
        default=1, metadata=env("ECHONATS_DATABASE_POOL_MIN", "Minimum pooled connections.", minimum=0)
    )
    pool_max: int = field(
        default=10, metadata=env("ECHONATS_DATABASE_POOL_MAX", "Maximum pooled connections.", minimum=1)
    )


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str | None = field(
        default=None,
        metadata=env(
            "ECHONATS_REDIS_URL",
            "Redis/Valkey URL. Unset: `echonats run` starts a private Valkey.",
            schemes=("redis", "rediss", "unix"),
        ),
    )


@dataclass(frozen=True, slots=True)
class AuthSettings:
    jwt_secret: str | None = field(
        default=None,
        metadata=env(
            "ECHONATS_JWT_SECRET",
            "HS256 secret for development tokens (at least 32 bytes).",
            secret=True,
            min_length=32,
        ),
    )
    jwks_url: str | None = field(
        default=None,
        metadata=env(
            "ECHONATS_JWT_JWKS_URL",
            "OIDC issuer JWKS URL: RS256/ES256 tokens from its keys (HS256 too while a secret is set).",
            schemes=("http", "https"),
        ),
    )
    issuer: str | None = field(
        default=None, metadata=env("ECHONATS_JWT_ISSUER", "Required `iss` claim, when set.")
    )
    audience: str | None = field(
        default=None, metadata=env("ECHONATS_JWT_AUDIENCE", "Required `aud` claim, when set.")
    )
    tenant_claim: str = field(
        default="tenant_id", metadata=env("ECHONATS_JWT_TENANT_CLAIM", "Claim that holds the tenant id.")
    )
    roles_claim: str = field(
        default="realm_access.roles",
        metadata=env(
            "ECHONATS_JWT_ROLES_CLAIM", "Dotted path of the roles list (Keycloak: realm_access.roles)."
        ),
    )
    local_issuer_port: int = field(
        default=18080,
        metadata=env(
            "ECHONATS_LOCAL_ISSUER_PORT",
            "`echonats run` without ECHONATS_JWT_JWKS_URL starts the local OIDC issuer (development "
            "only) on this port and trusts its keys; 0: it starts none. 18080: EchoPulse's Keycloak.",
            minimum=0,
            maximum=65535,
        ),
    )
    admin_token: str | None = field(
        default=None,
        metadata=env(
            "ECHONATS_ADMIN_TOKEN",
            "Static bearer token for /api/v1/admin routes (platform admin).",
            secret=True,
            min_length=16,
        ),
    )


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    host: str = field(default="127.0.0.1", metadata=env("ECHONATS_GATEWAY_HOST", "Gateway bind address."))
    port: int = field(
        default=8080,
        metadata=env("ECHONATS_GATEWAY_PORT", "Gateway HTTP/WebSocket port.", minimum=1, maximum=65535),
    )
    ready_timeout_s: float = field(
        default=2.0,
        metadata=env(
            "ECHONATS_READY_TIMEOUT", "Seconds each dependency probe of /ready may take.", minimum=0.05
        ),
    )
    http_max_header_bytes: int = field(
        default=32768,
        metadata=env(
            "ECHONATS_HTTP_MAX_HEADER_BYTES",
            "Largest request line + headers, bytes, WebSocket upgrades included (bigger: 431 and close).",
            minimum=1024,
            maximum=1_048_576,
        ),
    )
    http_header_timeout_s: float = field(
        default=10.0,
        metadata=env(
            "ECHONATS_HTTP_HEADER_TIMEOUT",
            "Seconds from a connection's or request's start to its complete headers (then 408 and close).",
            minimum=0.1,
            maximum=300.0,
        ),
    )
    http_body_timeout_s: float = field(
        default=30.0,
        metadata=env(
            "ECHONATS_HTTP_BODY_TIMEOUT",
            "Seconds a request body may take to arrive once the gateway reads it (then 408 and close).",
            minimum=0.1,
            maximum=300.0,
        ),
    )
    self_service_workspaces: bool = field(
        default=False,
        metadata=env(
            "ECHONATS_SELF_SERVICE_WORKSPACES",
            "Users of tokens without a tenant claim may create workspaces and join any by its id "
            "(Discord-style; EchoPulse's front-end needs it).",
        ),
    )
    web_client: bool = field(
        default=True,
        metadata=env("ECHONATS_WEB_CLIENT", "Serve the web client at `/` (its files ship in the package)."),
    )
    web_oidc_issuer: str | None = field(
        default=None,
        metadata=env(
            "ECHONATS_WEB_OIDC_ISSUER",
            "OIDC issuer the web client signs in with (authorization code + PKCE), e.g. "
            "https://sso.example.com/realms/chat; `echonats run` sets its local issuer's.",
            schemes=("http", "https"),
        ),
    )
    web_oidc_client_id: str = field(
        default="echonats-web",
        metadata=env("ECHONATS_WEB_OIDC_CLIENT_ID", "The web client's OIDC client id (a public client)."),
    )
    cors_origins: str = field(
        default="",
        metadata=env(
            "ECHONATS_CORS_ORIGINS",
            "Comma-separated browser origins (scheme://host[:port]) allowed to call the REST API with "
            "credentials, e.g. http://localhost:4200; empty: CORS off.",
        ),
    )

    @property
    def cors_origin_list(self) -> list[str]:
        """The CORS origins, checked: exact origins only (a wildcard cannot go with credentials)."""
        origins = [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or "*" in origin:
                raise ConfigError(
                    f"ECHONATS_CORS_ORIGINS: {origin!r} is not an origin like http://localhost:4200"
                )
        return origins


@dataclass(frozen=True, slots=True)
class RealtimeSettings:
    send_queue: int = field(
        default=1024,
        metadata=env(
            "ECHONATS_WS_SEND_QUEUE",
            "Frames queued per WebSocket before it counts as a slow consumer.",
            minimum=16,
            maximum=1_000_000,
        ),
    )
    max_frame_bytes: int = field(
        default=65536,
        metadata=env(
            "ECHONATS_WS_MAX_FRAME",
            "Largest inbound WebSocket frame (bigger: close 1009).",
            minimum=1024,
            maximum=16_777_216,
        ),
    )
    socket_send_buffer: int = field(
        default=131072,
        metadata=env(
            "ECHONATS_WS_SOCKET_SNDBUF",
            "Kernel send buffer per client socket, bytes (0: autotuning, up to MBs per slow client).",
            minimum=0,
            maximum=16_777_216,
        ),
    )
    replay_limit: int = field(
        default=5000,
        metadata=env(
            "ECHONATS_WS_REPLAY_LIMIT",
            "Most messages replayed for `since`; more: resync_required.",
            minimum=1,
            maximum=1_000_000,
        ),
    )
    rate_user_per_second: float = field(
        default=10.0,
        metadata=env(
            "ECHONATS_RATE_USER_PER_SECOND", "Messages per second per user (sustained).", minimum=0.01
        ),
    )
    rate_user_burst: int = field(
        default=20, metadata=env("ECHONATS_RATE_USER_BURST", "Messages a user may send at once.", minimum=1)
    )
    presence_ttl_s: float = field(
        default=30.0,
        metadata=env(
            "ECHONATS_PRESENCE_TTL", "Seconds a connection stays online without a heartbeat.", minimum=1.0
        ),
    )
    presence_heartbeat_s: float = field(
        default=10.0,
        metadata=env(
            "ECHONATS_PRESENCE_HEARTBEAT", "Seconds between a gateway's presence heartbeats.", minimum=0.1
        ),
    )
    presence_idle_after_s: float = field(
        default=300.0,
        metadata=env(
            "ECHONATS_PRESENCE_IDLE_AFTER", "Seconds without client activity before `idle`.", minimum=1.0
        ),
    )
    typing_interval_s: float = field(
        default=3.0,
        metadata=env(
            "ECHONATS_TYPING_INTERVAL",
            "At most one typing indicator per user and channel per this.",
            minimum=0.0,
        ),
    )
    close_timeout_s: float = field(
        default=5.0,
        metadata=env(
            "ECHONATS_WS_CLOSE_TIMEOUT",
            "Seconds a WebSocket close may take (e.g. a client that stops reading) before the TCP "
            "connection is dropped.",
            minimum=0.1,
            maximum=300.0,
        ),
    )
    max_sockets_per_user: int = field(
        default=100,
        metadata=env(
            "ECHONATS_WS_MAX_SOCKETS_PER_USER",
            "Open WebSockets (`/ws` and STOMP) per user and tenant on one gateway process; more: "
            "close 4029 (0: no limit).",
            minimum=0,
        ),
    )
    handshakes_per_ip_per_second: float = field(
        default=20.0,
        metadata=env(
            "ECHONATS_WS_HANDSHAKES_PER_IP_PER_SECOND",
            "WebSocket upgrades per client IP (IPv6: per /64) per second, checked before the token; "
            "more: HTTP 429 (0: no limit).",
            minimum=0.0,
        ),
    )
    handshakes_per_ip_burst: int = field(
        default=100,
        metadata=env(
            "ECHONATS_WS_HANDSHAKES_PER_IP_BURST",
            "WebSocket upgrades a client IP may make at once.",
            minimum=1,
        ),
    )


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    metrics_port: int = field(
        default=9101,
        metadata=env(
            "ECHONATS_WORKER_METRICS_PORT",
            "Worker Prometheus metrics port (0: disabled).",
            minimum=0,
            maximum=65535,
        ),
    )


@dataclass(frozen=True, slots=True)
class LocalSettings:
    data_dir: str = field(
        default=".echonats",
        metadata=env(
            "ECHONATS_DATA_DIR",
            "Where `echonats run` keeps the PostgreSQL and JetStream data of the services it starts "
            "(a relative path is from the working directory); `echonats run --ephemeral` uses temp "
            "folders instead. Delete the folder to start afresh.",
        ),
    )


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = field(
        default="INFO",
        metadata=env("ECHONATS_LOG_LEVEL", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    )
    format: str = field(
        default="json",
        metadata=env(
            "ECHONATS_LOG_FORMAT", "`json` (one object per line) or `text`.", choices=("json", "text")
        ),
    )


@dataclass(frozen=True, slots=True)
class Settings:
    nats: NatsSettings = field(default_factory=NatsSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def require_service_urls(self) -> tuple[str, str, str]:
        """The three service URLs; a process that does not launch its own stack needs all of them."""
        urls = (
            ("ECHONATS_NATS_URL", self.nats.url),
            ("ECHONATS_DATABASE_URL", self.postgres.url),
            ("ECHONATS_REDIS_URL", self.redis.url),
        )
        present: list[str] = []
        for name, value in urls:
            if not value:
                raise ConfigError(f"{name}: required (set it, or use `echonats run` to start a local stack)")
            present.append(value)
        return present[0], present[1], present[2]


def variables() -> list[Variable]:
    """Every configuration variable, in declaration order."""
    return variables_of(Settings)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; raise ConfigError naming the first bad variable."""
    known = {v.name for v in variables()}
    unknown = sorted(key for key in environ if key.startswith("ECHONATS_") and key not in known)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown variable (see `echonats config` for the list)")
    values = {group: group_from_env(cls, environ) for group, cls in groups(Settings)}
    settings = Settings(**values)  # type: ignore[arg-type]
    _check_cross_field(settings)
    return settings


def _check_cross_field(settings: Settings) -> None:
    if settings.postgres.pool_min > settings.postgres.pool_max:
        raise ConfigError("ECHONATS_DATABASE_POOL_MIN: must not exceed ECHONATS_DATABASE_POOL_MAX")
    if settings.realtime.presence_heartbeat_s >= settings.realtime.presence_ttl_s:
        raise ConfigError("ECHONATS_PRESENCE_HEARTBEAT: must be shorter than ECHONATS_PRESENCE_TTL")


def with_overrides(settings: Settings, **replaced: object) -> Settings:
    """A copy of settings with whole groups replaced (used by the launcher and tests)."""
    return dataclasses.replace(settings, **replaced)  # type: ignore[arg-type]
