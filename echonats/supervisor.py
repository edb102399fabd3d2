"""`echonats run`: local stack (for services without a URL), migrations, gateway and worker processes.

Children run in their own sessions, so Ctrl-C reaches only this supervisor, which then stops
them in order (gateways, worker, then the databases) within a bounded time. Each child also gets
a parent-death signal, so even a SIGKILLed supervisor leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass

from echonats.adapters.jwt_auth import DEV_JWT_SECRET
from echonats.adapters.migrations import apply_migrations
from echonats.errors import Unavailable
from echonats.settings import Settings
from echonats.stack import LocalStack, set_parent_death_signal

READY_TIMEOUT_S = 60.0
CHILD_STOP_TIMEOUT_S = 15.0


@dataclass(slots=True)
class _Child:
    name: str
    process: subprocess.Popen[bytes]


def _spawn(name: str, command: str, env: dict[str, str]) -> _Child:
    process = subprocess.Popen(
        [sys.executable, "-m", "echonats", command],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=set_parent_death_signal,
    )
    return _Child(name, process)


def _wait_ready(url: str, children: list[_Child], stop: threading.Event) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set():
        if any(c.process.poll() is not None for c in children):
            return False
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310
            if response.status == 200:
                return True
        stop.wait(0.1)  # poll the readiness condition; wakes at once on Ctrl-C
    return False


def _stop_children(children: list[_Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _local_host(settings: Settings) -> str:
    """Where this machine reaches the gateway (a wildcard bind address is not dialable)."""
    return settings.gateway.host if settings.gateway.host not in ("0.0.0.0", "::") else "127.0.0.1"


def _print_banner(settings: Settings, gateways: int, env: dict[str, str], stack: LocalStack) -> None:
    host = _local_host(settings)
    base = f"http://{host}:{settings.gateway.port}"
    lines = [
        "",
        "echonats is running"
        + (
            f" ({gateways} gateways on ports {settings.gateway.port}..{settings.gateway.port + gateways - 1})"
            if gateways > 1
            else ""
        ),
        f"  REST API      {base}/api/v1",
        f"  WebSocket     ws://{host}:{settings.gateway.port}/ws?token=<jwt>",
        f"  OpenAPI docs  {base}/schema  (JSON: {base}/schema/openapi.json)",
        f"  Metrics       {base}/metrics   worker: http://{host}:{settings.worker.metrics_port}/metrics",
        f"  Health        {base}/health   {base}/ready",
        f"  NATS          {env['ECHONATS_NATS_URL']}"
        + (f"   (monitoring {stack.urls.nats_monitor_url})" if stack.urls.nats_monitor_url else ""),
        f"  PostgreSQL    {env['ECHONATS_DATABASE_URL']}",
        f"  Redis         {env['ECHONATS_REDIS_URL']}",
        "  Dev token     .venv/bin/echonats token --tenant <tenantId> --user <userId> "
        "[--role platform-admin]",
        "Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def run_all(settings: Settings, *, gateways: int) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    stack = LocalStack(
        nats=not settings.nats.url, postgres=not settings.postgres.url, redis=not settings.redis.url
    )
    children: list[_Child] = []
    try:
        urls = stack.start()
        env = {**os.environ, **urls.as_env()}
        if not settings.auth.jwt_secret and not settings.auth.jwks_url:
            env["ECHONATS_JWT_SECRET"] = DEV_JWT_SECRET
            print("echonats: ECHONATS_JWT_SECRET unset: using the local-development secret", file=sys.stderr)
        env.setdefault("ECHONATS_LOG_FORMAT", "text")
        asyncio.run(apply_migrations(env["ECHONATS_DATABASE_URL"]))

        children.append(_spawn("worker", "worker", env))
        for index in range(gateways):
            gateway_env = {**env, "ECHONATS_GATEWAY_PORT": str(settings.gateway.port + index)}
            children.append(_spawn(f"gateway-{index + 1}", "gateway", gateway_env))

        host = _local_host(settings)
        if not _wait_ready(f"http://{host}:{settings.gateway.port}/ready", children, stop):
            if stop.is_set():
                return 0
            raise Unavailable(f"gateway not ready within {READY_TIMEOUT_S:.0f}s (see the log above)")
        _print_banner(settings, gateways, env, stack)

        while not stop.wait(0.5):
            dead = [c for c in children if c.process.poll() is not None]
            if dead:
                print(
                    f"echonats: {dead[0].name} exited with {dead[0].process.returncode}; stopping",
                    file=sys.stderr,
                )
                return 1
        return 0
    finally:
        _stop_children(children)
        stack.stop()
