"""`echonats run`: local stack (for services without a URL), migrations, gateway and worker processes.

The supervisor restarts a crashed gateway or worker with backoff (echonats.devstack.children) and keeps the
rest serving. On SIGINT/SIGTERM/SIGHUP it stops in dependency order, each step bounded in time:
the gateways first (they close their sockets with 1012 and drain NATS), then the worker (it
finishes its batch), and only then the local services they were using.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

from echonats.bootstrap.migrate import migrate
from echonats.devstack.children import EXIT_CONFIG, Children, FatalExit
from echonats.devstack.stack import LocalStack
from echonats.gateway.listener import listening_socket
from echonats.logs import configure_logging
from echonats.model.errors import Unavailable
from echonats.settings import DEV_JWT_SECRET, Settings

log = logging.getLogger("echonats.devstack.supervisor")

READY_TIMEOUT_S = 60.0
ISSUER_REALM = "echonats"  # the issuer signs every realm's tokens with one key: any realm's JWKS will do
POLL_S = 0.2  # how soon a crash is noticed; Ctrl-C wakes the wait at once
# SIGHUP too: closing the terminal must stop things in order, not kill the supervisor outright
# (its children would then get their parent-death signal all at once, databases included).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _wait_ready(url: str, children: Children, stop: threading.Event) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set():
        children.supervise()  # a child crashing at start-up is restarted like any other
        if children.all_running():
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310
                if response.status == 200:
                    return True
        stop.wait(0.1)  # poll the readiness condition; wakes at once on Ctrl-C
    return False


def _local_host(settings: Settings) -> str:
    """Where this machine reaches the gateway (a wildcard bind address is not dialable)."""
    return settings.gateway.host if settings.gateway.host not in ("0.0.0.0", "::") else "127.0.0.1"


def _local_issuer_url(settings: Settings) -> str | None:
    """The local OIDC issuer's public URL when `echonats run` starts one (no JWKS URL given)."""
    if settings.auth.jwks_url or not settings.auth.local_issuer_port:
        return None
    # localhost, not 127.0.0.1: what EchoPulse's front-end (and a browser user) types.
    return f"http://localhost:{settings.auth.local_issuer_port}"


def _print_banner(
    settings: Settings,
    gateways: int,
    env: dict[str, str],
    stack: LocalStack,
    issuer: str | None,
    data_dir: Path | None,
) -> None:
    host = _local_host(settings)
    port = settings.gateway.port
    base = f"http://{host}:{port}"
    lines = [
        "",
        "echonats is running" + (f" ({gateways} gateways sharing port {port})" if gateways > 1 else ""),
        *([f"  Web client    {base}/"] if settings.gateway.web_client else []),
        f"  REST API      {base}/api/v1",
        f"  WebSocket     ws://{host}:{settings.gateway.port}/ws?token=<jwt>",
        f"  OpenAPI docs  {base}/schema  (JSON: {base}/schema/openapi.json)",
        f"  Metrics       {base}/metrics   worker: http://{host}:{settings.worker.metrics_port}/metrics",
        *(
            [f"  Per gateway   gateway K alone: http://{host}:<{port}+K>/metrics, K = 1..{gateways}"]
            if gateways > 1
            else []
        ),
        f"  Health        {base}/health   {base}/ready",
        f"  NATS          {env['ECHONATS_NATS_URL']}"
        + (f"   (monitoring {stack.urls.nats_monitor_url})" if stack.urls.nats_monitor_url else ""),
        f"  PostgreSQL    {env['ECHONATS_DATABASE_URL']}",
        f"  Redis         {env['ECHONATS_REDIS_URL']}",
        f"  Data          {data_dir}  (kept between runs; delete it to start afresh)"
        if data_dir is not None
        else "  Data          temp folders, deleted on exit (--ephemeral)",
        "  Dev token     .venv/bin/echonats token --user <userId> [--tenant <tenantId>] "
        "[--role platform-admin]",
        *(
            [f"  OIDC issuer   {issuer}/realms/<realm>  (local development only: anyone who types a name)"]
            if issuer
            else []
        ),
        "Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _gateway_sockets(settings: Settings, gateways: int) -> list[list[socket.socket]]:
    """Per gateway: its share of the common port, then its own port (PORT+K) — none for just one
    gateway, which binds its port itself. Bound here, before any child starts, so a port in use is
    one clear error and a restarted gateway inherits the same sockets."""
    if gateways == 1:
        return []
    bound: list[list[socket.socket]] = []
    try:
        for index in range(gateways):
            shared = listening_socket(settings, reuse_port=True)
            bound.append([shared])
            bound[-1].append(listening_socket(settings, port=settings.gateway.port + index + 1))
    except OSError as exc:
        _close(bound)
        raise Unavailable(f"cannot listen on the gateway ports: {exc}") from exc
    return bound


def _close(sockets: list[list[socket.socket]]) -> None:
    for group in sockets:
        for sock in group:
            sock.close()


def _data_dir(settings: Settings, *, ephemeral: bool) -> Path | None:
    if ephemeral or (settings.nats.url and settings.postgres.url):
        return None  # nothing persistent is started here
    return Path(settings.local.data_dir).resolve()


def run_all(settings: Settings, *, gateways: int, ephemeral: bool = False) -> int:
    stop = threading.Event()
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop.set())
    if "ECHONATS_LOG_FORMAT" not in os.environ:  # the same readable format as the children's
        configure_logging(dataclasses.replace(settings.log, format="text"))

    data_dir = _data_dir(settings, ephemeral=ephemeral)
    stack = LocalStack(
        nats=not settings.nats.url,
        postgres=not settings.postgres.url,
        redis=not settings.redis.url,
        data_dir=data_dir,
    )
    children = Children()
    gateway_names = [f"gateway-{index + 1}" for index in range(gateways)]
    sockets: list[list[socket.socket]] = []
    try:
        sockets = _gateway_sockets(settings, gateways)
        urls = stack.start()
        env = {**os.environ, **urls.as_env()}
        if not settings.auth.jwt_secret and not settings.auth.jwks_url:
            env["ECHONATS_JWT_SECRET"] = DEV_JWT_SECRET
            print("echonats: ECHONATS_JWT_SECRET unset: using the local-development secret", file=sys.stderr)
        env.setdefault("ECHONATS_LOG_FORMAT", "text")
        migrate(env["ECHONATS_DATABASE_URL"])
        if stop.is_set():  # Ctrl-C while the services were starting
            return 0

        command = [sys.executable, "-m", "echonats"]
        issuer = _local_issuer_url(settings)
        if issuer is not None:
            # Its keys are trusted next to the HS256 secret: `echonats token` keeps working.
            env["ECHONATS_JWT_JWKS_URL"] = f"{issuer}/realms/{ISSUER_REALM}/protocol/openid-connect/certs"
            # The web client signs in there, and its users (no tenant claim) start their own
            # workspaces: a development stack is for trying things (D52). Set either to override.
            env.setdefault("ECHONATS_WEB_OIDC_ISSUER", f"{issuer}/realms/{ISSUER_REALM}")
            env.setdefault("ECHONATS_SELF_SERVICE_WORKSPACES", "true")
            port = str(settings.auth.local_issuer_port)
            host = _local_host(settings)
            children.start("issuer", [*command, "issuer", "--host", host, "--port", port,
                                      "--public-url", issuer], env)  # fmt: skip
        children.start("worker", [*command, "worker"], env)
        for index, name in enumerate(gateway_names):
            fds = [sock.fileno() for sock in sockets[index]] if sockets else []
            listen = [arg for fd in fds for arg in ("--listen-fd", str(fd))]
            children.start(name, [*command, "gateway", *listen], env, pass_fds=fds)

        host = _local_host(settings)
        if not _wait_ready(f"http://{host}:{settings.gateway.port}/ready", children, stop):
            if stop.is_set():
                return 0
            raise Unavailable(f"gateway not ready within {READY_TIMEOUT_S:.0f}s (see the log above)")
        _print_banner(settings, gateways, env, stack, issuer, data_dir)

        while not stop.wait(POLL_S):
            children.supervise()
        return 0
    except FatalExit as exc:
        log.error("%s (invalid configuration): a restart cannot fix that; stopping", exc)
        return EXIT_CONFIG
    finally:
        log.info("stopping: gateways, then the worker, then the local services")
        children.stop(gateway_names)
        children.stop(["worker", "issuer"])
        _close(sockets)
        stack.stop()
        log.info("stopped")
