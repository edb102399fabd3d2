"""Socket limits (per IP, per user), the close deadline and token expiry of a connection (fakes)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import msgspec
import pytest

from echonats.adapters.jwt_auth import JwtVerifier
from echonats.core.caller import Caller
from echonats.gateway import protocol as p
from echonats.gateway.auth import STATIC_ADMIN, unexpired
from echonats.gateway.connection import CLOSE_SLOW_CONSUMER, CLOSE_UNAUTHORIZED, Connection, WriteCoalescer
from echonats.gateway.limits import HandshakeGuard, SocketCounter
from echonats.model import Member, Principal, Role
from echonats.model.errors import Unauthenticated
from echonats.settings import AuthSettings

# -- the per-IP upgrade guard ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_gets_its_burst_then_the_rate_and_others_are_not_affected() -> None:
    clock = Clock()
    guard = HandshakeGuard(2.0, 3, clock=clock)
    assert [guard.retry_after_s("10.0.0.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert guard.retry_after_s("10.0.0.1") == pytest.approx(0.5)
    assert guard.retry_after_s("10.0.0.1") == pytest.approx(0.5)  # refusals cost nothing
    assert guard.retry_after_s("10.0.0.2") == 0.0
    clock.now += 0.5
    assert guard.retry_after_s("10.0.0.1") == 0.0
    assert guard.retry_after_s("10.0.0.1") > 0


def test_ipv6_addresses_of_one_64_share_a_bucket_and_mapped_ipv4_is_ipv4() -> None:
    guard = HandshakeGuard(1.0, 1, clock=Clock())
    assert guard.retry_after_s("2001:db8:1:2::1") == 0.0
    assert guard.retry_after_s("2001:db8:1:2:ffff::9") > 0  # same /64
    assert guard.retry_after_s("2001:db8:1:3::1") == 0.0  # another /64
    assert guard.retry_after_s("192.0.2.7") == 0.0
    assert guard.retry_after_s("::ffff:192.0.2.7") > 0


def test_the_guard_can_be_disabled_and_ignores_unknown_addresses() -> None:
    off = HandshakeGuard(0.0, 1, clock=Clock())
    assert all(off.retry_after_s("10.0.0.1") == 0.0 for _ in range(1000))
    on = HandshakeGuard(1.0, 1, clock=Clock())
    assert all(on.retry_after_s(None) == 0.0 for _ in range(10))


def test_the_guard_remembers_a_bounded_number_of_addresses() -> None:
    guard = HandshakeGuard(1.0, 1, max_tracked=100, clock=Clock())
    for i in range(10_000):
        guard.retry_after_s(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert guard.tracked_addresses == 100


def test_sockets_per_user_are_counted_per_tenant_and_user() -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    counter = SocketCounter(2)
    assert [counter.acquire(tenant, "ann") for _ in range(3)] == [True, True, False]
    assert counter.acquire(other, "ann")
    assert counter.acquire(tenant, "bob")
    counter.release(tenant, "ann")
    assert counter.acquire(tenant, "ann")
    for _ in range(2):
        counter.release(tenant, "ann")
    assert counter.open_sockets(tenant, "ann") == 0
    unlimited = SocketCounter(0)
    assert all(unlimited.acquire(tenant, "ann") for _ in range(10_000))


# -- a connection's one timer: token expiry, then the close deadline --------------------------------


class AbortableSink:
    """A socket that takes nothing (the peer does not read) and records aborts."""

    def __init__(self) -> None:
        self.aborted = asyncio.Event()

    def write_now(self, frame: bytes) -> bool:
        return False

    async def flush(self, frames: list[bytes]) -> None:
        await asyncio.Event().wait()  # never writable again

    def abort(self) -> bool:
        first = not self.aborted.is_set()
        self.aborted.set()
        return first


class Sent(list[Any]):
    """ASGI events sent; ``arrived`` is set by the first."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()


def _connection(sink: AbortableSink, close_timeout_s: float = 0.05) -> tuple[Connection, Sent]:
    tenant = uuid.uuid4()
    member = Member(tenant, "u1", "U One", None, Role.MEMBER, datetime.now(UTC))
    sent = Sent()
    blocked = asyncio.Event()

    async def send(event: Any) -> None:
        sent.append(event)
        sent.arrived.set()
        await blocked.wait()  # uvicorn's send waits for a writable transport, which never comes

    caller = Caller(Principal("u1", tenant, "U One"), member)
    conn = Connection(
        caller, send, sink=sink, coalescer=WriteCoalescer(), max_queue=4, close_timeout_s=close_timeout_s
    )
    conn.start()
    return conn, sent


async def test_a_close_that_cannot_be_sent_ends_in_an_abort_after_the_close_timeout() -> None:
    sink = AbortableSink()
    conn, sent = _connection(sink)
    for i in range(10):  # more than the queue holds: a slow consumer
        conn.offer(f"m{i}")
    await asyncio.sleep(0)  # the coalescer's end-of-iteration write (refused: the socket is full)
    assert conn.closing
    await asyncio.wait_for(sink.aborted.wait(), 10)
    assert sent == [{"type": "websocket.close", "code": CLOSE_SLOW_CONSUMER, "reason": "slow consumer"}]


async def test_a_socket_is_closed_with_4001_at_its_expiry_and_a_later_expiry_replaces_it() -> None:
    sink = AbortableSink()
    conn, sent = _connection(sink, close_timeout_s=60)
    conn.expire_at(datetime.now(UTC) - timedelta(seconds=1))  # already past: closed at once
    conn.expire_at(datetime.now(UTC) + timedelta(hours=1))  # ... unless renewed first
    # A timer due no earlier than the replaced one: once it has run, that one would have too.
    loop, witness = asyncio.get_running_loop(), asyncio.Event()
    loop.call_at(loop.time(), witness.set)
    await asyncio.wait_for(witness.wait(), 10)
    await asyncio.sleep(0)  # and the close task it would have started would have run
    assert not conn.closing
    assert sent == []
    conn.expire_at(datetime.now(UTC))
    await asyncio.wait_for(sent.arrived.wait(), 10)  # the close goes out from a task of its own
    assert sent == [{"type": "websocket.close", "code": CLOSE_UNAUTHORIZED, "reason": "token expired"}]


async def test_a_socket_whose_handler_ended_without_a_server_close_is_aborted_if_still_open() -> None:
    sink = AbortableSink()
    conn, _ = _connection(sink)
    conn.expire_at(datetime.now(UTC) + timedelta(hours=1))
    await conn.stop()  # e.g. the peer closed but reads nothing: its transport would never close
    await asyncio.wait_for(sink.aborted.wait(), 10)
    assert not conn.closing


# -- tokens: expiry on the principal, the reauth frame -----------------------------------------------


async def test_the_principal_carries_the_tokens_exp() -> None:
    secret = "unit-test-secret-0123456789abcdef-0123"
    exp = int(time.time()) + 120
    token = jwt.encode({"sub": "u", "exp": exp}, secret, algorithm="HS256")
    principal = await JwtVerifier(AuthSettings(jwt_secret=secret)).verify(token)
    assert principal.expires_at == datetime.fromtimestamp(exp, UTC)
    far = jwt.encode({"sub": "u", "exp": 10**15}, secret, algorithm="HS256")
    assert (await JwtVerifier(AuthSettings(jwt_secret=secret)).verify(far)).expires_at is not None


def test_sockets_refuse_tokens_past_exp_that_the_leeway_still_lets_through() -> None:
    past = Principal("u", None, "U", expires_at=datetime.now(UTC) - timedelta(seconds=5))
    with pytest.raises(Unauthenticated, match="expired"):
        unexpired(past)
    assert unexpired(STATIC_ADMIN) is STATIC_ADMIN  # no exp: never expires


def test_the_reauth_frame_is_strict() -> None:
    frame = p.client_frame_decoder.decode(b'{"type":"reauth","token":"abc"}')
    assert frame == p.Reauth(token="abc")
    for bad in (
        b'{"type":"reauth"}',
        b'{"type":"reauth","token":""}',
        b'{"type":"reauth","token":"a","x":1}',
    ):
        with pytest.raises(msgspec.ValidationError):
            p.client_frame_decoder.decode(bad)
    renewed = p.encode(p.Reauthenticated(expires_at=datetime(2030, 1, 1, tzinfo=UTC)))
    assert renewed == '{"type":"reauthenticated","expiresAt":"2030-01-01T00:00:00Z"}'
    assert p.encode(p.Reauthenticated()) == '{"type":"reauthenticated"}'
