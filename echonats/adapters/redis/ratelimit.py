"""Send rate limits in Redis (GCRA), shared by all gateways, leased and batched.

A rate-limit check is a Lua script that reads the clock with ``redis.call('TIME')`` (every gateway
agrees on "now") and updates both buckets atomically. Each call through redis-py costs ~100 µs of
gateway CPU, which at a few thousand sends/s was the largest single cost of a send. So a busy
bucket is leased (``leases``: a gateway spends up to a quarter second's worth of tokens without
asking again), and the calls that sockets need during one event-loop iteration go to Redis together, as
one script call: one round trip and one command for all of them, evaluated in the order asked.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from echonats import metrics
from echonats.adapters.redis.errors import REDIS_ERRORS
from echonats.adapters.redis.leases import LeaseBook, lease_size, sends_granted
from echonats.adapters.redis.realtime import as_text
from echonats.model.errors import RateLimited

log = logging.getLogger(__name__)

# GCRA: a bucket is its "theoretical arrival time" (TAT, unix ms). A send is allowed when, after
# adding one emission interval, the TAT is at most `burst` intervals ahead of now; the excess is
# exactly how long to wait. Both buckets are checked before either moves (all or nothing per send).
# One call evaluates several requests in order; request i takes up to `count` consecutive sends,
# stopping at the first refused one. The first `free_u` (`free_t`) of them take no user (tenant)
# token: the gateway holds those already. When all are granted, up to `extra_u`/`extra_t` more
# tokens are leased (as many as the bucket holds). `ret_u`/`ret_t` are leased tokens handed back
# unused (the TAT moves back, never below now: a full bucket stays full).
# KEYS: user bucket i, tenant bucket i, ... ARGV per request (11): user interval ms, user burst,
# tenant interval ms, tenant burst, count, free_u, free_t, extra_u, extra_t, ret_u, ret_t.
# Returns per request: granted, retry after ms, 'user'|'tenant'|'', leased_u, leased_t.
_GCRA_BATCH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tats = {}
local function tat_of(key)
  local tat = tats[key]
  if tat == nil then
    tat = math.max(tonumber(redis.call('GET', key) or 0), now)
    tats[key] = tat
  end
  return tat
end
local function lease(tat, interval, burst, extra)
  local room = math.floor((now + interval * burst + 0.01 - tat) / interval)
  return math.max(0, math.min(extra, room))
end
local out = {}
for i = 0, #KEYS / 2 - 1 do
  local ukey, tkey = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local a = 11 * i
  local u_int, u_burst = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local t_int, t_burst = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local count, free_u, free_t = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])
  local extra_u, extra_t = tonumber(ARGV[a + 8]), tonumber(ARGV[a + 9])
  local u_tat = math.max(tat_of(ukey) - tonumber(ARGV[a + 10]) * u_int, now)
  local t_tat = math.max(tat_of(tkey) - tonumber(ARGV[a + 11]) * t_int, now)
  local granted, retry, scope = 0, 0, ''
  while granted < count do
    local u_new, t_new, u_over, t_over = u_tat, t_tat, -1, -1
    if granted >= free_u then
      u_new = u_tat + u_int
      u_over = u_new - now - u_int * u_burst
    end
    if granted >= free_t then
      t_new = t_tat + t_int
      t_over = t_new - now - t_int * t_burst
    end
    -- 0.01 ms of slack absorbs float rounding of the stored TATs (a burst at one instant must pass)
    if u_over > 0.01 or t_over > 0.01 then
      if u_over >= t_over then
        retry, scope = math.max(1, math.ceil(u_over)), 'user'
      else
        retry, scope = math.max(1, math.ceil(t_over)), 'tenant'
      end
      break
    end
    u_tat, t_tat, granted = u_new, t_new, granted + 1
  end
  local leased_u, leased_t = 0, 0
  if granted == count then
    leased_u = lease(u_tat, u_int, u_burst, extra_u)
    leased_t = lease(t_tat, t_int, t_burst, extra_t)
    u_tat, t_tat = u_tat + leased_u * u_int, t_tat + leased_t * t_int
  end
  tats[ukey], tats[tkey] = u_tat, t_tat
  out[#out + 1] = granted
  out[#out + 1] = retry
  out[#out + 1] = scope
  out[#out + 1] = leased_u
  out[#out + 1] = leased_t
end
for key, tat in pairs(tats) do
  -- expire when the bucket is full again: an absent key means exactly that
  if tat > now then
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.max(1, math.ceil(tat - now)))
  else
    redis.call('DEL', key)
  end
end
return out
"""

FAIL_OPEN_LOG_INTERVAL_S = 10.0
MAX_BATCH = 500  # requests per script call (bounds one call's time inside Redis)


@dataclass(slots=True)
class _Request:
    keys: tuple[str, str]
    args: list[str | int]
    answer: asyncio.Future[tuple[int, int, str, int, int] | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class RedisRateLimiter:
    """Per-user and per-tenant send limits (GCRA), shared by all gateways through Redis.

    The user bucket allows ``user_burst`` sends at once, refilling at ``user_per_second``. The tenant
    bucket refills at ``tenant_per_second`` with a burst of one second's worth (at least 1): a tenant
    limit reads as "messages per second", so letting a full second arrive at once is the most that
    limit can mean without a second knob, and a quiet tenant is not punished for its first spike.
    A busy bucket is leased for ``LEASE_S`` (see ``leases`` for what that does to precision).

    Fail open: when Redis fails or is slower than ``timeout_s``, the send is allowed, counted in
    ``echonats_rate_limit_fail_open_total`` and logged at most once per 10 s. Chat must keep working
    while Redis restarts; JetStream's stream limits and the WebSocket frame limits still bound what
    an abusive client can do meanwhile.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        user_per_second: float,
        user_burst: int,
        timeout_s: float = 0.5,
        resend_window_s: float = 600.0,
    ) -> None:
        if user_per_second <= 0 or user_burst < 1:
            raise ValueError("user_per_second must be > 0 and user_burst >= 1")
        self._script = client.register_script(_GCRA_BATCH)
        self._user_interval = repr(1000.0 / user_per_second)
        self._user_limit = math.ceil(user_per_second)
        self._user_burst = user_burst
        self._user_lease = lease_size(user_per_second, user_burst)
        self._timeout_s = timeout_s
        self._book = LeaseBook(resend_window_s)
        self._last_warning = -math.inf
        self._waiting: list[_Request] = []
        self._running: set[asyncio.Future[None]] = set()

    async def acquire_many(
        self,
        tenant_id: uuid.UUID,
        user_id: str,
        count: int,
        *,
        tenant_per_second: int,
        resend_keys: Sequence[str | None] = (),
    ) -> tuple[int, RateLimited | None]:
        tenant_rate = max(1, tenant_per_second)  # the API enforces >= 1; never divide by zero here
        charged = self._book.charged(resend_keys, count)
        need = sum(charged)
        now = time.monotonic()
        user = self._book.credit(f"rl:u:{tenant_id}:{user_id}")
        tenant = self._book.credit(f"rl:t:{tenant_id}")
        held_u, held_t = min(user.available(now), need), min(tenant.available(now), need)
        user.spend(held_u)  # reserved for this request; what it does not use comes back below
        tenant.spend(held_t)
        if held_u == need and held_t == need:
            self._book.remember(resend_keys, charged, count)
            return count, None
        request = _Request(
            keys=(f"rl:u:{tenant_id}:{user_id}", f"rl:t:{tenant_id}"),
            args=[
                self._user_interval,
                self._user_burst,
                repr(1000.0 / tenant_rate),
                tenant_rate,
                need,
                held_u,
                held_t,
                user.lease(need - held_u, self._user_lease, now),
                tenant.lease(need - held_t, lease_size(tenant_rate, tenant_rate), now),
                user.take_returning(),
                tenant.take_returning(),
            ],
        )
        self._waiting.append(request)
        if len(self._waiting) == 1:
            asyncio.get_running_loop().call_soon(self._send_waiting)
        elif len(self._waiting) >= MAX_BATCH:
            self._send_waiting()
        outcome = await request.answer
        now = time.monotonic()
        if outcome is None:  # Redis failed: fail open
            user.add(held_u, now)  # what was reserved is still held
            tenant.add(held_t, now)
            self._book.remember(resend_keys, charged, count)
            return count, None
        taken, retry_after_ms, scope, leased_u, leased_t = outcome
        user.add(held_u - min(taken, held_u) + leased_u, now)
        tenant.add(held_t - min(taken, held_t) + leased_t, now)
        granted = sends_granted(charged, taken)
        self._book.remember(resend_keys, charged, granted)
        if granted == count:
            return count, None
        limit = self._user_limit if scope == "user" else tenant_rate
        refusal = RateLimited(
            f"{scope} rate limit exceeded ({limit}/s)", retry_after_ms=retry_after_ms, limit=limit
        )
        refusal.details["scope"] = scope
        return granted, refusal

    def _send_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        if batch:
            task = asyncio.ensure_future(self._evaluate(batch))
            self._running.add(task)  # a reference, or the loop may collect it mid-flight
            task.add_done_callback(self._running.discard)

    async def _evaluate(self, batch: list[_Request]) -> None:
        keys = [key for request in batch for key in request.keys]
        args = [arg for request in batch for arg in request.args]
        try:
            async with asyncio.timeout(self._timeout_s):
                flat = await self._script(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            self._fail_open(exc, len(batch))
            for request in batch:
                if not request.answer.done():
                    request.answer.set_result(None)
            return
        except BaseException as exc:  # a bug or cancellation: nobody may wait forever
            for request in batch:
                if not request.answer.done():
                    request.answer.set_exception(exc)
            raise
        for index, request in enumerate(batch):
            if not request.answer.done():  # its sender may have gone meanwhile
                granted, retry, scope, leased_u, leased_t = flat[5 * index : 5 * index + 5]
                request.answer.set_result(
                    (int(granted), int(retry), as_text(scope), int(leased_u), int(leased_t))
                )

    def _fail_open(self, exc: BaseException, requests: int) -> None:
        metrics.rate_limit_fail_open.inc(requests)
        now = time.monotonic()
        if now - self._last_warning >= FAIL_OPEN_LOG_INTERVAL_S:
            self._last_warning = now
            log.warning("rate limiter unavailable, allowing sends unchecked: %r", exc)
