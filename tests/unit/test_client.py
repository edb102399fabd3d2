"""echonats.client against a fake connection: resume, dedupe, nonces, rate limits, fatal closes.

The connector is injected (every connection is a ``FakeTransport`` the test drives), backoff and
sleeps are injected too (zero delays, recorded): nothing waits on the wall clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from echonats.client import (
    Client,
    ConnectionFailed,
    Event,
    RateLimited,
    Refused,
    ServerError,
    UnknownFrame,
    full_jitter,
)
from echonats.client.frames import decode
from echonats.client.transport import socket_url
from echonats.gateway import feed_frames as ff
from echonats.gateway import protocol as p
from tests.unit.fake_client import (
    CHANNEL,
    OTHER,
    Clock,
    FakeGateway,
    ack,
    message,
    thread_updated,
)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def client(gateway: FakeGateway, clock: Clock, **options: Any) -> Client:
    options.setdefault("token", "t0")
    return Client(
        "http://gw:8000", connector=gateway, backoff=lambda attempt: 0.0, sleep=clock.sleep, **options
    )


@pytest.fixture
async def chat(gateway: FakeGateway, clock: Clock) -> AsyncIterator[Client]:
    async with client(gateway, clock) as opened:
        yield opened


async def take(events: AsyncIterator[Event], count: int) -> list[Event]:
    async with asyncio.timeout(2):
        return [await anext(events) for _ in range(count)]


async def drain(chat: Client) -> list[Event]:
    """Every event until ``events()`` ends (or raises)."""
    async with asyncio.timeout(2), aclosing(chat.events()) as events:
        return [event async for event in events]


def ids(events: list[Event]) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for event in events:
        if isinstance(event, p.MessageFrame):
            found.append(("message", event.payload.message_id))
        elif isinstance(event, p.ThreadUpdated):
            found.append(("thread", event.id))
    return found


async def test_a_dropped_connection_resumes_every_channel_from_the_last_delivered_id(
    chat: Client, gateway: FakeGateway
) -> None:
    first = await gateway.connection(1)
    assert first.headers == {"Authorization": "Bearer t0"}
    assert gateway.url == "ws://gw:8000/ws"
    await chat.subscribe(CHANNEL)
    await chat.subscribe(OTHER, since=40)
    assert first.of_type("subscribe") == [
        {"type": "subscribe", "channelId": str(CHANNEL), "since": None},
        {"type": "subscribe", "channelId": str(OTHER), "since": 40},
    ]
    async with aclosing(chat.events()) as events:
        for i in (1, 2, 3):
            first.push(message(i))
        assert ids(await take(events, 3)) == [("message", 1), ("message", 2), ("message", 3)]
        first.drop()
        second = await gateway.connection(2)
        await second.wait_sent("ping")
    assert {f["channelId"]: f["since"] for f in second.of_type("subscribe")} == {
        str(CHANNEL): 3,
        str(OTHER): 40,
    }
    assert second.sent[-1] == {"type": "ping"}  # after the resume: its pong says it is complete
    assert chat.reconnects == 1
    assert chat.position(CHANNEL) == 3


async def test_frames_replayed_after_a_resume_are_delivered_once(chat: Client, gateway: FakeGateway) -> None:
    first = await gateway.connection(1)
    await chat.subscribe(CHANNEL)
    async with aclosing(chat.events()) as events:
        first.push(message(1))
        first.push(message(2))
        first.push(message(5, thread_id=1))  # a reply: its thread_updated (id 5) follows
        assert ids(await take(events, 3)) == [("message", 1), ("message", 2), ("message", 5)]
        first.drop()  # before the thread_updated arrived
        second = await gateway.connection(2)
        subscribe = await second.wait_sent("subscribe")
        assert subscribe["since"] == 4  # so that the thread_updated of 5 comes again
        for frame in (message(2), message(5, thread_id=1), thread_updated(5, 1), message(6)):
            second.push(frame)  # the server's replay, overlapping what was delivered
        second.push(message(6))  # and a duplicate for good measure
        second.push(message(7))
        assert await take(events, 1) == [ff.FeedResyncRequired()]  # no feed position: said once
        assert ids(await take(events, 3)) == [("thread", 5), ("message", 6), ("message", 7)]


async def test_a_send_is_resent_with_the_same_nonce_after_a_reconnect(
    chat: Client, gateway: FakeGateway
) -> None:
    first = await gateway.connection(1)
    sending = asyncio.create_task(chat.send(CHANNEL, "hello"))
    original = await first.wait_sent("send")
    first.drop()  # the ack never came: stored or not, the client cannot know
    second = await gateway.connection(2)
    resent = await second.wait_sent("send")
    assert resent == original
    assert len(original["nonce"]) >= 16
    second.push(ack(original["nonce"], message_id=42))
    answer = await asyncio.wait_for(sending, 2)
    assert answer.message_id == 42
    assert answer.nonce == original["nonce"]
    assert len(second.of_type("send")) == 1  # once per connection, not by the resume and again


async def test_rate_limited_sends_wait_the_retry_after_then_resend_with_the_same_nonce(
    chat: Client, gateway: FakeGateway, clock: Clock
) -> None:
    transport = await gateway.connection(1)
    sending = asyncio.create_task(chat.send(CHANNEL, "hi", nonce="n-1"))
    await transport.wait_sent("send")
    transport.push(p.ErrorFrame(code="rate_limited", message="slow down", ref="n-1", retry_after_ms=1500))
    resent = await transport.wait_sent("send", count=2)
    assert resent["nonce"] == "n-1"
    assert 1.5 in clock.slept
    transport.push(ack("n-1", 9))
    assert (await asyncio.wait_for(sending, 2)).message_id == 9


async def test_rate_limited_retries_are_bounded(gateway: FakeGateway, clock: Clock) -> None:
    async with client(gateway, clock, rate_limit_retries=1) as chat:
        transport = await gateway.connection(1)
        sending = asyncio.create_task(chat.send(CHANNEL, "hi", nonce="n-2"))
        for count in (1, 2):
            await transport.wait_sent("send", count=count)
            transport.push(p.ErrorFrame(code="rate_limited", message="no", ref="n-2", retry_after_ms=10))
        with pytest.raises(RateLimited) as raised:
            await asyncio.wait_for(sending, 2)
    assert raised.value.retry_after_ms == 10
    assert len(transport.of_type("send")) == 2


async def test_other_errors_raise_with_the_servers_code_and_message(
    chat: Client, gateway: FakeGateway
) -> None:
    transport = await gateway.connection(1)
    sending = asyncio.create_task(chat.send(CHANNEL, "x", nonce="n-3"))
    await transport.wait_sent("send")
    transport.push(p.ErrorFrame(code="not_found", message="no such channel", ref="n-3"))
    with pytest.raises(ServerError) as raised:
        await asyncio.wait_for(sending, 2)
    assert (raised.value.code, raised.value.message) == ("not_found", "no such channel")
    gateway.answer = transport.answer = False
    subscribing = asyncio.create_task(chat.subscribe(OTHER))
    await transport.wait_sent("subscribe")
    transport.push(p.ErrorFrame(code="not_found", message="no such channel", ref=str(OTHER)))
    with pytest.raises(ServerError):
        await asyncio.wait_for(subscribing, 2)
    assert chat.position(OTHER) is None


@pytest.mark.parametrize("code", [4003, 4004, 1008, 4001])
async def test_a_fatal_close_raises_from_events_and_waiting_requests(
    gateway: FakeGateway, clock: Clock, code: int
) -> None:
    async with client(gateway, clock) as chat:
        transport = await gateway.connection(1)
        sending = asyncio.create_task(chat.send(CHANNEL, "x"))
        await transport.wait_sent("send")
        transport.drop(code, "go away")
        with pytest.raises(ConnectionFailed) as raised:
            await drain(chat)
        with pytest.raises(ConnectionFailed):
            await asyncio.wait_for(sending, 2)
        with pytest.raises(ConnectionFailed):
            await chat.send(CHANNEL, "after")
    assert (raised.value.code, raised.value.reason) == (code, "go away")
    assert len(gateway.connections) == 1  # no reconnect


async def test_a_token_provider_gets_one_fresh_try_after_4001(gateway: FakeGateway, clock: Clock) -> None:
    tokens = iter(["t1", "t2", "t3"])

    async def fresh() -> str:
        return next(tokens)

    async with client(gateway, clock, token=fresh) as chat:
        first = await gateway.connection(1)
        first.drop(4001, "token expired")  # after being served: the token ran out
        second = await gateway.connection(2)
        await second.wait_sent("ping")
        assert second.headers["Authorization"] == "Bearer t2"
        await chat.ping()
        gateway.answer = False  # the next connection serves nothing
        second.drop(4001, "token expired")
        third = await gateway.connection(3)
        assert third.headers["Authorization"] == "Bearer t3"
        third.drop(4001, "bad token")  # refused before serving anything: a fresh token did not help
        with pytest.raises(ConnectionFailed):
            await drain(chat)


async def test_an_unknown_frame_type_is_an_event_and_reading_goes_on(
    chat: Client, gateway: FakeGateway
) -> None:
    transport = await gateway.connection(1)
    await chat.subscribe(CHANNEL)
    transport.push('{"type":"hologram","channelId":"x","depth":3}')
    transport.push("not json at all")
    transport.push('{"type":"message","channelId":"not-a-uuid"}')  # a known type, shaped anew
    transport.push(message(1))
    async with aclosing(chat.events()) as events:
        unknown, reshaped, known = await take(events, 3)
    assert unknown == UnknownFrame("hologram", {"type": "hologram", "channelId": "x", "depth": 3})
    assert isinstance(reshaped, UnknownFrame)
    assert reshaped.type == "message"
    assert isinstance(known, p.MessageFrame)
    assert decode(b"[1]") is None


async def test_what_cannot_be_resumed_is_told_to_the_application(gateway: FakeGateway, clock: Clock) -> None:
    async with client(gateway, clock) as chat:
        first = await gateway.connection(1)
        await chat.subscribe(CHANNEL)  # live: no position until something arrives
        await chat.subscribe(OTHER)
        first.push(p.Unsubscribed(channel_id=OTHER))  # access revoked by the server
        first.push(p.ResyncRequired(channel_id=CHANNEL))
        async with aclosing(chat.events()) as events:
            assert await take(events, 2) == [
                p.Unsubscribed(channel_id=OTHER),
                p.ResyncRequired(channel_id=CHANNEL),
            ]
            first.drop(1012)
            second = await gateway.connection(2)
            gaps = await take(events, 2)
        assert gaps == [p.ResyncRequired(channel_id=CHANNEL), ff.FeedResyncRequired()]
        assert [f["channelId"] for f in second.of_type("subscribe")] == [str(CHANNEL)]  # not OTHER


async def test_the_feed_resumes_from_the_last_feed_id(gateway: FakeGateway, clock: Clock) -> None:
    def read_state(feed_id: int) -> ff.ReadStateFrame:
        return ff.ReadStateFrame(feed_id=feed_id, channel_id=CHANNEL, last_read_id=1)

    async with client(gateway, clock, feed_since=10) as chat:
        first = await gateway.connection(1)
        assert first.of_type("feed") == [{"type": "feed", "since": 10}]
        first.push(read_state(10))  # seen already
        first.push(read_state(11))
        async with aclosing(chat.events()) as events:
            assert await take(events, 1) == [read_state(11)]
            first.drop()
            second = await gateway.connection(2)
            assert (await second.wait_sent("feed"))["since"] == 11
            second.push(read_state(11))
            second.push(read_state(12))
            assert await take(events, 1) == [read_state(12)]


async def test_reconnects_back_off_and_honour_an_upgrades_retry_after(
    gateway: FakeGateway, clock: Clock
) -> None:
    delays: list[int] = []

    def backoff(attempt: int) -> float:
        delays.append(attempt)
        return 0.25

    async with Client("ws://gw/ws", "t", connector=gateway, backoff=backoff, sleep=clock.sleep) as chat:
        gateway.refusals = [Refused("HTTP 429", retry_after_s=2.0), Refused("refused")]
        (await gateway.connection(1)).drop()
        await (await gateway.connection(2)).wait_sent("ping")
        await chat.ping()
    assert delays == [0, 1, 2]
    assert clock.slept == [0.25, 2.0, 0.25]


async def test_reconnect_attempts_are_bounded(gateway: FakeGateway, clock: Clock) -> None:
    async with client(gateway, clock, reconnect_attempts=2) as chat:
        gateway.refusals = [Refused("refused"), Refused("refused")]
        (await gateway.connection(1)).drop()
        with pytest.raises(ConnectionFailed, match="after 2 attempts"):
            await drain(chat)


async def test_close_ends_events_and_leaves_no_task(gateway: FakeGateway, clock: Clock) -> None:
    before = asyncio.all_tasks()
    chat = client(gateway, clock)
    await chat.open()

    async def first_event() -> Event:
        return await anext(chat.events())

    waiting = asyncio.create_task(first_event())
    await (await gateway.connection(1)).wait_sent("ping")
    await chat.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 2)
    assert asyncio.all_tasks() == before


async def test_the_first_connection_raises_when_the_gateway_is_unreachable(
    gateway: FakeGateway, clock: Clock
) -> None:
    gateway.refusals = [Refused("connection refused")]
    with pytest.raises(ConnectionFailed, match="refused"):
        async with client(gateway, clock):
            pass


def test_urls_and_backoff() -> None:
    assert socket_url("http://h:1") == "ws://h:1/ws"
    assert socket_url("https://h/", tenant="abc") == "wss://h/ws?tenant=abc"
    assert socket_url("ws://h:2/ws?x=1") == "ws://h:2/ws?x=1"
    with pytest.raises(ValueError, match="URL"):
        socket_url("ftp://h")
    delay = full_jitter(base_s=1.0, cap_s=8.0)
    assert all(0.0 <= delay(n) <= min(8.0, 2.0**n) for n in range(100))


async def test_a_resubscribe_refused_for_now_reconnects_and_one_refused_for_good_is_told(
    gateway: FakeGateway, clock: Clock
) -> None:
    async with client(gateway, clock) as chat:
        first = await gateway.connection(1)
        await chat.subscribe(CHANNEL, since=3)
        await chat.subscribe(OTHER, since=5)
        gateway.answer = False
        first.drop()
        second = await gateway.connection(2)
        await second.wait_sent("ping")
        second.push(p.ErrorFrame(code="unavailable", message="NATS is down", ref=str(CHANNEL)))
        third = await gateway.connection(3)  # the resume failed: connect again, from the same place
        assert [f["since"] for f in third.of_type("subscribe")] == [3, 5]
        third.push(p.Subscribed(channel_id=CHANNEL))
        gone = p.ErrorFrame(code="not_found", message="no such channel", ref=str(OTHER))
        third.push(gone)
        third.push(p.Pong())
        async with aclosing(chat.events()) as events:
            told = await take(events, 3)
    assert told == [ff.FeedResyncRequired(), ff.FeedResyncRequired(), gone]  # no feed position yet
    assert clock.slept == [0.0, 0.0]  # a backoff before each reconnect
    assert chat.position(OTHER) is None
    assert chat.position(CHANNEL) == 3
