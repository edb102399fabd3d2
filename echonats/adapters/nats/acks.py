"""Pipelined JetStream publishes with their acknowledgements matched on one reply subscription.

nats-py's ``publish_async`` costs, per message, a NUID and ``token_hex`` for the reply token, a
future with a done callback, an ``Nats-Expected-Stream`` header, and for the answer ``json.loads``
plus a ``PubAck`` dataclass; py-spy put it and its answers at ~20% of a gateway's CPU per send.
Here a publish is one future keyed by a counter, its answer one msgspec decode, and all deadlines
share one timer: publishes time out in the order they were made, so only the oldest is armed.

The stream is checked on the answer (the ack names it) instead of by a header the server checks:
the subjects published here belong to that one stream, so a mismatch means a misconfigured server,
reported as unavailable rather than acknowledged.
"""

from __future__ import annotations

import asyncio
import collections

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from echonats.adapters.nats.errors import unavailable
from echonats.adapters.nats.inbox import SharedInbox
from echonats.core.ports import Appended
from echonats.model.errors import Unavailable


class _ApiError(msgspec.Struct):
    code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_decode_ack = msgspec.json.Decoder(_PubAck).decode


def _retrieved(appended: asyncio.Future[Appended]) -> None:
    if not appended.cancelled():
        appended.exception()  # retrieved here too: a sender that went away never awaits it


class AckedPublisher:
    def __init__(self, nc: NatsClient, stream: str, *, timeout_s: float) -> None:
        self._nc = nc
        self._stream = stream
        self._timeout_s = timeout_s
        self._inbox = SharedInbox(nc, self._answered)
        self._pending: dict[str, asyncio.Future[Appended]] = {}
        self._deadlines: collections.deque[tuple[float, str]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None
    ) -> asyncio.Future[Appended]:
        """Publish now (in the client's outgoing buffer when this returns, so consecutive calls
        reach the stream in call order); the future resolves with the acknowledgement."""
        with unavailable("not stored: JetStream unreachable"):
            token, reply = await self._inbox.next_reply()
        loop = asyncio.get_running_loop()
        appended: asyncio.Future[Appended] = loop.create_future()
        appended.add_done_callback(_retrieved)
        self._pending[token] = appended
        try:
            with unavailable("not stored: JetStream unreachable"):
                await self._nc.publish(subject, payload, reply=reply, headers=headers)
        except BaseException:
            del self._pending[token]
            appended.cancel()
            raise
        # The deadline runs from the publish, whether or not anyone awaits the result yet.
        self._deadlines.append((loop.time() + self._timeout_s, token))
        if self._timer is None:
            self._timer = loop.call_at(self._deadlines[0][0], self._expire)
        return appended

    async def _answered(self, msg: Msg) -> None:
        appended = self._pending.pop(self._inbox.token_of(msg), None)
        deadlines, pending = self._deadlines, self._pending
        while deadlines and deadlines[0][1] not in pending:  # answered ones need no deadline
            deadlines.popleft()
        if appended is None or appended.done():
            return
        try:
            ack = _decode_ack(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            status = (msg.headers or {}).get("Status", "")
            reason = (
                "no stream for this subject" if status == "503" else f"unreadable answer {msg.data!r:.80}"
            )
            appended.set_exception(Unavailable(f"message not stored: {reason}"))
            return
        if ack.error is not None:
            appended.set_exception(Unavailable(f"message not stored: JetStream: {ack.error.description}"))
        elif ack.stream != self._stream:
            appended.set_exception(Unavailable(f"message not stored: went to stream {ack.stream!r}"))
        else:
            appended.set_result(Appended(message_id=ack.seq, duplicate=ack.duplicate))

    def _expire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, token = self._deadlines.popleft()
            appended = self._pending.pop(token, None)
            if appended is not None and not appended.done():
                appended.set_exception(
                    Unavailable("message not stored: JetStream did not acknowledge in time")
                )
        if self._deadlines:
            self._timer = loop.call_at(self._deadlines[0][0], self._expire)
