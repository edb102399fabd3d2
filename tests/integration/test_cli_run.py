"""`echonats run` end to end: own stack, ready, clean stop with nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from echonats.devstack.stack import free_port


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHONATS_")}
    env.update(extra)
    return env


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_until(condition: object, timeout_s: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)  # polling a condition with a deadline, not sleeping for an outcome
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_run_starts_its_own_stack_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    port, issuer_port = free_port(), free_port()
    env = _clean_env(
        ECHONATS_GATEWAY_PORT=str(port),
        ECHONATS_WORKER_METRICS_PORT=str(free_port()),
        ECHONATS_LOCAL_ISSUER_PORT=str(issuer_port),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "echonats", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        _wait_until(lambda: _ready(f"http://127.0.0.1:{port}/ready"), 60, "/ready to answer 200")
        _wait_until(lambda: any("Ctrl-C stops everything" in line for line in lines), 10, "the banner")
        tree = _descendants(process.pid)
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ") for pid in tree)
        for expected in (
            "nats-server",
            "valkey-server",
            "postgres",
            "echonats gateway",
            "echonats worker",
            "echonats issuer",  # no JWKS URL given: the local issuer, its keys trusted
        ):
            assert expected in commands
        temp_dirs = list(Path(tempfile.gettempdir()).glob(f"echonats-*-{process.pid}-*"))
        assert len(temp_dirs) == 3

        process.send_signal(stop_signal)
        assert process.wait(timeout=45) == 0
        reader.join(timeout=5)
        out = "".join(lines)
        assert f"http://127.0.0.1:{port}/api/v1" in out
        assert f"ws://127.0.0.1:{port}/ws" in out
        assert f"OIDC issuer   http://localhost:{issuer_port}/realms/<realm>" in out

        _wait_until(lambda: not any(_alive(pid) for pid in tree), 10, "every child process to exit")
        assert [d for d in temp_dirs if d.exists()] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        process.stdout.close()


def test_invalid_configuration_exits_with_a_one_line_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "echonats", "run"],
        env=_clean_env(ECHONATS_GATEWAY_PORT="abc"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "echonats: invalid configuration: ECHONATS_GATEWAY_PORT: expected an integer, got 'abc'"
    ]


def test_gateway_alone_requires_the_service_urls() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "echonats", "gateway"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "ECHONATS_NATS_URL: required" in result.stderr
