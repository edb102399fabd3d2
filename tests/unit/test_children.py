"""Restart policy of `echonats run`'s children, on a fake clock with fake processes (no real time)."""

from __future__ import annotations

import itertools
import logging
import signal
import subprocess
from collections.abc import Sequence
from typing import cast

import pytest

from echonats.devstack.children import Backoff, Children, FatalExit, describe_exit


class FakeProcess:
    _pids = 1000

    def __init__(self) -> None:
        FakeProcess._pids += 1
        self.pid = FakeProcess._pids
        self.returncode: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        self.returncode = -signum

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, *, crash_at_start: bool = False) -> None:
        self.crash_at_start = crash_at_start
        self.clock = Clock()
        self.spawned: list[tuple[float, FakeProcess]] = []
        self.children = Children(spawn=self._spawn, clock=self.clock)

    def _spawn(
        self, argv: Sequence[str], env: dict[str, str], pass_fds: Sequence[int] = ()
    ) -> subprocess.Popen[bytes]:
        process = FakeProcess()
        if self.crash_at_start:
            process.returncode = 1
        self.spawned.append((self.clock.now, process))
        return cast("subprocess.Popen[bytes]", process)

    def current(self) -> FakeProcess:
        return self.spawned[-1][1]

    def run_until(self, t: float, step: float = 0.05) -> None:
        while self.clock.now < t:
            self.clock.now = round(self.clock.now + step, 6)
            self.children.supervise()


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_uptime() -> None:
    backoff = Backoff()
    assert [backoff.delay_after(0.1) for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff.delay_after(60.0) == 0.5  # it had stayed up: a new failure, not the same loop
    assert backoff.delay_after(1.0) == 1.0


def test_a_child_crashing_in_a_loop_is_restarted_with_growing_delays() -> None:
    h = Harness(crash_at_start=True)
    h.children.start("worker", ["worker"], {})
    h.run_until(120.0)
    starts = [at for at, _ in h.spawned]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(starts)]
    # Each crash is noticed at the next pass (0.05 s here), then the backoff: 0.5, 1, 2, ... 30 s.
    assert gaps == [0.55, 1.05, 2.05, 4.05, 8.05, 16.05, 30.05, 30.05]
    assert len(h.spawned) == 9  # two minutes of crash loop: nine starts, not thousands


def test_a_killed_child_is_restarted_and_its_siblings_are_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    worker = h.children.start("worker", ["worker"], {})
    gateway = h.children.start("gateway-1", ["gateway"], {})
    gateway_process = gateway.process
    h.run_until(100.0)
    killed = h.current() if worker.process is h.current() else cast("FakeProcess", worker.process)
    killed.returncode = -signal.SIGKILL
    with caplog.at_level(logging.WARNING, logger="echonats.devstack.supervisor"):
        h.run_until(100.6)
    assert worker.process is not killed
    assert worker.process is not None
    assert gateway.process is gateway_process  # untouched
    assert h.children.all_running()
    assert "worker (pid" in caplog.text
    assert "exited with signal SIGKILL after 100.0 s" in caplog.text
    assert "restarting in 0.5 s" in caplog.text


def test_invalid_configuration_is_not_restarted() -> None:
    h = Harness()
    h.children.start("gateway-1", ["gateway"], {})
    h.current().returncode = 2
    with pytest.raises(FatalExit) as raised:
        h.children.supervise()
    assert (raised.value.name, raised.value.code) == ("gateway-1", 2)
    assert len(h.spawned) == 1


def test_stop_cancels_a_pending_restart() -> None:
    h = Harness()
    worker = h.children.start("worker", ["worker"], {})
    h.current().returncode = 1
    h.children.supervise()
    assert worker.restart_at is not None
    h.children.stop(["worker"])
    h.run_until(40.0)
    assert len(h.spawned) == 1


def test_stop_signals_only_the_named_group() -> None:
    h = Harness()
    h.children.start("worker", ["worker"], {})
    worker_process = h.current()
    h.children.start("gateway-1", ["gateway"], {})
    h.children.stop(["gateway-1"])
    assert h.current().signals == [signal.SIGTERM]
    assert worker_process.signals == []


def test_describe_exit() -> None:
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(3) == "exit code 3"
