"""One wildcard reply subscription (``<inbox>.*``) for many requests, told apart by a counter
token: no subscription per request and no NUID per message. Opened on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription


class SharedInbox:
    def __init__(self, nc: NatsClient, on_reply: Callable[[Msg], Awaitable[None]]) -> None:
        self._nc = nc
        self._on_reply = on_reply
        self._prefix = ""
        self._subscription: Subscription | None = None
        self._starting: asyncio.Lock | None = None
        self._counter = 0

    async def next_reply(self) -> tuple[str, str]:
        """A fresh token and the reply subject that carries it (subscribing first if needed)."""
        if self._subscription is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                if self._subscription is None:
                    prefix = self._nc.new_inbox() + "."
                    self._subscription = await self._nc.subscribe(prefix + "*", cb=self._on_reply)
                    self._prefix = prefix
        self._counter += 1
        token = str(self._counter)
        return token, self._prefix + token

    def token_of(self, reply: Msg) -> str:
        return reply.subject[len(self._prefix) :]
