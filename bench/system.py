"""The system under test: services, gateway/worker processes, and /proc CPU/RSS sampling.

Services whose URL is set (``ECHONATS_NATS_URL``, ``ECHONATS_DATABASE_URL``,
``ECHONATS_REDIS_URL``) are used as they are; the others come from a private ``LocalStack``.
The reference mode needs a nats-server WebSocket listener: the private nats-server gets one, and
with an external NATS a second private nats-server (NATS only) is started for the reference.
Gateways and the worker are started the way ``echonats run`` does (``python -m echonats ...``,
own session, parent-death signal) and stopped first, then the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echonats.adapters.postgres.migrations import apply_migrations
from echonats.devstack.stack import LocalStack, free_port, set_parent_death_signal

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class ServerProcess:
    name: str
    pid: int
    role: str  # "echonats" (gateway/worker), "service" (nats/postgres/redis)


@dataclass(slots=True)
class System:
    gateways: int
    want_reference: bool
    log_dir: Path
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    admin_token: str = field(default_factory=lambda: secrets.token_hex(24))
    gateway_urls: list[str] = field(default_factory=list)
    gateway_names: list[str] = field(default_factory=list)
    reference_ws_url: str | None = None
    reference_nats_url: str | None = None  # the JetStream reference's stream is created over it
    database_url: str = ""
    nats_url: str = ""
    worker_metrics_url: str = ""
    processes: list[ServerProcess] = field(default_factory=list)
    _stacks: list[LocalStack] = field(default_factory=list)
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        env_urls = {
            k: os.environ.get(k) for k in ("ECHONATS_NATS_URL", "ECHONATS_DATABASE_URL", "ECHONATS_REDIS_URL")
        }
        stack = LocalStack(
            nats=not env_urls["ECHONATS_NATS_URL"],
            postgres=not env_urls["ECHONATS_DATABASE_URL"],
            redis=not env_urls["ECHONATS_REDIS_URL"],
            # The reference gets a nats-server of its own: its idle step opens 20k sockets on it, and
            # running out of file descriptors there once left echonats' JetStream store unable to
            # open its files for the rest of the run.
            nats_websocket=False,
        )
        self._stacks.append(stack)
        urls = stack.start()
        env = {**os.environ, **{k: v for k, v in env_urls.items() if v}, **urls.as_env()}
        for name, proc in stack.processes().items():
            self.processes.append(ServerProcess(name, proc.pid, "service"))
        if self.want_reference:
            ref = LocalStack(nats=True, postgres=False, redis=False, nats_websocket=True)
            self._stacks.append(ref)
            ref_urls = ref.start()  # JetStream on, file store in its temp dir (removed at stop)
            self.reference_ws_url = ref_urls.nats_websocket_url
            self.reference_nats_url = ref_urls.nats_url
            for name, proc in ref.processes().items():
                self.processes.append(ServerProcess(f"{name}-reference", proc.pid, "service"))
        self.database_url = env["ECHONATS_DATABASE_URL"]
        self.nats_url = env["ECHONATS_NATS_URL"]
        asyncio.run(apply_migrations(self.database_url))

        metrics_port = free_port()
        base = {
            **env,
            "ECHONATS_JWT_SECRET": self.jwt_secret,
            "ECHONATS_ADMIN_TOKEN": self.admin_token,
            "ECHONATS_LOG_LEVEL": "WARNING",
            "ECHONATS_RATE_USER_PER_SECOND": "1000000",
            "ECHONATS_RATE_USER_BURST": "1000000",
            # The bench opens up to 20k sockets from 127.0.0.1, 2000 per user: no socket limits.
            "ECHONATS_WS_MAX_SOCKETS_PER_USER": "0",
            "ECHONATS_WS_HANDSHAKES_PER_IP_PER_SECOND": "0",
            "ECHONATS_WORKER_METRICS_PORT": str(metrics_port),
        }
        base.pop("ECHONATS_GATEWAY_PORT", None)
        self.worker_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self._spawn("worker", "worker", base)
        for index in range(self.gateways):
            port = free_port()
            name = f"gateway-{'ABCDEFGH'[index] if index < 8 else index + 1}"
            self._spawn(name, "gateway", {**base, "ECHONATS_GATEWAY_PORT": str(port)})
            self.gateway_names.append(name)
            self.gateway_urls.append(f"http://127.0.0.1:{port}")
        for url in self.gateway_urls:
            self._wait_ready(f"{url}/ready")

    def _spawn(self, name: str, command: str, env: dict[str, str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child's lifetime
        process = subprocess.Popen(
            [sys.executable, "-m", "echonats", command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=set_parent_death_signal,
        )
        log.close()
        self._children.append(process)
        self.processes.append(ServerProcess(name, process.pid, "echonats"))

    def _wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            dead = [p for p in self._children if p.poll() is not None]
            if dead:
                raise RuntimeError(
                    f"an echonats process exited with {dead[0].returncode}; logs in {self.log_dir}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310
                if response.status == 200:
                    return
            time.sleep(0.1)  # polling readiness with a deadline
        raise RuntimeError(f"{url} not ready after {READY_TIMEOUT_S:.0f}s; logs in {self.log_dir}")

    def check_alive(self) -> None:
        dead = [p for p in self._children if p.poll() is not None]
        if dead:
            raise RuntimeError(
                f"an echonats process exited with {dead[0].returncode}; logs in {self.log_dir}"
            )

    def stop(self) -> None:
        for process in self._children:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self._children:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._children.clear()
        for stack in reversed(self._stacks):
            stack.stop()
        self._stacks.clear()

    def servers(self, target: str, gateways: int = 1) -> list[ServerProcess]:
        """Processes whose CPU/RSS is reported for a target (a reference is nats-server alone)."""
        if target != "echonats":
            return [p for p in self.processes if p.name == "nats-reference"]
        unused = set(self.gateway_names[gateways:])
        return [p for p in self.processes if p.name != "nats-reference" and p.name not in unused]


# -- Prometheus counters that explain a slow step ----------------------------------------------------

WATCHED_METRICS = (
    "echonats_fanout_gaps_repaired_total",
    "echonats_ws_slow_consumer_closes_total",
    "echonats_ws_dropped_ephemeral_frames_total",
    "echostream_fanout_messages_processed_total",
    "echonats_rate_limited_total",
    "echonats_persisted_messages_total",
    "echonats_dead_lettered_total",
)


def scrape(url: str) -> dict[str, float]:
    """Sums of a few counters of one process's /metrics (labels summed); {} if unreachable."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - loopback URL we built
            text = response.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in WATCHED_METRICS:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def counters(system: System) -> dict[str, dict[str, float]]:
    urls = {
        name: f"{url}/metrics" for name, url in zip(system.gateway_names, system.gateway_urls, strict=True)
    }
    urls["worker"] = system.worker_metrics_url
    return {name: scrape(url) for name, url in urls.items()}


def counter_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for proc, values in after.items():
        deltas = {k: v - before.get(proc, {}).get(k, 0.0) for k, v in values.items()}
        deltas = {k: v for k, v in deltas.items() if v}
        if deltas:
            out[proc] = deltas
    return out


# -- /proc sampling ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcSample:
    ticks: int
    rss_kb: int
    at: float


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime ticks) of a process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return _rss_kb(pid)


def _tree(pid: int) -> list[int]:
    """pid and its descendants (PostgreSQL's backends are children of the postmaster)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def sample(processes: list[ServerProcess]) -> dict[str, ProcSample]:
    now = time.monotonic()
    out: dict[str, ProcSample] = {}
    for proc in processes:
        if proc.name == "postgres":
            # Backends share the buffer pool: summing their RSS would count it once per backend.
            pids = _tree(proc.pid)
            memory = sum(_pss_kb(p) for p in pids)
        else:
            pids = [proc.pid]
            memory = _rss_kb(proc.pid)
        ticks = sum((_stat(p) or (0, 0))[1] for p in pids)
        out[proc.name] = ProcSample(ticks, memory, now)
    return out


def usage(before: dict[str, ProcSample], after: dict[str, ProcSample]) -> dict[str, dict[str, float]]:
    """CPU% (100 = one core) and CPU seconds over the interval, RSS (MB) before/after, per process."""
    out: dict[str, dict[str, float]] = {}
    for name, b in before.items():
        a = after.get(name)
        if a is None:
            continue
        wall = max(a.at - b.at, 1e-9)
        cpu_s = (a.ticks - b.ticks) / _TICKS
        out[name] = {
            "cpu_pct": round(cpu_s / wall * 100.0, 1),
            "cpu_s": round(cpu_s, 2),
            "rss_mb_before": round(b.rss_kb / 1024.0, 1),
            "rss_mb": round(a.rss_kb / 1024.0, 1),
        }
    return out


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)


def machine_cpu_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Busy share of all cores over the interval, scaled so the whole machine = 100 x cores."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(busy / total * 100.0 * (os.cpu_count() or 1), 1) if total > 0 else 0.0


def cpu_costs(servers: dict[str, dict[str, Any]], sends: int, deliveries: int) -> dict[str, float | None]:
    """CPU microseconds per acknowledged send and per delivery: each process's (added to its
    entry in ``servers``) and all of them together (returned). CPU time, not CPU%: another load on
    the machine slows a step down but barely changes what each send costs. /proc counts in clock
    ticks (1/100 s), so a figure is good to about 10 ms / sends per process."""

    def per(cpu_s: float, n: int) -> float | None:
        return round(cpu_s * 1e6 / n, 1) if n > 0 else None

    for u in servers.values():
        u["cpu_us_per_send"] = per(u["cpu_s"], sends)
        u["cpu_us_per_delivery"] = per(u["cpu_s"], deliveries)
    total = sum(u["cpu_s"] for u in servers.values())
    return {
        "server_cpu_us_per_send": per(total, sends),
        "server_cpu_us_per_delivery": per(total, deliveries),
        "tick_us_per_send": per(1.0 / _TICKS, sends),
    }
