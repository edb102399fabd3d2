"""Publishes acknowledged through one reply subscription, against a real nats-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient

from echonats.adapters.nats.acks import AckedPublisher
from echonats.model.errors import Unavailable


@pytest.fixture
async def stream(nc: NatsClient) -> AsyncIterator[str]:
    name = f"ACKS{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
    yield name
    await js.delete_stream(name)


async def test_acks_come_back_in_order_and_a_repeated_id_is_a_duplicate(nc: NatsClient, stream: str) -> None:
    publisher = AckedPublisher(nc, stream, timeout_s=5)
    subject = f"{stream.lower()}.a"
    pending = [
        await publisher.publish(subject, f"m{i}".encode(), {"Nats-Msg-Id": f"id{i}"}) for i in range(200)
    ]
    again = await publisher.publish(subject, b"m7 again", {"Nats-Msg-Id": "id7"})
    acks = await asyncio.gather(*pending)
    assert [a.message_id for a in acks] == list(range(1, 201))
    assert not any(a.duplicate for a in acks)
    repeated = await again
    assert (repeated.message_id, repeated.duplicate) == (8, True)


async def test_a_subject_no_stream_holds_is_not_stored(nc: NatsClient, stream: str) -> None:
    publisher = AckedPublisher(nc, stream, timeout_s=5)
    with pytest.raises(Unavailable, match="no stream for this subject"):
        await (await publisher.publish(f"nowhere.{uuid.uuid4().hex}", b"x", None))


async def test_an_ack_from_another_stream_is_not_taken_as_stored(nc: NatsClient, stream: str) -> None:
    publisher = AckedPublisher(nc, "SOMEOTHER", timeout_s=5)
    with pytest.raises(Unavailable, match="went to stream"):
        await (await publisher.publish(f"{stream.lower()}.a", b"x", None))


async def test_an_unanswered_publish_fails_at_its_deadline_and_later_ones_still_succeed(
    nc: NatsClient, stream: str
) -> None:
    silent = await nc.subscribe("silent.subject")  # takes the message and never answers
    publisher = AckedPublisher(nc, stream, timeout_s=0.3)
    lost = await publisher.publish("silent.subject", b"x", None)
    stored = await publisher.publish(f"{stream.lower()}.a", b"y", None)
    assert (await stored).message_id == 1
    with pytest.raises(Unavailable, match="did not acknowledge"):
        await lost
    assert (await (await publisher.publish(f"{stream.lower()}.a", b"z", None))).message_id == 2
    await silent.unsubscribe()
