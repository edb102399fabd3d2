"""The client's API: requests and the application's events (the connection is ``Session``'s).
See the package docstring for what is resumed and why."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Self

from echonats.client.errors import ClientClosed, ClientError, ConnectionFailed, RateLimited, ServerError
from echonats.client.frames import ChannelState, Event
from echonats.client.session import Answer, End, Session, TokenSource, Write, WriteFrame, as_uuid
from echonats.client.transport import Refused
from echonats.gateway import protocol as p


class Client(Session):
    """A connection to one gateway's ``/ws`` that reconnects by itself; see ``connect``."""

    # -- lifecycle -------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect; returns once the gateway serves the socket (raises ``ConnectionFailed`` if it
        cannot be reached or refuses the token: the first connection is not retried)."""
        if self._runner is not None:
            raise ClientError("the client was opened already")
        try:
            transport = await self._dial()
        except Refused as exc:
            raise ConnectionFailed(str(exc)) from exc
        self._runner = asyncio.create_task(self._run(transport), name="echonats-client")
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait(
                {ready, self._runner}, timeout=self._open_timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            ready.cancel()
        if not self._ready.is_set():
            failure = self._failure or ConnectionFailed(
                f"no answer from {self._url} within {self._open_timeout}s"
            )
            await self.close()
            raise failure

    async def close(self) -> None:
        """Close the connection; waiting requests raise ``ClientClosed``, ``events()`` ends."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._finish(ClientClosed("the client was closed"))

    @property
    def connected(self) -> bool:
        return self._transport is not None

    # -- what the application reads --------------------------------------------------------------------
    async def events(self) -> AsyncGenerator[Event, None]:
        """Every frame for the application, in order, each once. Bounded (``max_queue``): while the
        application does not read, the client does not read the socket either (the server then
        queues, and at its limit closes with 4008; the client reconnects and resumes). Ends at
        ``close()``; raises ``ConnectionFailed`` after a fatal close. One consumer at a time."""
        while not self._closed and not (self._failure is not None and self._events.empty()):
            item = await self._events.get()
            if isinstance(item, End):
                self._events.put_nowait(item)  # for the next call
                break
            yield item
        if self._failure is not None and not isinstance(self._failure, ClientClosed):
            raise self._failure

    def position(self, channel_id: uuid.UUID | str) -> int | None:
        """The id a resume of the channel starts after (None: not known yet, or not subscribed)."""
        state = self._channels.get(as_uuid(channel_id))
        return state.since() if state is not None else None

    # -- requests --------------------------------------------------------------------------------------
    async def subscribe(self, channel_id: uuid.UUID | str, since: int | None = None) -> None:
        """Receive a channel: every message after ``since`` first (if given), then live. After a
        reconnect the client resumes from the last id it delivered. Calling it again with a
        ``since`` (after refetching history on ``ResyncRequired``, say) moves that point forward."""
        cid = as_uuid(channel_id)
        state = self._channels.setdefault(cid, ChannelState())
        if since is not None:
            state.skip_to(since)
        answer = await self._request(
            ("subscribe", str(cid)), p.Subscribe(channel_id=cid, since=state.since())
        )
        if isinstance(answer, p.ErrorFrame):
            self._channels.pop(cid, None)
            raise ServerError(answer)

    async def unsubscribe(self, channel_id: uuid.UUID | str) -> None:
        cid = as_uuid(channel_id)
        self._channels.pop(cid, None)
        if self._transport is not None:  # else the next connection does not subscribe it
            await self._request(("unsubscribe", str(cid)), p.Unsubscribe(channel_id=cid))

    async def send(
        self,
        channel_id: uuid.UUID | str,
        body: str,
        *,
        thread_id: int | None = None,
        also_to_channel: bool = False,
        nonce: str | None = None,
    ) -> p.Ack:
        """Post a message; returns its ``ack`` once it is stored. Resent with the same nonce after a
        reconnect (the server answers a resend with the original), after ``rate_limited`` once its
        ``retryAfterMs`` passed; raises ``ServerError`` for other errors, ``TimeoutError`` after
        ``request_timeout``."""
        frame = p.Send(
            channel_id=as_uuid(channel_id),
            body=body,
            nonce=nonce or _nonce(),
            thread_id=thread_id,
            also_to_channel=also_to_channel,
        )
        return await self._write(frame)

    async def edit(self, channel_id: uuid.UUID | str, message_id: int, body: str) -> p.Ack:
        return await self._write(
            p.Edit(channel_id=as_uuid(channel_id), message_id=message_id, body=body, nonce=_nonce())
        )

    async def delete(self, channel_id: uuid.UUID | str, message_id: int) -> p.Ack:
        return await self._write(
            p.Delete(channel_id=as_uuid(channel_id), message_id=message_id, nonce=_nonce())
        )

    async def react(self, channel_id: uuid.UUID | str, message_id: int, emoji: str) -> p.Ack:
        cid = as_uuid(channel_id)
        return await self._write(p.React(channel_id=cid, message_id=message_id, emoji=emoji, nonce=_nonce()))

    async def unreact(self, channel_id: uuid.UUID | str, message_id: int, emoji: str) -> p.Ack:
        cid = as_uuid(channel_id)
        return await self._write(
            p.Unreact(channel_id=cid, message_id=message_id, emoji=emoji, nonce=_nonce())
        )

    async def ping(self) -> None:
        """A round trip: returns once everything the server queued for this client before has
        arrived (after a reconnect: once the client has resumed)."""
        self._check_open()
        pong: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(pong)
        await self._transmit(p.Ping())
        async with asyncio.timeout(self._request_timeout):
            await asyncio.shield(pong)

    async def _write(self, frame: WriteFrame) -> p.Ack:
        nonce = frame.nonce
        assert nonce is not None
        if nonce in self._writes:
            raise ValueError(f"a write with nonce {nonce!r} is waiting already")
        waits = 0
        try:
            async with asyncio.timeout(self._request_timeout):
                while True:
                    self._check_open()
                    write = self._writes[nonce] = Write(frame, asyncio.get_running_loop().create_future())
                    await self._transmit(frame, write)  # not connected: the next connection sends it
                    answer = await asyncio.shield(write.answer)
                    if isinstance(answer, p.Ack):
                        return answer
                    if answer.code != "rate_limited":
                        raise ServerError(answer)
                    if waits >= self._rate_limit_retries:
                        raise RateLimited(answer)
                    del self._writes[nonce]  # waiting, not due for a resend by a reconnect
                    wait_ms = answer.retry_after_ms
                    await self._sleep(wait_ms / 1000 if wait_ms is not None else self._backoff(waits))
                    waits += 1
        finally:
            self._writes.pop(nonce, None)

    async def _request(self, key: tuple[str, str], frame: p.ClientFrame) -> Answer:
        self._check_open()
        answer = self._waiters.get(key)
        if answer is None:
            answer = self._waiters[key] = asyncio.get_running_loop().create_future()
        try:
            await self._transmit(frame)
            async with asyncio.timeout(self._request_timeout):
                return await asyncio.shield(answer)
        finally:
            if self._waiters.get(key) is answer:
                del self._waiters[key]


def _nonce() -> str:
    return uuid.uuid4().hex


__all__ = ["Client", "TokenSource"]
