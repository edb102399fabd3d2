"""The connection behind ``Client``: one task reads it and connects again when it ends, resumes
every channel (and the feed) from what was delivered, resends unanswered writes with their nonces,
and hands each frame either to the request it answers or, once, to the application's queue."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from echonats.client.errors import (
    CLOSE_UNAUTHORIZED,
    FATAL_CLOSE_CODES,
    ClientError,
    ConnectionFailed,
)
from echonats.client.frames import ChannelState, Event, channel_position, decode, encode, feed_position
from echonats.client.transport import (
    Backoff,
    Closed,
    Connector,
    Refused,
    Transport,
    full_jitter,
    socket_url,
    websocket_connector,
)
from echonats.gateway import feed_frames as ff
from echonats.gateway import protocol as p

log = logging.getLogger("echonats.client")

T = TypeVar("T")
TokenSource = str | Callable[[], str | Awaitable[str]]
WriteFrame = p.Send | p.Edit | p.Delete | p.React | p.Unreact
Answer = p.Subscribed | p.Unsubscribed | p.ErrorFrame | None
# Errors to a resumed subscribe that another try cannot fix: the channel is dropped (and the
# error frame handed to the application). Any other error (unavailable, ...) reconnects.
PERMANENT_SUBSCRIBE_ERRORS = frozenset({"not_found", "forbidden", "bad_request", "unauthenticated"})


class End:
    """Put in the event queue when the client is done."""


class _ResumeFailed(Exception):
    """A channel could not be resumed on this connection: connect again (with backoff)."""


@dataclass(slots=True)
class Write:
    frame: WriteFrame
    answer: asyncio.Future[p.Ack | p.ErrorFrame]
    sent_on: Transport | None = None  # sent once per connection


class Session:
    """The state a client keeps across connections, and the task that runs them."""

    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        tenant: uuid.UUID | str | None = None,
        feed_since: int | None = None,
        connector: Connector | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reconnect_attempts: int | None = None,
        request_timeout: float = 30.0,
        rate_limit_retries: int = 5,
        max_queue: int = 1000,
        open_timeout: float = 10.0,
    ) -> None:
        self._url = socket_url(url, str(tenant) if tenant is not None else None)
        self._token = token
        self._connector = connector or functools.partial(websocket_connector, open_timeout=open_timeout)
        self._backoff = backoff or full_jitter()
        self._sleep = sleep
        self._attempts = reconnect_attempts
        self._request_timeout = request_timeout
        self._rate_limit_retries = rate_limit_retries
        self._open_timeout = open_timeout
        self._events: asyncio.Queue[Event | End] = asyncio.Queue(max_queue)
        self._channels: dict[uuid.UUID, ChannelState] = {}
        self._feed_id = feed_since
        self._writes: dict[str, Write] = {}
        self._waiters: dict[tuple[str, str], asyncio.Future[Answer]] = {}
        self._pongs: deque[asyncio.Future[None] | None] = deque()  # None: the resume's own ping
        self._orphans: list[asyncio.Future[None]] = []  # pings of a lost connection
        self._resuming: set[str] = set()  # channels re-subscribed on this connection, unanswered
        self._transport: Transport | None = None
        self._lock = asyncio.Lock()  # one frame at a time on the transport
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # the first connection resumed (its pong came)
        self._healthy = False  # this connection resumed every channel
        self._failure: ClientError | None = None
        self._closed = False
        self.reconnects = 0
        """How many times the client connected again after losing a connection."""

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._runner is None:
            raise ClientError("open the client first (async with connect(...))")

    async def _transmit(self, frame: p.ClientFrame, write: Write | None = None) -> None:
        async with self._lock:
            transport = self._transport
            if transport is None or (write is not None and write.sent_on is transport):
                return  # the next connection sends it, or this one's resume did
            if write is not None:
                write.sent_on = transport
            with contextlib.suppress(Closed):  # the reader sees the end; the next connection resends
                await transport.send(encode(frame))

    # -- the connection --------------------------------------------------------------------------------
    async def _dial(self) -> Transport:
        try:
            token = self._token if isinstance(self._token, str) else self._token()
            if inspect.isawaitable(token):
                token = await token
        except Exception as exc:  # an identity provider that is down, say: tried again later
            raise Refused(f"the token provider failed: {exc!r}") from exc
        return await self._connector(self._url, {"Authorization": f"Bearer {token}"})

    async def _run(self, transport: Transport) -> None:
        attempt = 0
        try:
            while True:
                ended, served, healthy = await self._serve(transport)
                fatal = ended.code in FATAL_CLOSE_CODES or (
                    ended.code == CLOSE_UNAUTHORIZED and (isinstance(self._token, str) or not served)
                )
                if fatal:
                    raise ConnectionFailed(
                        f"the gateway closed the connection: {ended}", ended.code, ended.reason
                    )
                log.info("connection lost (%s), connecting again", ended)
                if healthy:
                    attempt = 0
                transport, attempt = await self._reconnect(attempt)
                self.reconnects += 1
        except ClientError as exc:
            log.warning("giving up: %s", exc)
            self._finish(exc)
        except Exception as exc:  # a bug must not leave events() waiting forever
            log.exception("the connection task failed")
            self._finish(ConnectionFailed(f"the connection task failed: {exc!r}"))

    async def _reconnect(self, attempt: int) -> tuple[Transport, int]:
        wait_s = 0.0
        while True:
            if self._attempts is not None and attempt >= self._attempts:
                raise ConnectionFailed(f"could not connect again after {attempt} attempts")
            await self._sleep(max(self._backoff(attempt), wait_s))
            attempt += 1
            try:
                return await self._dial(), attempt
            except Refused as exc:
                if exc.fatal:
                    raise ConnectionFailed(str(exc)) from exc
                log.info("reconnect attempt %d failed: %s", attempt, exc)
                wait_s = exc.retry_after_s or 0.0

    async def _serve(self, transport: Transport) -> tuple[Closed, bool, bool]:
        """Resume on ``transport`` and read it until it ends: how it ended, whether it was served
        (any frame came: a refused token is closed before any) and whether it resumed completely."""
        served = False
        self._healthy = False
        try:
            await self._resume(transport)
            while True:
                raw = await transport.recv()
                served = True
                await self._dispatch(decode(raw))
        except Closed as exc:
            return exc, served, self._healthy
        except _ResumeFailed as exc:
            return Closed(1013, str(exc)), served, False
        finally:
            self._transport = None
            for (kind, _), waiter in self._waiters.items():
                if kind == "unsubscribe":  # done: the next connection does not subscribe it
                    resolve(waiter, None)
            with contextlib.suppress(Exception):
                await transport.close()

    async def _resume(self, transport: Transport) -> None:
        """Subscribe every channel again from its position, catch up the feed, resend every
        unanswered write (same nonces), then ping: its pong means the resume is complete."""
        if self._ready.is_set():  # not the first connection: say what cannot be resumed
            for cid, state in list(self._channels.items()):
                if state.since() is None:  # subscribed live and nothing came yet: an unknown gap
                    await self._events.put(p.ResyncRequired(channel_id=cid))
            if self._feed_id is None:
                await self._events.put(ff.FeedResyncRequired())
        # Under the lock: a request made meanwhile is sent after these, by its own caller.
        async with self._lock:
            frames: list[p.ClientFrame] = [
                p.Subscribe(channel_id=cid, since=state.since()) for cid, state in self._channels.items()
            ]
            if self._feed_id is not None:
                frames.append(p.Feed(since=self._feed_id))
            for write in self._writes.values():
                frames.append(write.frame)
                write.sent_on = transport
            frames.append(p.Ping())
            self._resuming = {str(cid) for cid in self._channels}
            self._orphans += [pong for pong in self._pongs if pong is not None]
            self._pongs = deque([None])
            self._transport = transport
            for frame in frames:
                await transport.send(encode(frame))

    async def _dispatch(self, frame: Event | None) -> None:
        match frame:
            case None:
                return
            case p.Pong():
                self._on_pong()
                return
            case p.Ack(nonce=nonce) if nonce in self._writes:
                resolve(self._writes[nonce].answer, frame)
                return
            case p.ErrorFrame(ref=ref) if ref is not None and self._on_error(ref, frame):
                return
            case p.Subscribed(channel_id=cid):
                self._resuming.discard(str(cid))
                resolve(self._waiters.get(("subscribe", str(cid))), frame)
                return
            case p.Unsubscribed(channel_id=cid) if ("unsubscribe", str(cid)) in self._waiters:
                resolve(self._waiters.get(("unsubscribe", str(cid))), frame)
                return
            case p.Unsubscribed(channel_id=cid):  # the server ended it (access revoked)
                self._channels.pop(cid, None)
            case p.Ack():
                return  # the answer to a write that gave up waiting
        if frame is not None and not self._new(frame):
            return
        await self._events.put(frame)

    def _new(self, frame: Event) -> bool:
        """Record a frame's position; False for one delivered already (a replay after a resume)."""
        located = channel_position(frame)
        if located is not None:
            state = self._channels.get(located[0])
            return state is None or state.deliver(located[1], frame)
        feed_id = feed_position(frame)
        if feed_id is not None:
            if self._feed_id is not None and feed_id <= self._feed_id:
                return False
            self._feed_id = feed_id
        return True

    def _on_error(self, ref: str, frame: p.ErrorFrame) -> bool:
        """Hand an error frame to the request it answers (False: none, it is an event)."""
        write = self._writes.get(ref)
        if write is not None:
            resolve(write.answer, frame)
            return True
        waiter = self._waiters.get(("subscribe", ref))
        resumed = ref in self._resuming
        self._resuming.discard(ref)
        if waiter is not None:
            resolve(waiter, frame)
            return True
        if not resumed:
            return False
        if frame.code not in PERMANENT_SUBSCRIBE_ERRORS:
            raise _ResumeFailed(f"could not resubscribe {ref}: {frame.code}")
        self._channels.pop(as_uuid(ref), None)
        return False  # the application hears of the channel it lost

    def _on_pong(self) -> None:
        if not self._pongs:
            return
        pong = self._pongs.popleft()
        if pong is not None:
            resolve(pong, None)
            return
        self._healthy = not self._resuming  # every channel resumed
        self._ready.set()
        orphans, self._orphans = self._orphans, []
        for orphan in orphans:
            resolve(orphan, None)

    def _finish(self, failure: ClientError) -> None:
        """No more connections: fail what waits, end ``events()``."""
        if self._failure is None:
            self._failure = failure
        futures: list[asyncio.Future[Any]] = [w.answer for w in self._writes.values()]
        futures += [*self._waiters.values(), *self._orphans]
        futures += [pong for pong in self._pongs if pong is not None]
        for future in futures:
            if not future.done():
                future.set_exception(self._failure)
                future.exception()  # retrieved: no warning if nobody waits any more
        if not self._events.full():
            self._events.put_nowait(End())


def resolve(future: asyncio.Future[T] | None, value: T) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
