"""Limits on WebSocket sockets, per gateway process: upgrades per client IP, open sockets per user.

Both are in-process on purpose. The per-IP guard runs before the token is verified (verifying is
the expensive part of a handshake), so it must cost no I/O; the per-user count would need a Redis
round trip on every handshake and a heartbeat per socket to be cluster-wide. With N gateways a user
can therefore hold up to N x ``ECHONATS_WS_MAX_SOCKETS_PER_USER`` sockets; the point is that one
token cannot exhaust one gateway's file descriptors and memory.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Callable

#: The per-IP guard remembers at most this many addresses (about 100 bytes each). When full, the
#: address seen longest ago is forgotten: that client's next upgrade gets a full burst again.
MAX_TRACKED_ADDRESSES = 10_000


class HandshakeGuard:
    """GCRA per client address (IPv6: per /64, what one host usually gets): ``burst`` upgrades at
    once, then ``per_second``. One float per address, no I/O. ``per_second`` 0 disables it."""

    __slots__ = ("_clock", "_interval", "_max_tracked", "_tat", "_tolerance")

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        max_tracked: int = MAX_TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._tolerance = (max(burst, 1) - 1) * self._interval
        self._max_tracked = max_tracked
        self._clock = clock
        # Address -> theoretical arrival time; insertion order is least recently seen first.
        self._tat: dict[str, float] = {}

    def retry_after_s(self, host: str | None) -> float:
        """0 if an upgrade from ``host`` may go on now (and count it), else seconds until one may."""
        if not self._interval or not host:
            return 0.0  # disabled, or no address to key on (e.g. a Unix socket)
        key = _address_key(host)
        now = self._clock()
        tat = max(self._tat.pop(key, now), now)
        wait = tat - now - self._tolerance
        if wait > 0:
            self._tat[key] = tat  # a refused upgrade costs nothing
            return wait
        self._tat[key] = tat + self._interval
        if len(self._tat) > self._max_tracked:
            del self._tat[next(iter(self._tat))]
        return 0.0

    @property
    def tracked_addresses(self) -> int:
        return len(self._tat)


def _address_key(host: str) -> str:
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return f"{int(address) >> 64:x}/64"


class SocketCounter:
    """Open sockets per (tenant, user) of this gateway; ``limit`` 0 means unlimited."""

    __slots__ = ("_limit", "_open")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[tuple[uuid.UUID | None, str], int] = {}

    def acquire(self, tenant_id: uuid.UUID | None, user_id: str) -> bool:
        """Count one more socket of this user, unless that would exceed the limit (then False)."""
        key = (tenant_id, user_id)
        count = self._open.get(key, 0)
        if self._limit and count >= self._limit:
            return False
        self._open[key] = count + 1
        return True

    def release(self, tenant_id: uuid.UUID | None, user_id: str) -> None:
        key = (tenant_id, user_id)
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def open_sockets(self, tenant_id: uuid.UUID, user_id: str) -> int:
        return self._open.get((tenant_id, user_id), 0)
