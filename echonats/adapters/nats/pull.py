"""Batches from a JetStream pull consumer, collected on one subscription.

nats-py's ``PullSubscription.fetch`` awaits each message of a batch with its own timeout
(``next_msg``: a timer and a queue wait per message), which py-spy put among the persist worker's
largest costs. Here a fetch is one pull request (``$JS.API.CONSUMER.MSG.NEXT`` with ``batch``,
``expires`` and ``no_wait``: the server waits up to ``expires`` for a first message, then sends what
it has and ends the request with status 404, or 408 when nothing came; measured on nats-server
2.15) whose messages the subscription's callback appends as they arrive; the fetch wakes once,
when the batch is full or the request ended.
One request is outstanding at a time; a message answering a request given up on (the connection
dropped) is kept for the next fetch, and anything unacked is redelivered after ``ack_wait``.
"""

from __future__ import annotations

import asyncio
import json

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from echonats.model.errors import Unavailable

# The server ends a request it holds at its expiry; past this much more, it is presumed lost.
SAFETY_MARGIN_S = 2.0
_ENDS_REQUEST = frozenset({"404", "408"})  # no messages / the request expired: not a failure
_HEARTBEAT = "100"


class PullRequests:
    def __init__(self, nc: NatsClient, api_subject: str, inbox: str) -> None:
        self._nc = nc
        self._api_subject = api_subject
        self._inbox = inbox
        self._subscription: Subscription | None = None
        self._arrived: list[Msg] = []
        self._want = 0
        self._ended: list[str] = []  # the status that ended the current request
        self._wake = asyncio.Event()

    @classmethod
    async def open(cls, nc: NatsClient, stream: str, consumer: str) -> PullRequests:
        pull = cls(nc, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", nc.new_inbox())
        pull._subscription = await nc.subscribe(pull._inbox, cb=pull._received)
        return pull

    async def _received(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self._arrived.append(msg)
            if len(self._arrived) >= self._want:
                self._wake.set()
        elif status != _HEARTBEAT:
            description = msg.headers.get("Description", "") if msg.headers else ""
            self._ended.append(f"{status} {description}".strip())
            self._wake.set()

    async def fetch(self, batch: int, timeout_s: float) -> list[Msg]:
        """Up to ``batch`` messages, waiting at most ``timeout_s`` for the first ones."""
        if len(self._arrived) < batch:
            self._want = batch
            self._ended.clear()
            self._wake.clear()
            request = {"batch": batch - len(self._arrived), "expires": int(timeout_s * 1e9), "no_wait": True}
            await self._nc.publish(self._api_subject, json.dumps(request).encode(), reply=self._inbox)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout_s + SAFETY_MARGIN_S)
            except TimeoutError as exc:
                raise Unavailable("the pull request got no answer") from exc
            refused = [status for status in self._ended if status[:3] not in _ENDS_REQUEST]
            if refused and not self._arrived:
                raise Unavailable(f"pull request refused: {refused[0]}")
        taken, self._arrived = self._arrived[:batch], self._arrived[batch:]
        return taken

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.unsubscribe()
