"""Rate limits, presence and typing throttling against a real Redis/Valkey."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import nats
import pytest
import redis.asyncio as aioredis
from nats.aio.msg import Msg
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from echonats.adapters.nats.live import NatsAnnouncer
from echonats.adapters.nats.subjects import presence_subject
from echonats.adapters.redis.leases import LEASE_S
from echonats.adapters.redis.ratelimit import RedisRateLimiter
from echonats.adapters.redis.realtime import RedisPresenceStore, RedisTypingThrottle, presence_keys
from echonats.core.ports import ConnectionBeat
from echonats.devstack.stack import StackUrls, free_port
from echonats.metrics import GATEWAY as GATEWAY_METRICS
from echonats.model import PresenceChange, PresenceStatus
from echonats.model.errors import RateLimited, Unavailable
from echonats.workers.presence import PresenceSweeper

ONLINE, IDLE, OFFLINE = PresenceStatus.ONLINE, PresenceStatus.IDLE, PresenceStatus.OFFLINE


@pytest.fixture
async def client(stack_urls: StackUrls) -> AsyncIterator[aioredis.Redis]:
    assert stack_urls.redis_url
    redis_client = aioredis.from_url(stack_urls.redis_url)
    try:
        yield redis_client
    finally:
        await redis_client.aclose()


@pytest.fixture
async def dead_client() -> AsyncIterator[aioredis.Redis]:
    """A client whose server is not there (nothing listens on a fresh free port); no retries."""
    redis_client = aioredis.from_url(
        f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
    )
    try:
        yield redis_client
    finally:
        await redis_client.aclose()


T = TypeVar("T")


async def eventually(
    attempt: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, timeout_s: float = 5.0, what: str
) -> T:
    """Poll `attempt` until `done(result)`; fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await attempt()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {result!r})")
        await asyncio.sleep(0.02)  # polling a condition with a deadline


async def acquire(limiter: RedisRateLimiter, tenant: uuid.UUID, user: str, *, tenant_per_second: int) -> None:
    """Take one send, or raise ``RateLimited`` (what a single send does through the port)."""
    _, refusal = await limiter.acquire_many(tenant, user, 1, tenant_per_second=tenant_per_second)
    if refusal is not None:
        raise refusal


async def denied(limiter: RedisRateLimiter, tenant: uuid.UUID, user: str, per_second: int) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        await acquire(limiter, tenant, user, tenant_per_second=per_second)
    return caught.value


# -- rate limiting ---------------------------------------------------------------------------------


async def test_user_burst_then_denied_then_refilled_after_retry_after(client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(client, user_per_second=10, user_burst=3)
    tenant = uuid.uuid4()
    for _ in range(3):
        await acquire(limiter, tenant, "alice", tenant_per_second=1000)
    error = await denied(limiter, tenant, "alice", 1000)
    assert 0 < error.retry_after_ms <= 100  # at most one emission interval at 10/s
    assert (error.limit, error.remaining, error.details["scope"]) == (10, 0, "user")
    assert error.details["retryAfterMs"] == error.retry_after_ms

    await asyncio.sleep(error.retry_after_ms / 1000)  # the documented retry-after, not a sync guess
    await acquire(limiter, tenant, "alice", tenant_per_second=1000)
    # exactly one send refilled, not the whole burst
    assert (await denied(limiter, tenant, "alice", 1000)).retry_after_ms > 0


async def test_limit_reports_user_rate_rounded_up(client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(client, user_per_second=0.5, user_burst=1)
    tenant = uuid.uuid4()
    await acquire(limiter, tenant, "alice", tenant_per_second=100)
    error = await denied(limiter, tenant, "alice", 100)
    assert error.limit == 1
    assert 1000 < error.retry_after_ms <= 2000  # 2 s interval at 0.5/s, minus the elapsed bit


async def test_tenant_limit_is_shared_by_its_users_only(client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(client, user_per_second=100, user_burst=100)
    tenant, other = uuid.uuid4(), uuid.uuid4()
    await acquire(limiter, tenant, "alice", tenant_per_second=2)
    await acquire(limiter, tenant, "bob", tenant_per_second=2)  # burst of a tenant = one second's worth
    error = await denied(limiter, tenant, "carol", 2)
    assert (error.limit, error.remaining, error.details["scope"]) == (2, 0, "tenant")
    assert 0 < error.retry_after_ms <= 500
    await acquire(limiter, other, "carol", tenant_per_second=2)  # another tenant has its own budget


async def test_denied_by_tenant_takes_nothing_from_the_user(client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(client, user_per_second=0.01, user_burst=2)  # user budget never refills
    tenant = uuid.uuid4()
    for i in range(5):  # exhaust the tenant (5/s, burst 5) through other users
        await acquire(limiter, tenant, f"user{i}", tenant_per_second=5)
    for _ in range(3):
        assert (await denied(limiter, tenant, "alice", 5)).details["scope"] == "tenant"
    # alice's two sends are intact: each waits for the tenant only
    for _ in range(2):
        error = await denied(limiter, tenant, "alice", 5)
        assert error.details["scope"] == "tenant"
        await asyncio.sleep(error.retry_after_ms / 1000)  # the documented retry-after
        await acquire(limiter, tenant, "alice", tenant_per_second=5)
    assert (await denied(limiter, tenant, "alice", 1000)).details["scope"] == "user"


async def test_denied_by_user_takes_nothing_from_the_tenant(client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(client, user_per_second=0.01, user_burst=1)
    tenant = uuid.uuid4()
    await acquire(limiter, tenant, "alice", tenant_per_second=3)
    for _ in range(5):
        assert (await denied(limiter, tenant, "alice", 3)).details["scope"] == "user"
    await acquire(limiter, tenant, "bob", tenant_per_second=3)
    await acquire(limiter, tenant, "carol", tenant_per_second=3)
    assert (await denied(limiter, tenant, "dave", 3)).details["scope"] == "tenant"


async def test_checks_asked_together_are_decided_in_the_order_asked(client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(client, user_per_second=0.01, user_burst=3)
    tenant = uuid.uuid4()
    outcomes = await asyncio.gather(
        *(
            limiter.acquire_many(tenant, user, 2, tenant_per_second=1000)
            for user in ("alice", "bob", "alice")
        ),
        limiter.acquire_many(tenant, "carol", 1, tenant_per_second=1000),
    )
    granted = [n for n, _ in outcomes]
    refusals = [r.details["scope"] if r else None for _, r in outcomes]
    assert granted == [2, 2, 1, 1]  # alice's second request gets what her first left over
    assert refusals == [None, None, "user", None]


async def test_idle_buckets_expire(client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(client, user_per_second=10, user_burst=5)
    tenant = uuid.uuid4()
    await acquire(limiter, tenant, "alice", tenant_per_second=4)
    user_ttl = await client.pttl(f"rl:u:{tenant}:alice")
    tenant_ttl = await client.pttl(f"rl:t:{tenant}")
    assert 0 < user_ttl <= 100  # one 100 ms interval taken: full again after it
    assert 0 < tenant_ttl <= 250


async def test_fails_open_when_redis_is_unreachable(
    dead_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisRateLimiter(dead_client, user_per_second=1, user_burst=1)
    before = GATEWAY_METRICS.get_sample_value("echonats_rate_limit_fail_open_total") or 0.0
    with caplog.at_level(logging.WARNING, logger="echonats.adapters.redis.ratelimit"):
        for _ in range(3):  # over the limit, yet allowed
            await acquire(limiter, uuid.uuid4(), "alice", tenant_per_second=1)
    assert GATEWAY_METRICS.get_sample_value("echonats_rate_limit_fail_open_total") == before + 3
    warnings = [r for r in caplog.records if r.name == "echonats.adapters.redis.ratelimit"]
    assert len(warnings) == 1  # at most one warning per 10 s


async def test_fails_open_when_redis_is_too_slow(client: aioredis.Redis, stack_urls: StackUrls) -> None:
    assert stack_urls.redis_url
    limited = aioredis.from_url(stack_urls.redis_url)
    limiter = RedisRateLimiter(limited, user_per_second=1, user_burst=1, timeout_s=0.1)
    before = GATEWAY_METRICS.get_sample_value("echonats_rate_limit_fail_open_total") or 0.0
    await client.execute_command("CLIENT", "PAUSE", 5000, "WRITE")  # scripts wait; UNPAUSE does not
    try:
        started = time.monotonic()
        await acquire(limiter, uuid.uuid4(), "alice", tenant_per_second=1)
        assert time.monotonic() - started < 1.0  # the send did not wait for the 5 s pause
    finally:
        await client.execute_command("CLIENT", "UNPAUSE")
        await limited.aclose()
    assert GATEWAY_METRICS.get_sample_value("echonats_rate_limit_fail_open_total") == before + 1


# -- presence --------------------------------------------------------------------------------------


def beat(tenant: uuid.UUID, user: str, conn: str, *, active_ago_s: float = 0.0) -> ConnectionBeat:
    return ConnectionBeat(tenant, user, conn, time.time() - active_ago_s)


def change(tenant: uuid.UUID, user: str, status: PresenceStatus) -> PresenceChange:
    return PresenceChange(tenant, user, status)


async def test_connections_drive_online_and_offline(client: aioredis.Redis) -> None:
    store = RedisPresenceStore(client, ttl_s=30, idle_after_s=300)
    tenant = uuid.uuid4()
    assert await store.connect(beat(tenant, "alice", "c1")) == change(tenant, "alice", ONLINE)
    assert await store.connect(beat(tenant, "alice", "c2")) is None
    assert await store.disconnect(tenant, "alice", "c1") is None
    assert await store.statuses(tenant, ["alice"]) == {"alice": ONLINE}
    assert await store.disconnect(tenant, "alice", "c2") == change(tenant, "alice", OFFLINE)
    assert await store.disconnect(tenant, "alice", "c2") is None  # repeated: nothing to report
    assert await client.keys("pr:*") == []  # offline users leave nothing behind


async def test_heartbeat_keeps_a_connection_alive_and_lapsed_ones_go_offline(client: aioredis.Redis) -> None:
    store = RedisPresenceStore(client, ttl_s=0.3, idle_after_s=300)
    tenant = uuid.uuid4()
    await store.connect(beat(tenant, "alice", "a1"))
    await store.connect(beat(tenant, "bob", "b1"))
    # keep alice beating while bob's heartbeat lapses; sweep until bob's change shows up
    seen: list[PresenceChange] = []

    async def beat_and_sweep() -> list[PresenceChange]:
        assert await store.heartbeat([beat(tenant, "alice", "a1")]) == []
        seen.extend(await store.sweep())
        return seen

    await eventually(beat_and_sweep, lambda s: len(s) > 0, what="bob offline")
    assert seen == [change(tenant, "bob", OFFLINE)]
    assert await store.statuses(tenant, ["alice", "bob"]) == {"alice": ONLINE, "bob": OFFLINE}


async def test_statuses_do_not_report_expired_connections_nor_swallow_the_change(
    client: aioredis.Redis,
) -> None:
    store = RedisPresenceStore(client, ttl_s=0.3, idle_after_s=300)
    tenant = uuid.uuid4()
    await store.connect(beat(tenant, "alice", "c1"))
    assert await store.statuses(tenant, ["alice", "nobody"]) == {"alice": ONLINE, "nobody": OFFLINE}
    await eventually(
        lambda: store.statuses(tenant, ["alice"]), lambda s: s == {"alice": OFFLINE}, what="expiry"
    )
    assert await client.get(f"pr:s:{tenant}:alice") == b"online"  # not swept yet
    assert await store.sweep() == [change(tenant, "alice", OFFLINE)]
    assert await store.sweep() == []


async def test_statuses_ignore_the_activity_of_expired_connections(client: aioredis.Redis) -> None:
    short = RedisPresenceStore(client, ttl_s=0.3, idle_after_s=300)
    long = RedisPresenceStore(client, ttl_s=30, idle_after_s=300)  # e.g. a gateway with another TTL
    tenant = uuid.uuid4()
    await short.connect(beat(tenant, "alice", "active-but-lapsing"))
    await long.connect(beat(tenant, "alice", "inactive", active_ago_s=400))
    assert await long.statuses(tenant, ["alice"]) == {"alice": ONLINE}
    # nothing settles alice here: statuses() itself must stop counting the lapsed connection
    await eventually(lambda: long.statuses(tenant, ["alice"]), lambda s: s == {"alice": IDLE}, what="idle")


async def test_idle_when_all_connections_are_inactive(client: aioredis.Redis) -> None:
    store = RedisPresenceStore(client, ttl_s=30, idle_after_s=60)
    tenant = uuid.uuid4()
    assert await store.connect(beat(tenant, "alice", "c1", active_ago_s=61)) == change(tenant, "alice", IDLE)
    assert await store.connect(beat(tenant, "alice", "c2", active_ago_s=120)) is None
    assert await store.statuses(tenant, ["alice"]) == {"alice": IDLE}
    # activity on any connection makes the user online again
    assert await store.heartbeat([beat(tenant, "alice", "c2")]) == [change(tenant, "alice", ONLINE)]
    # an older activity time in a later beat does not move it back
    assert await store.heartbeat([beat(tenant, "alice", "c2", active_ago_s=120)]) == []


async def test_sweep_turns_inactive_users_idle(client: aioredis.Redis) -> None:
    store = RedisPresenceStore(client, ttl_s=30, idle_after_s=0.3)
    tenant = uuid.uuid4()
    assert await store.connect(beat(tenant, "alice", "c1")) == change(tenant, "alice", ONLINE)
    changes = await eventually(store.sweep, lambda c: len(c) > 0, what="idle")
    assert changes == [change(tenant, "alice", IDLE)]
    assert await store.statuses(tenant, ["alice"]) == {"alice": IDLE}


async def test_heartbeat_for_many_users_reports_each_change(client: aioredis.Redis) -> None:
    store = RedisPresenceStore(client, ttl_s=30, idle_after_s=60)
    tenant = uuid.uuid4()
    await store.connect(beat(tenant, "bob", "b1", active_ago_s=100))  # idle
    changes = await store.heartbeat(
        [beat(tenant, "alice", "a1"), beat(tenant, "alice", "a2"), beat(tenant, "bob", "b1")]
    )
    assert changes == [change(tenant, "alice", ONLINE), change(tenant, "bob", ONLINE)]
    assert await client.zcard(presence_keys(tenant, "alice")[0]) == 2


async def test_concurrent_sweeps_report_each_change_once(stack_urls: StackUrls) -> None:
    assert stack_urls.redis_url
    first, second = aioredis.from_url(stack_urls.redis_url), aioredis.from_url(stack_urls.redis_url)
    try:
        stores = [RedisPresenceStore(c, ttl_s=0.3, idle_after_s=300) for c in (first, second)]
        tenant = uuid.uuid4()
        users = [f"user|{i}" for i in range(30)]  # '|' in ids must not confuse the schedule
        assert len(await stores[0].heartbeat([beat(tenant, u, "c") for u in users])) == len(users)
        await eventually(
            lambda: stores[0].statuses(tenant, users),
            lambda s: set(s.values()) == {OFFLINE},
            what="all expired",
        )
        # the worst interleaving, made deterministic: both see the same due users, then both settle
        due = [await s.due_members(100) for s in stores]
        assert due[0] == due[1]
        assert len(due[0]) == len(users)
        settled = [await s.settle_members(d) for s, d in zip(stores, due, strict=True)]
        assert sorted(c.user_id for c in settled[0]) == sorted(users)
        assert settled[1] == []
    finally:
        await first.aclose()
        await second.aclose()


async def test_parallel_sweeps_report_each_change_once(stack_urls: StackUrls) -> None:
    assert stack_urls.redis_url
    clients = [aioredis.from_url(stack_urls.redis_url) for _ in range(3)]
    try:
        stores = [RedisPresenceStore(c, ttl_s=0.3, idle_after_s=300) for c in clients]
        tenant = uuid.uuid4()
        users = [f"u{i}" for i in range(200)]
        await stores[0].heartbeat([beat(tenant, u, "c") for u in users])
        await eventually(
            lambda: stores[0].statuses(tenant, users), lambda s: set(s.values()) == {OFFLINE}, what="expiry"
        )
        results = await asyncio.gather(*(s.sweep() for s in stores))
        reported = [c.user_id for r in results for c in r]
        assert sorted(reported) == sorted(users)
    finally:
        for c in clients:
            await c.aclose()


async def test_sweeper_publishes_changes_on_nats_and_stops_at_once(
    client: aioredis.Redis, stack_urls: StackUrls
) -> None:
    assert stack_urls.nats_url
    store = RedisPresenceStore(client, ttl_s=0.3, idle_after_s=300)
    tenant = uuid.uuid4()
    nc = await nats.connect(stack_urls.nats_url)
    received: list[tuple[str, dict[str, str]]] = []

    async def collect(msg: Msg) -> None:
        received.append((msg.subject, json.loads(msg.data)))

    try:
        await nc.subscribe(f"echo.{tenant}.presence.*", cb=collect)
        await nc.flush()
        await store.connect(beat(tenant, "alice smith", "c1"))
        stop = asyncio.Event()
        task = asyncio.create_task(PresenceSweeper(store, NatsAnnouncer(nc), interval_s=0.05).run(stop))

        async def arrived() -> int:
            return len(received)

        await eventually(arrived, lambda n: n > 0, what="presence message")
        stop.set()
        await asyncio.wait_for(task, timeout=1.0)
    finally:
        await nc.close()
    assert received == [
        (
            presence_subject(tenant, "alice smith"),
            {"tenantId": str(tenant), "userId": "alice smith", "status": "offline"},
        )
    ]


async def test_sweeper_survives_redis_errors(dead_client: aioredis.Redis, stack_urls: StackUrls) -> None:
    assert stack_urls.nats_url
    nc = await nats.connect(stack_urls.nats_url)
    try:
        sweeper = PresenceSweeper(RedisPresenceStore(dead_client, ttl_s=1, idle_after_s=1), NatsAnnouncer(nc))
        assert await sweeper.sweep_once() == 0
        assert await sweeper.sweep_once() == 0
    finally:
        await nc.close()


async def test_presence_raises_unavailable_without_redis(dead_client: aioredis.Redis) -> None:
    store = RedisPresenceStore(dead_client, ttl_s=1, idle_after_s=1)
    tenant = uuid.uuid4()
    with pytest.raises(Unavailable):
        await store.connect(beat(tenant, "alice", "c1"))
    with pytest.raises(Unavailable):
        await store.disconnect(tenant, "alice", "c1")
    with pytest.raises(Unavailable):
        await store.statuses(tenant, ["alice"])
    with pytest.raises(Unavailable):
        await store.sweep()


# -- typing ----------------------------------------------------------------------------------------


async def test_typing_allowed_once_per_interval_per_channel_and_user(client: aioredis.Redis) -> None:
    throttle = RedisTypingThrottle(client, interval_s=0.2)
    tenant, channel, other_channel = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    started = time.monotonic()
    assert await throttle.allow(tenant, channel, "alice") is True
    assert await throttle.allow(tenant, channel, "alice") is False
    assert await throttle.allow(tenant, channel, "bob") is True
    assert await throttle.allow(tenant, other_channel, "alice") is True
    assert 0 < await client.pttl(f"ty:{tenant}:{channel}:alice") <= 200
    await eventually(lambda: throttle.allow(tenant, channel, "alice"), bool, what="next interval")
    assert time.monotonic() - started >= 0.19  # not before the interval has passed (ms rounding)


async def test_typing_without_interval_or_redis_is_allowed(dead_client: aioredis.Redis) -> None:
    tenant, channel = uuid.uuid4(), uuid.uuid4()
    unthrottled = RedisTypingThrottle(dead_client, interval_s=0)
    assert [await unthrottled.allow(tenant, channel, "alice") for _ in range(3)] == [True] * 3
    failing_open = RedisTypingThrottle(dead_client, interval_s=3)
    assert await failing_open.allow(tenant, channel, "alice") is True


async def test_resends_within_the_window_are_free_and_expire_with_it(client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(client, user_per_second=0.01, user_burst=2, resend_window_s=0.3)
    tenant = uuid.uuid4()
    # One call: a charged send, two resends of it and a send without a key: 2 charged, all granted.
    keys = ["k1", "k1", "k1", None]
    assert await limiter.acquire_many(tenant, "ann", 4, tenant_per_second=1000, resend_keys=keys) == (4, None)
    granted, refusal = await limiter.acquire_many(
        tenant, "ann", 2, tenant_per_second=1000, resend_keys=["k1", "k2"]
    )
    assert (granted, refusal is not None) == (1, True)  # k1 free, k2 refused: the budget is spent
    # A refused send is not remembered: k2 stays a new message.
    assert (await limiter.acquire_many(tenant, "ann", 1, tenant_per_second=1000, resend_keys=["k2"]))[0] == 0
    # Once the window has passed, the same key is a new message again and is charged (refused here).
    await eventually(
        lambda: limiter.acquire_many(tenant, "ann", 1, tenant_per_second=1000, resend_keys=["k1"]),
        lambda outcome: outcome[0] == 0,
        what="k1 to be charged again",
    )


async def test_a_busy_bucket_is_leased_and_what_is_leased_is_nobody_elses(client: aioredis.Redis) -> None:
    first, second = (RedisRateLimiter(client, user_per_second=4, user_burst=3) for _ in range(2))
    tenant = uuid.uuid4()
    await acquire(first, tenant, "ann", tenant_per_second=1000)
    assert 0 < await client.pttl(f"rl:u:{tenant}:ann") <= 250  # a quiet bucket: one token, exactly
    await acquire(first, tenant, "ann", tenant_per_second=1000)  # busy: one token and a lease of one
    assert 500 < await client.pttl(f"rl:u:{tenant}:ann") <= 750
    # The leased token sits with the first gateway: the second is refused one send early ...
    assert (await denied(second, tenant, "ann", 1000)).details["scope"] == "user"
    # ... and the first spends it without asking Redis (the bucket's expiry does not move).
    before = await client.pttl(f"rl:u:{tenant}:ann")
    await acquire(first, tenant, "ann", tenant_per_second=1000)
    assert await client.pttl(f"rl:u:{tenant}:ann") <= before


async def test_a_lease_not_spent_in_time_goes_back_with_the_next_call(client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(client, user_per_second=4, user_burst=3)
    tenant = uuid.uuid4()
    await acquire(limiter, tenant, "ann", tenant_per_second=1000)
    await acquire(limiter, tenant, "ann", tenant_per_second=1000)  # holds one leased token
    held = await client.pttl(f"rl:u:{tenant}:ann")
    await asyncio.sleep(LEASE_S + 0.05)  # the documented lease time: the token is no longer held
    await acquire(limiter, tenant, "ann", tenant_per_second=1000)  # gives it back and takes one
    # Without the return the bucket would be one interval (250 ms) further ahead than this.
    assert await client.pttl(f"rl:u:{tenant}:ann") <= held - 250
