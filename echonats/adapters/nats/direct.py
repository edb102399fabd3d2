"""JetStream's batched direct get (nats-server >= 2.11): the records of one subject filter from a
sequence on, in one request, answered by any replica. Shared by the message log and the feed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from echonats.adapters.nats import subjects
from echonats.adapters.nats.errors import unavailable
from echonats.adapters.nats.inbox import SharedInbox
from echonats.adapters.nats.streams import PUBLISH_TIMEOUT_S
from echonats.model.errors import Unavailable


@dataclass(frozen=True, slots=True)
class Stored:
    sequence: int
    headers: Mapping[str, str]
    data: bytes


class _Collected:
    __slots__ = ("done", "more", "records")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.records: list[Stored] = []
        self.more = False


class DirectReader:
    """Batched direct gets answered on one wildcard reply subscription, opened on first use.

    A subscription per request (subscribe, then ``next_msg`` with a timeout per record) cost two
    protocol round trips and a timer per record: a history page folding a 200-entry tail spent
    most of its time there. Here the records of a request are collected as they arrive and its
    one future resolves at the end-of-batch status."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._inbox = SharedInbox(nc, self._arrived)
        self._open: dict[str, _Collected] = {}

    async def batch(self, stream: str, subject: str, start: int, count: int) -> tuple[list[Stored], bool]:
        """Up to ``count`` records of ``subject`` (a filter) with sequence >= ``start``, oldest
        first, and whether more exist. ``Unavailable`` if the stream cannot be read."""
        # Subscribing and publishing are NATS calls too: a closed connection must come out as
        # Unavailable here, like a failed read, since callers (the hub's gap repair) catch only that.
        with unavailable("JetStream"):
            token, reply = await self._inbox.next_reply()
            collected = self._open[token] = _Collected(asyncio.get_running_loop().create_future())
            try:
                request = {"seq": start, "next_by_subj": subject, "batch": count}
                await self._nc.publish(
                    subjects.direct_get_subject(stream),
                    json.dumps(request).encode(),
                    reply=reply,
                )
                try:
                    await asyncio.wait_for(collected.done, PUBLISH_TIMEOUT_S)
                except TimeoutError as exc:
                    raise Unavailable(f"JetStream: no direct get reply for {subject}") from exc
            finally:
                del self._open[token]
        return collected.records, collected.more

    async def _arrived(self, reply: Msg) -> None:
        collected = self._open.get(self._inbox.token_of(reply))
        if collected is None or collected.done.done():
            return  # a request that timed out or failed
        headers = reply.headers or {}
        if headers.get("Status") is not None:  # 204 end of batch, 404 nothing (more) to read
            collected.done.set_result(None)
            return
        try:
            collected.records.append(Stored(int(headers["Nats-Sequence"]), headers, reply.data))
            collected.more = int(headers.get("Nats-Num-Pending", "0")) > 0
        except (KeyError, ValueError) as exc:
            collected.done.set_exception(Unavailable(f"JetStream: malformed direct get reply: {exc}"))
