"""Redis adapters for the real-time side: presence and typing throttling (send rate limits: see
``redis_ratelimit``).

Every read-modify-write is one Lua script (atomic on the server, one round trip) that reads the
clock with ``redis.call('TIME')``: all gateways then agree on "now" whatever their own clocks say.
Scripts are registered per client with ``register_script`` (EVALSHA, loaded on first use), so
importing this module does no I/O. Keys live in one Redis/Valkey (not Cluster: a send touches a
user key and a tenant key, presence a global schedule).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from echonats.adapters.redis.errors import REDIS_ERRORS, unavailable
from echonats.core.ports import ConnectionBeat
from echonats.model import PresenceChange, PresenceStatus

log = logging.getLogger(__name__)


# -- presence --------------------------------------------------------------------------------------

# Per user: conns ZSET (connection id -> expiry ms), active HASH (connection id -> last client
# activity ms), status STRING (last reported status; absent = offline). Globally, the due ZSET
# ("tenant|user" -> when the status may next change by itself: first expiry or the idle moment).
# Every mutating script ends in `settle`, which compares with the stored status and returns the
# change or false: that compare-and-set is what makes each change reported exactly once, even
# with several sweepers and gateways racing.
_PRESENCE_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function status_of(conns, active, now, idle_ms)
  local live = redis.call('ZRANGEBYSCORE', conns, '(' .. now, '+inf', 'WITHSCORES')
  if #live == 0 then return 'offline', nil end
  local ids = {}
  for i = 1, #live, 2 do ids[#ids + 1] = live[i] end
  local last = 0
  for _, a in ipairs(redis.call('HMGET', active, unpack(ids))) do
    local v = tonumber(a) or 0
    if v > last then last = v end
  end
  local first_expiry = tonumber(live[2])
  local idle_at = last + idle_ms
  if idle_at > now then return 'online', math.min(first_expiry, idle_at) end
  return 'idle', first_expiry
end
-- KEYS: conns, active, status, due. ARGV[1]: due member, ARGV[2]: idle ms.
local function settle(now)
  local conns, active, status_key, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local expired = redis.call('ZRANGEBYSCORE', conns, '-inf', now)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', conns, '-inf', now)
    redis.call('HDEL', active, unpack(expired))
  end
  local status, next_due = status_of(conns, active, now, tonumber(ARGV[2]))
  local previous = redis.call('GET', status_key) or 'offline'
  if status == 'offline' then
    redis.call('DEL', conns, active, status_key)
    redis.call('ZREM', due, ARGV[1])
  else
    -- hygiene only (a sweeper settles users long before): nothing here outlives its last expiry
    local last_expiry = tonumber(redis.call('ZRANGE', conns, -1, -1, 'WITHSCORES')[2])
    redis.call('PEXPIREAT', conns, last_expiry)
    redis.call('PEXPIREAT', active, last_expiry)
    redis.call('SET', status_key, status, 'PX', last_expiry - now + 86400000)
    redis.call('ZADD', due, next_due, ARGV[1])
  end
  if status == previous then return false end
  return status
end
"""

# ARGV[3]: ttl ms, then (connection id, last active ms) pairs. Activity never moves backwards.
_UPSERT = (
    _PRESENCE_LIB
    + """
local now = now_ms()
for i = 4, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[i])
  local known = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or 0)
  redis.call('HSET', KEYS[2], ARGV[i], math.max(known, tonumber(ARGV[i + 1])))
end
return settle(now)
"""
)

_REMOVE = (
    _PRESENCE_LIB
    + """
redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[3])
return settle(now_ms())
"""
)

_SETTLE = _PRESENCE_LIB + "\nreturn settle(now_ms())\n"

# KEYS: due. ARGV: batch size. Read-only: settling each user happens in its own script.
_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""

# KEYS: (conns, active) per user. ARGV[1]: idle ms. Read-only on purpose: settling here would
# consume a change the sweeper must still publish.
_STATUSES = (
    _PRESENCE_LIB
    + """
local now, out = now_ms(), {}
for i = 1, #KEYS, 2 do out[#out + 1] = (status_of(KEYS[i], KEYS[i + 1], now, tonumber(ARGV[1]))) end
return out
"""
)

DUE_KEY = "pr:due"
SWEEP_BATCH = 500
SWEEP_MAX_BATCHES = 20  # bound one sweep() call; what is left is due again on the next tick


def presence_keys(tenant_id: uuid.UUID, user_id: str) -> list[str]:
    """The four keys a per-user presence script touches, in script order."""
    return [
        f"pr:c:{tenant_id}:{user_id}",
        f"pr:a:{tenant_id}:{user_id}",
        f"pr:s:{tenant_id}:{user_id}",
        DUE_KEY,
    ]


def due_member(tenant_id: uuid.UUID, user_id: str) -> str:
    return f"{tenant_id}|{user_id}"


def parse_due_member(member: str) -> tuple[uuid.UUID, str]:
    """Inverse of ``due_member``; a UUID has no ``|``, so the first one separates (user ids may have more)."""
    tenant, _, user = member.partition("|")
    return uuid.UUID(tenant), user


def group_beats(beats: Sequence[ConnectionBeat]) -> dict[tuple[uuid.UUID, str], list[ConnectionBeat]]:
    """Beats per (tenant, user), in first-seen order, so each user is settled by one script call."""
    grouped: dict[tuple[uuid.UUID, str], list[ConnectionBeat]] = {}
    for beat in beats:
        grouped.setdefault((beat.tenant_id, beat.user_id), []).append(beat)
    return grouped


class RedisPresenceStore:
    """Presence across all gateways (see the data model above).

    Redis errors raise ``Unavailable``: presence is best effort and the caller (gateway or sweeper)
    decides to log and carry on. Times come from the Redis server, except ``last_active_at`` which
    the gateway measures; the skew between hosts is negligible next to ``idle_after_s``.
    """

    def __init__(self, client: aioredis.Redis, *, ttl_s: float, idle_after_s: float) -> None:
        self._client = client
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._idle_ms = max(1, round(idle_after_s * 1000))
        self._upsert = client.register_script(_UPSERT)
        self._remove = client.register_script(_REMOVE)
        self._settle = client.register_script(_SETTLE)
        self._due = client.register_script(_DUE)
        self._statuses = client.register_script(_STATUSES)

    async def connect(self, beat: ConnectionBeat) -> PresenceChange | None:
        changes = await self.heartbeat([beat])
        return changes[0] if changes else None

    async def disconnect(
        self, tenant_id: uuid.UUID, user_id: str, connection_id: str
    ) -> PresenceChange | None:
        args: list[str | int] = [due_member(tenant_id, user_id), self._idle_ms, connection_id]
        with unavailable("presence"):
            result = await self._remove(keys=presence_keys(tenant_id, user_id), args=args)
        return _change(tenant_id, user_id, result)

    async def heartbeat(self, beats: Sequence[ConnectionBeat]) -> list[PresenceChange]:
        """Refresh (or re-add: a gateway cut off from Redis for longer than the TTL still holds them)
        the given connections; one pipelined round trip for all users."""
        grouped = group_beats(beats)
        if not grouped:
            return []

        async def queue(pipe: Any) -> None:
            for (tenant_id, user_id), user_beats in grouped.items():
                args: list[str | int] = [due_member(tenant_id, user_id), self._idle_ms, self._ttl_ms]
                for beat in user_beats:
                    args += [beat.connection_id, int(beat.last_active_at * 1000)]
                await self._upsert(keys=presence_keys(tenant_id, user_id), args=args, client=pipe)

        results = await self._pipelined(queue)
        return [c for (t, u), r in zip(grouped, results, strict=True) if (c := _change(t, u, r))]

    async def sweep(self) -> list[PresenceChange]:
        changes: list[PresenceChange] = []
        for _ in range(SWEEP_MAX_BATCHES):
            members = await self.due_members(SWEEP_BATCH)
            changes += await self.settle_members(members)
            if len(members) < SWEEP_BATCH:
                break
        return changes

    async def due_members(self, limit: int) -> list[str]:
        """Users whose status may have changed by itself (``sweep`` step one; public for tests)."""
        with unavailable("presence sweep"):
            members = await self._due(keys=[DUE_KEY], args=[limit])
        return [as_text(m) for m in members]

    async def settle_members(self, members: Sequence[str]) -> list[PresenceChange]:
        """Recompute each user atomically and return the changes (``sweep`` step two)."""
        users = [parse_due_member(m) for m in members]
        if not users:
            return []

        async def queue(pipe: Any) -> None:
            for (tenant_id, user_id), member in zip(users, members, strict=True):
                keys = presence_keys(tenant_id, user_id)
                await self._settle(keys=keys, args=[member, self._idle_ms], client=pipe)

        results = await self._pipelined(queue)
        return [c for (t, u), r in zip(users, results, strict=True) if (c := _change(t, u, r))]

    async def statuses(self, tenant_id: uuid.UUID, user_ids: Sequence[str]) -> dict[str, PresenceStatus]:
        unique = list(dict.fromkeys(user_ids))
        out: dict[str, PresenceStatus] = {}
        with unavailable("presence"):
            for start in range(0, len(unique), SWEEP_BATCH):
                chunk = unique[start : start + SWEEP_BATCH]
                keys = [k for u in chunk for k in presence_keys(tenant_id, u)[:2]]
                found = await self._statuses(keys=keys, args=[self._idle_ms])
                out.update((u, PresenceStatus(as_text(s))) for u, s in zip(chunk, found, strict=True))
        return out

    async def _pipelined(self, queue: Any) -> list[Any]:
        with unavailable("presence"):
            async with self._client.pipeline(transaction=False) as pipe:
                await queue(pipe)
                return list(await pipe.execute())


def _change(tenant_id: uuid.UUID, user_id: str, result: object) -> PresenceChange | None:
    if result is None:  # the script's `false`: nothing changed
        return None
    return PresenceChange(tenant_id, user_id, PresenceStatus(as_text(result)))


def as_text(value: object) -> str:
    # Works with clients created with or without decode_responses.
    return value.decode() if isinstance(value, bytes) else str(value)


# -- typing ----------------------------------------------------------------------------------------


class RedisTypingThrottle:
    """At most one typing indicator per interval per (channel, user), across all gateways.

    Fail open on Redis errors (and when Redis is slower than ``timeout_s``): a few extra typing
    indicators are harmless, dropping them all while Redis restarts is not.
    """

    def __init__(self, client: aioredis.Redis, *, interval_s: float, timeout_s: float = 0.25) -> None:
        self._client = client
        self._interval_ms = round(interval_s * 1000)
        self._timeout_s = timeout_s

    async def allow(self, tenant_id: uuid.UUID, channel_id: uuid.UUID, user_id: str) -> bool:
        if self._interval_ms <= 0:
            return True  # throttling disabled: no Redis round trip at all
        key = f"ty:{tenant_id}:{channel_id}:{user_id}"
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await self._client.set(key, 1, nx=True, px=self._interval_ms))
        except REDIS_ERRORS as exc:
            log.debug("typing throttle unavailable, allowing: %r", exc)
            return True
