"""Is a local service up yet? One cheap probe per kind, each answering within half a second."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from pathlib import Path


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:  # noqa: S310 - loopback URL we built
            return int(response.status) == 200
    except OSError:
        return False


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def pg_ready(bindir: Path, port: int) -> bool:
    result = subprocess.run(
        [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"], check=False
    )
    return result.returncode == 0
