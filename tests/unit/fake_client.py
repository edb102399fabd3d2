"""A fake gateway for echonats.client's unit tests: every connection is a transport the test drives."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from echonats.client import (
    Refused,
    Transport,
)
from echonats.client.transport import Closed
from echonats.gateway import protocol as p

CHANNEL = uuid.UUID(int=7)
OTHER = uuid.UUID(int=8)
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def message(message_id: int, channel: uuid.UUID = CHANNEL, thread_id: int | None = None) -> p.MessageFrame:
    payload = p.MessagePayload(message_id, "Ann", NOW, thread_id)
    return p.MessageFrame(channel_id=channel, user_id="ann", body=f"m{message_id}", payload=payload)


def thread_updated(reply_id: int, root: int) -> p.ThreadUpdated:
    return p.ThreadUpdated(
        id=reply_id, channel_id=CHANNEL, thread_id=root, reply_id=reply_id, reply_count_delta=1
    )


def ack(nonce: str, message_id: int = 1) -> p.Ack:
    return p.Ack(message_id=message_id, created_at=NOW, nonce=nonce)


class FakeTransport:
    """One connection: records what the client sends, answers ping and subscribe by itself (unless
    told not to), and delivers whatever the test pushes."""

    def __init__(self, headers: Mapping[str, str], *, answer: bool = True) -> None:
        self.headers = dict(headers)
        self.sent: list[dict[str, Any]] = []
        self.answer = answer
        self._inbox: asyncio.Queue[str | Closed] = asyncio.Queue()
        self._sent_one = asyncio.Event()
        self.closed = False

    async def send(self, text: str) -> None:
        if self.closed:
            raise Closed(1006)
        frame = json.loads(text)
        self.sent.append(frame)
        self._sent_one.set()
        if self.answer and frame["type"] == "ping":
            self.push(p.Pong())
        elif self.answer and frame["type"] == "subscribe":
            self.push(p.Subscribed(channel_id=uuid.UUID(frame["channelId"])))

    async def recv(self) -> str | bytes:
        item = await self._inbox.get()
        if isinstance(item, Closed):
            self.closed = True
            raise item
        return item

    async def close(self) -> None:
        if not self.closed:
            self._inbox.put_nowait(Closed(1000))

    def push(self, frame: p.ServerFrame | str) -> None:
        self._inbox.put_nowait(frame if isinstance(frame, str) else p.encode(frame))

    def drop(self, code: int = 1006, reason: str = "") -> None:
        """The connection ends (1006: no close frame, as when a gateway is killed)."""
        self._inbox.put_nowait(Closed(code, reason))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.sent if f["type"] == kind]

    async def wait_sent(self, kind: str, count: int = 1) -> dict[str, Any]:
        async with asyncio.timeout(2):
            while len(self.of_type(kind)) < count:
                self._sent_one.clear()
                await self._sent_one.wait()
        return self.of_type(kind)[count - 1]


class FakeGateway:
    """The connector: every call opens a new ``FakeTransport`` (or raises a queued refusal)."""

    def __init__(self) -> None:
        self.connections: list[FakeTransport] = []
        self.refusals: list[Refused] = []
        self.answer = True
        self._opened = asyncio.Event()

    async def __call__(self, url: str, headers: Mapping[str, str]) -> Transport:
        self.url = url
        if self.refusals:
            raise self.refusals.pop(0)
        transport = FakeTransport(headers, answer=self.answer)
        self.connections.append(transport)
        self._opened.set()
        return transport

    async def connection(self, number: int) -> FakeTransport:
        """The ``number``-th connection (1-based), once the client opened it."""
        async with asyncio.timeout(2):
            while len(self.connections) < number:
                self._opened.clear()
                await self._opened.wait()
        return self.connections[number - 1]


class Clock:
    """Injected sleep: records each delay, waits for nothing."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would
