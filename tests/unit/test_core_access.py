"""The send path's access cache: concurrent misses share one lookup."""

from __future__ import annotations

import asyncio
import uuid

from echonats.errors import NotFound
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
