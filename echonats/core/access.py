"""Who may read and post in a channel, cached briefly for the message hot path.

Sending must not cost a database round trip per message, so an allowed (channel, user) pair is
remembered for a few seconds, and concurrent misses for the same pair share one lookup (a sender
with many sends in flight would otherwise query once per send whenever the entry expires).
Changes made through this process evict entries at once; changes made elsewhere are evicted by
domain events (see the gateway's event listener) or expire.

Every eviction starts a new generation. A lookup that began before an eviction may have read the
database before the revocation was committed, so its grant is neither stored nor shared with
callers that come after the eviction: they run a lookup of their own. ``fresh=True`` skips the
cache entirely (re-checks after a revocation must read what is committed now).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from echonats.core.caller import Caller
from echonats.core.ports import Store
from echonats.model import Channel, Member, Tenant
from echonats.model.errors import NotFound, Unavailable

T = TypeVar("T")

DEFAULT_TTL_S = 5.0
DEFAULT_MAX_ENTRIES = 100_000
# How long after expiry a cached grant may still be used while the database is unavailable.
STALE_GRACE_S = 300.0


class _SingleFlight:
    """Concurrent calls for one key share one running lookup and its outcome."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, lookup: Callable[[], Awaitable[T]]) -> T:
        running: asyncio.Future[T] | None = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(lookup())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        # Shielded: a caller that gives up (its socket closed) must not cancel the others' lookup.
        return await asyncio.shield(running)

    def _finished(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        self._running.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every caller gave up waiting


class ChannelAccess:
    def __init__(
        self,
        store: Store,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._monotonic = monotonic
        self._allowed: dict[tuple[uuid.UUID, str], tuple[Channel, float]] = {}
        self._lookups = _SingleFlight()
        self._generation = 0  # bumped by every eviction (see the module docstring)
        # A channel never moves to another tenant, so its tenant is kept until evicted for room.
        self._tenants: dict[uuid.UUID, uuid.UUID] = {}

    async def readable(self, caller: Caller, channel_id: uuid.UUID, *, fresh: bool = False) -> Channel:
        """The channel, if the caller may read and post in it; NotFound otherwise.

        ``fresh``: decide from the database now, not from the cache nor from a lookup in flight."""
        key = (channel_id, caller.user_id)
        if fresh:
            return await self._look_up(caller, channel_id, None)
        hit = self._allowed.get(key)
        now = self._monotonic()
        if hit is not None and hit[0].tenant_id != caller.tenant_id:
            hit = None
        if hit is not None and hit[1] > now:
            return hit[0]
        return await self._lookups.run(
            (caller.tenant_id, channel_id, caller.user_id, self._generation),
            lambda: self._look_up(caller, channel_id, hit),
        )

    async def _look_up(
        self, caller: Caller, channel_id: uuid.UUID, hit: tuple[Channel, float] | None
    ) -> Channel:
        key = (channel_id, caller.user_id)
        now = self._monotonic()
        generation = self._generation
        try:
            async with self._store.read() as tx:
                channel = await tx.channels.get(caller.tenant_id, channel_id)
                if channel is None or (
                    channel.is_private and await tx.channels.member_role(channel_id, caller.user_id) is None
                ):
                    self._allowed.pop(key, None)
                    raise NotFound("channel not found")
        except Unavailable:
            # The database is down: a grant we saw recently still stands (revocations evict entries
            # at once through events), so senders keep being acked while JetStream holds messages.
            if hit is not None and now - hit[1] < STALE_GRACE_S:
                return hit[0]
            raise
        if generation != self._generation:
            return channel  # an eviction happened meanwhile: this grant may predate it, don't keep it
        if len(self._allowed) >= self._max_entries:
            self._allowed.pop(next(iter(self._allowed)))  # oldest insertion first
        self._allowed[key] = (channel, now + self._ttl_s)
        return channel

    async def tenant_of(self, channel_id: uuid.UUID) -> uuid.UUID | None:
        """The channel's tenant (None: no such channel), for callers whose token names none."""
        tenant_id = self._tenants.get(channel_id)
        if tenant_id is not None:
            return tenant_id
        async with self._store.read() as tx:
            tenant_id = await tx.workspaces.tenant_of_channel(channel_id)
        if tenant_id is not None:
            if len(self._tenants) >= self._max_entries:
                self._tenants.pop(next(iter(self._tenants)))
            self._tenants[channel_id] = tenant_id
        return tenant_id

    def forget_channel(self, channel_id: uuid.UUID) -> None:
        self._tenants.pop(channel_id, None)
        self._generation += 1
        for key in [k for k in self._allowed if k[0] == channel_id]:
            del self._allowed[key]

    def forget_member(self, channel_id: uuid.UUID, user_id: str) -> None:
        self._generation += 1
        self._allowed.pop((channel_id, user_id), None)

    def forget_user(self, user_id: str) -> None:
        self._generation += 1
        for key in [k for k in self._allowed if k[1] == user_id]:
            del self._allowed[key]


class TenantLimitsCache:
    """Tenants' limits for the send path, refreshed every few seconds and on limits events."""

    def __init__(
        self, store: Store, *, ttl_s: float = 10.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._tenants: dict[uuid.UUID, tuple[Tenant, float]] = {}
        self._lookups = _SingleFlight()

    async def get(self, tenant_id: uuid.UUID) -> Tenant:
        hit = self._tenants.get(tenant_id)
        if hit is not None and hit[1] > self._monotonic():
            return hit[0]
        return await self._lookups.run(tenant_id, lambda: self._look_up(tenant_id, hit))

    async def _look_up(self, tenant_id: uuid.UUID, hit: tuple[Tenant, float] | None) -> Tenant:
        now = self._monotonic()
        try:
            async with self._store.read() as tx:
                tenant = await tx.tenants.get(tenant_id)
        except Unavailable:
            if hit is not None and now - hit[1] < STALE_GRACE_S:
                return hit[0]  # last known limits while the database is down
            raise
        if tenant is None:
            raise NotFound("tenant not found")
        self._tenants[tenant_id] = (tenant, now + self._ttl_s)
        return tenant

    def forget(self, tenant_id: uuid.UUID) -> None:
        self._tenants.pop(tenant_id, None)


class MemberCache:
    """Callers' memberships for request authentication, so a warm gateway needs no database read per
    request. Evicted at once on local changes and on member events from other gateways."""

    def __init__(self, *, ttl_s: float = 30.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._members: dict[tuple[uuid.UUID, str], tuple[Member, float]] = {}

    def get(self, tenant_id: uuid.UUID, user_id: str, *, stale_ok: bool = False) -> Member | None:
        hit = self._members.get((tenant_id, user_id))
        if hit is None:
            return None
        age = self._monotonic() - hit[1]
        if age < self._ttl_s or (stale_ok and age < STALE_GRACE_S):
            return hit[0]
        return None

    def put(self, member: Member) -> None:
        if len(self._members) >= DEFAULT_MAX_ENTRIES:
            self._members.pop(next(iter(self._members)))
        self._members[(member.tenant_id, member.user_id)] = (member, self._monotonic())

    def forget(self, tenant_id: uuid.UUID, user_id: str) -> None:
        self._members.pop((tenant_id, user_id), None)

    def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        for key in [k for k in self._members if k[0] == tenant_id]:
            del self._members[key]
