"""The send path's access cache: concurrent misses share one lookup."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from echonats.model.errors import NotFound
from tests.unit.fakes import Harness


async def test_concurrent_misses_for_one_channel_and_user_query_the_store_once() -> None:
    h = Harness.build()
    owner = await h.new_tenant()
    channel = await h.services.channels.create(owner, name="general", is_private=False)
    h.services.access.forget_channel(channel.id)
    h.store.reads_take_a_turn = True
    before = h.store.operations["channels.get"]
    found = await asyncio.gather(*(h.services.access.readable(owner, channel.id) for _ in range(20)))
    assert {c.id for c in found} == {channel.id}
    assert h.store.operations["channels.get"] - before == 1
    await h.services.access.readable(owner, channel.id)  # cached now
    assert h.store.operations["channels.get"] - before == 1


async def test_a_shared_lookup_that_finds_nothing_refuses_every_waiter() -> None:
    h = Harness.build()
    owner = await h.new_tenant()
    nowhere = uuid.uuid4()
    h.store.reads_take_a_turn = True
    outcomes = await asyncio.gather(
        *(h.services.access.readable(owner, nowhere) for _ in range(5)), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [NotFound] * 5


async def test_concurrent_tenant_limit_misses_query_the_store_once() -> None:
    h = Harness.build()
    owner = await h.new_tenant()
    h.services.tenant_limits.forget(owner.tenant_id)
    h.store.reads_take_a_turn = True
    before = h.store.operations["tenants.get"]
    await asyncio.gather(*(h.services.tenant_limits.get(owner.tenant_id) for _ in range(10)))
    assert h.store.operations["tenants.get"] - before == 1


async def test_a_grant_read_before_an_eviction_is_neither_kept_nor_shared_after_it() -> None:
    """A lookup that read "bob is a member" just before his removal was committed returns after the
    eviction: callers that come after the eviction must not get that grant, cached or shared."""
    h = Harness.build()
    owner = await h.new_tenant()
    bob = await h.member(owner, "bob")
    secret = await h.services.channels.create(owner, name="secret", is_private=True)
    await h.services.channels.add_member(owner, secret.id, "bob")
    read_done, release = asyncio.Event(), asyncio.Event()
    original_read = h.store.read

    @contextlib.asynccontextmanager
    async def slow_read() -> AsyncIterator[Any]:
        async with original_read() as tx:
            yield tx
        read_done.set()
        await release.wait()  # the answer is on its way back while the removal commits

    h.store.read = slow_read  # type: ignore[method-assign]
    in_flight = asyncio.create_task(h.services.access.readable(bob, secret.id))
    await read_done.wait()
    await h.services.channels.remove_member(owner, secret.id, "bob")  # commits, then evicts
    later = asyncio.create_task(h.services.access.readable(bob, secret.id))
    release.set()
    assert (await in_flight).id == secret.id  # it asked before the removal: that answer is its own
    with pytest.raises(NotFound):
        await later  # not joined to the lookup in flight
    with pytest.raises(NotFound):
        await h.services.access.readable(bob, secret.id)  # and the old grant was not cached


async def test_fresh_reads_skip_the_cache() -> None:
    h = Harness.build()
    owner = await h.new_tenant()
    channel = await h.services.channels.create(owner, name="general", is_private=False)
    await h.services.access.readable(owner, channel.id)
    before = h.store.operations["channels.get"]
    await h.services.access.readable(owner, channel.id)
    await h.services.access.readable(owner, channel.id, fresh=True)
    assert h.store.operations["channels.get"] - before == 1
