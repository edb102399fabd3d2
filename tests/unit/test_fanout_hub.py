"""The fanout hub over a fake live feed and message log: live delivery, gap repair, release."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from echonats.core.caller import Caller
from echonats.gateway.connection import Connection, SharedFrames, WriteCoalescer
from echonats.gateway.fanout import Hub
from echonats.model import Entry, Message, NewMessage
from echonats.model.errors import Unavailable
from tests.unit.fake_live import FakeLiveFeed
from tests.unit.fakes import EPOCH, Harness


class _NoSink:
    def write_now(self, frame: bytes) -> bool:
        return True

    async def flush(self, frames: list[bytes]) -> None:
        frames.clear()


async def _ignore(event: Any) -> None:
    return None


class RecordingConnection(Connection):
    """A socket that records the ids of the messages handed to it."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller, _ignore, sink=_NoSink(), coalescer=WriteCoalescer(), max_queue=64)
        self.received: list[int] = []

    def send_entry(self, message: Entry, shared: SharedFrames) -> None:
        self.received.append(message.id)

    def send_subscribed(self, channel_id: uuid.UUID) -> None:
        pass

    # The hub's other hooks: not what these tests look at (every subclass must render them all).
    def send_typing(
        self, channel_id: uuid.UUID, user_id: str, display_name: str, shared: SharedFrames
    ) -> None:
        pass

    def send_presence(self, user_id: str, status: str, shared: SharedFrames) -> None:
        pass

    def send_unsubscribed(self, channel_id: uuid.UUID) -> None:
        pass

    def send_resync_required(self, channel_id: uuid.UUID) -> None:
        pass


async def _setup() -> tuple[Harness, FakeLiveFeed, Hub, RecordingConnection, uuid.UUID]:
    h = Harness.build()
    owner = await h.new_tenant()
    channel = await h.services.channels.create(owner, name="general", is_private=False)
    feed = FakeLiveFeed()
    hub = Hub(feed, h.log, h.services.access, replay_limit=100)
    conn = RecordingConnection(owner)
    await hub.attach(conn)
    await hub.subscribe(conn, channel.id, since=None)
    return h, feed, hub, conn, channel.id


async def _store(h: Harness, conn: Connection, channel_id: uuid.UUID, body: str) -> Message:
    appended = await (
        await h.log.begin_append(
            NewMessage(conn.tenant_id, channel_id, conn.user_id, "Owner", body, None, EPOCH)
        )
    )
    message = await h.log.get(appended.message_id)
    assert message is not None
    return message


async def test_a_delivery_after_a_missed_one_reads_the_gap_back_first() -> None:
    h, feed, hub, conn, channel_id = await _setup()
    first = await _store(h, conn, channel_id, "one")
    await feed.deliver(first, 0)
    missed = await _store(h, conn, channel_id, "two")  # stored, its live delivery lost
    third = await _store(h, conn, channel_id, "three")
    await feed.deliver(third, missed.id)
    assert conn.received == [first.id, missed.id, third.id]
    assert h.log.reads == [(missed.id, 100)]
    await feed.deliver(missed, first.id)  # arrives late after all: not delivered twice
    assert conn.received == [first.id, missed.id, third.id]
    await hub.close()


async def test_an_unreadable_gap_still_delivers_what_arrived() -> None:
    h, feed, hub, conn, channel_id = await _setup()
    first = await _store(h, conn, channel_id, "one")
    await feed.deliver(first, 0)
    missed = await _store(h, conn, channel_id, "two")
    third = await _store(h, conn, channel_id, "three")
    h.log.read_fails_with = Unavailable("JetStream: down")
    await feed.deliver(third, missed.id)
    assert conn.received == [first.id, third.id]
    await hub.close()


async def test_the_last_socket_leaving_and_close_cancel_the_interests() -> None:
    _, feed, hub, conn, channel_id = await _setup()
    assert set(feed.watching) == {conn.tenant_id, (conn.tenant_id, channel_id)}
    await hub.unsubscribe(conn, channel_id)
    assert set(feed.watching) == {conn.tenant_id}
    await hub.subscribe(conn, channel_id, since=None)
    await hub.close()
    assert feed.watching == {}


async def test_a_catch_up_during_a_gap_repair_delivers_nothing_twice() -> None:
    """A reconnect's catch-up may read (and deliver) the live message whose gap is being repaired:
    the live delivery must then not hand it over a second time."""
    h, feed, hub, conn, channel_id = await _setup()
    first = await _store(h, conn, channel_id, "one")
    await feed.deliver(first, 0)
    missed = await _store(h, conn, channel_id, "two")
    third = await _store(h, conn, channel_id, "three")
    gate = asyncio.Event()
    reading = asyncio.Event()
    read = h.log.read_channel

    async def slow_first_read(*args: Any, **kwargs: Any) -> tuple[list[Message], bool]:
        if not reading.is_set():
            reading.set()
            await gate.wait()  # held until the catch-up below has run
        return await read(*args, **kwargs)

    h.log.read_channel = slow_first_read  # type: ignore[method-assign]
    live = asyncio.create_task(feed.deliver(third, missed.id))
    await reading.wait()
    await hub.catch_up()  # reads and delivers two and three while the live repair waits
    gate.set()
    await live
    assert conn.received == [first.id, missed.id, third.id]
    await hub.close()
