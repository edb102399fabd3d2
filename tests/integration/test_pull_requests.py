"""Batches from a pull consumer collected on one subscription, against a real nats-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import api

from echonats.adapters.nats.pull import PullRequests
from echonats.model.errors import Unavailable

# A bound that only a fetch waiting for a full batch (instead of returning what is there) reaches.
LONGER_THAN_ANY_ANSWER_S = 10


@pytest.fixture
async def stream(nc: NatsClient) -> AsyncIterator[str]:
    name = f"PULL{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
    await js.add_consumer(name, api.ConsumerConfig(durable_name="c", ack_policy=api.AckPolicy.EXPLICIT))
    yield name
    await js.delete_stream(name)


async def test_what_is_there_comes_at_once_and_a_full_batch_leaves_the_rest(
    nc: NatsClient, stream: str
) -> None:
    js = nc.jetstream()
    for i in range(30):
        await js.publish(f"{stream.lower()}.a", f"m{i}".encode())
    pull = await PullRequests.open(nc, stream, "c")
    first = await asyncio.wait_for(pull.fetch(20, 60), LONGER_THAN_ANY_ANSWER_S)
    rest = await asyncio.wait_for(pull.fetch(500, 60), LONGER_THAN_ANY_ANSWER_S)
    assert [m.data for m in first + rest] == [f"m{i}".encode() for i in range(30)]
    await pull.close()


async def test_an_empty_consumer_answers_nothing_at_the_expiry(nc: NatsClient, stream: str) -> None:
    pull = await PullRequests.open(nc, stream, "c")
    assert await pull.fetch(10, 0.2) == []
    await pull.close()


async def test_a_message_sent_while_waiting_ends_the_wait(nc: NatsClient, stream: str) -> None:
    pull = await PullRequests.open(nc, stream, "c")
    waiting = asyncio.ensure_future(pull.fetch(100, 60))
    await asyncio.sleep(0.05)  # let the pull request reach the server first (either order works)
    await nc.jetstream().publish(f"{stream.lower()}.a", b"late")
    got = await asyncio.wait_for(waiting, LONGER_THAN_ANY_ANSWER_S)
    assert [m.data for m in got] == [b"late"]
    await pull.close()


async def test_a_consumer_that_does_not_exist_is_unavailable(nc: NatsClient, stream: str) -> None:
    pull = await PullRequests.open(nc, stream, "missing")
    with pytest.raises(Unavailable):
        await pull.fetch(10, 0.1)
    await pull.close()
