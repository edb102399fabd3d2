"""Child processes of `echonats run`: spawned, restarted with backoff when they crash, stopped in order.

A crashed gateway or worker is restarted instead of taking the whole stack down: the other
processes keep serving (a gateway does not need the worker to accept and acknowledge sends, the
worker catches up from its durable consumer). Restarts back off exponentially so a child that dies
at start-up in a loop costs a Python start every 30 s at worst, not a spinning CPU. Exit code 2 is
the CLI's "invalid configuration": the environment is the same on every restart, so restarting
cannot help and the supervisor stops everything instead.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from echonats.devstack.stack import set_parent_death_signal

log = logging.getLogger("echonats.devstack.supervisor")

EXIT_CONFIG = 2  # echonats.cli.EXIT_CONFIG (not imported: the CLI module imports this one lazily)
RESTART_INITIAL_S = 0.5
RESTART_MAX_S = 30.0
# A child that stayed up this long crashed for a new reason: start the backoff again at the bottom.
RESTART_RESET_AFTER_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(slots=True)
class Backoff:
    """Delays before restarts: initial, doubling to maximum; back to initial after a long uptime."""

    initial_s: float = RESTART_INITIAL_S
    maximum_s: float = RESTART_MAX_S
    reset_after_s: float = RESTART_RESET_AFTER_S
    _next_s: float = field(default=0.0, init=False)

    def delay_after(self, uptime_s: float) -> float:
        if self._next_s == 0.0 or uptime_s >= self.reset_after_s:
            self._next_s = self.initial_s
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.maximum_s)
        return delay


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


class FatalExit(Exception):
    """A child exited in a way a restart cannot fix (invalid configuration)."""

    def __init__(self, name: str, code: int) -> None:
        super().__init__(f"{name} exited with {describe_exit(code)}")
        self.name = name
        self.code = code


def popen(argv: Sequence[str], env: dict[str, str], pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    # Own session: Ctrl-C in the terminal reaches only the supervisor, which stops children in
    # order. The parent-death signal covers a supervisor that is SIGKILLed.
    return subprocess.Popen(
        list(argv),
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=set_parent_death_signal,
        pass_fds=tuple(pass_fds),
    )


Spawn = Callable[[Sequence[str], dict[str, str], Sequence[int]], subprocess.Popen[bytes]]


@dataclass(slots=True)
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()  # inherited descriptors (a gateway's listening sockets), every start
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # set while waiting out the backoff after a crash
    restarts: int = 0
    stopped: bool = False  # stopped on purpose: neither its exit nor a pending restart counts
    backoff: Backoff = field(default_factory=Backoff)


class Children:
    def __init__(self, *, spawn: Spawn = popen, clock: Callable[[], float] = time.monotonic) -> None:
        self._spawn = spawn
        self._clock = clock
        self.children: list[Child] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], pass_fds: Sequence[int] = ()
    ) -> Child:
        child = Child(name, list(argv), env, tuple(pass_fds))
        self.children.append(child)
        self._launch(child)
        return child

    def _launch(self, child: Child) -> None:
        child.process = self._spawn(child.argv, child.env, child.pass_fds)
        child.started_at = self._clock()
        child.restart_at = None

    def supervise(self) -> None:
        """One pass: restart children whose backoff is over, schedule restarts for the dead ones."""
        now = self._clock()
        for child in self.children:
            if child.stopped:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    log.warning("restarting %s (restart %d)", child.name, child.restarts)
                    self._launch(child)
                continue
            if child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                continue
            if code == EXIT_CONFIG:
                raise FatalExit(child.name, code)
            uptime = now - child.started_at
            delay = child.backoff.delay_after(uptime)
            child.restart_at = now + delay
            log.warning(
                "%s (pid %d) exited with %s after %.1f s; restarting in %.1f s",
                child.name,
                child.process.pid,
                describe_exit(code),
                uptime,
                delay,
            )

    def all_running(self) -> bool:
        return all(c.process is not None and c.process.poll() is None for c in self.children)

    def stop(self, names: Sequence[str], timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the named children together, wait for them (bounded), SIGKILL what is left."""
        group = [c for c in self.children if c.name in names]
        for child in group:
            child.stopped = True  # a pending restart must not bring it back during shutdown
            child.restart_at = None
            if child.process is not None and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = self._clock() + timeout_s
        for child in group:
            if child.process is None:
                continue
            try:
                code = child.process.wait(timeout=max(0.0, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", child.name, timeout_s)
                child.process.kill()
                code = child.process.wait()
            log.info("%s stopped (%s)", child.name, describe_exit(code))
