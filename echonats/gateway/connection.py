"""One WebSocket connection: frames go to the socket at the end of the loop iteration while it
keeps up (``WriteCoalescer``), else into a bounded queue that a short-lived drain task empties
once the socket takes data again.

The fanout path never waits: it hands over an already-framed message (see ``gateway.wire``). A
client that reads slowly therefore delays nobody else. As its queue fills it first loses ephemeral
frames (typing, presence); once full, it is closed with 4008 ("slow consumer").

Every close the server starts (4001/4003/4008/...) and every end of a socket arms one timer: if the
TCP connection is still there ``close_timeout_s`` later (a client that does not read never lets the
close frame out, and asyncio's ``transport.close()`` waits for the unsent data forever), the
transport is aborted. Before that, the same timer slot closes the socket when its token expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from litestar.types import Send

from echonats import metrics
from echonats.core.caller import Caller
from echonats.gateway import protocol as p
from echonats.gateway.socket_errors import CLOSE_SLOW_CONSUMER, CLOSE_UNAUTHORIZED
from echonats.gateway.ws_framing import FrameSink, text_frame
from echonats.model import Entry, Principal

log = logging.getLogger(__name__)

# One per fanned-out item: the first socket of a protocol renders into it under the protocol's key
# and every other socket reuses the bytes.
SharedFrames = dict[str, bytes]

# A socket's frames of one loop iteration are written once this many wait (bounds the memory a burst
# can hold per socket before the coalesced write).
MAX_COALESCED_FRAMES = 256


class Connection:
    def __init__(
        self,
        caller: Caller | None,
        send: Send,
        *,
        principal: Principal | None = None,
        sink: FrameSink,
        coalescer: WriteCoalescer,
        max_queue: int,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.id = uuid.uuid4().hex
        # The workspace the socket is bound to (a token with a tenant claim, or the JSON protocol);
        # None for a STOMP session of a token without one, which reads each channel under the
        # membership of the channel's own workspace (D51).
        self.home = caller
        if principal is None:
            assert caller is not None, "a connection needs a caller or a principal"
            principal = caller.principal
        self.principal = principal
        self.channels: dict[uuid.UUID, Caller] = {}  # subscribed channels, with the membership read under
        # What to do when the user loses one of its workspaces (None: the socket is closed, 4003).
        self.on_tenant_lost: Callable[[uuid.UUID], None] | None = None
        self.last_active = time.time()
        self._send = send  # ASGI send: the close handshake stays with the server
        self._sink = sink
        self._coalescer = coalescer
        self._max_queue = max_queue
        # Ephemeral frames stop being queued at half capacity, keeping room for messages.
        self._ephemeral_limit = max_queue // 2
        # Frames for a socket that takes data: written together at the end of this loop iteration.
        self._pending: list[bytes] = []
        # Frames for a socket that does not take data now (or before the handshake): bounded.
        self._queue: list[bytes] = []  # a list, not a deque: an empty deque costs ~700 bytes
        self._started = False  # nothing may be written before the handshake's response
        self._closing: tuple[int, str] | None = None
        self._drainer: asyncio.Task[None] | None = None  # exists only while frames wait in _queue
        self._closer: asyncio.Task[None] | None = None
        self._close_timeout_s = close_timeout_s
        # One timer per socket, never a task: the token's expiry while open, then the close deadline.
        self._timer: asyncio.TimerHandle | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A connection of another protocol must render every server frame its own way (or say it
        has none): one that inherited a ``send_*`` would silently send JSON to, say, a STOMP client.
        Checked once per class, at import, so ``make unit`` fails and the send path costs nothing."""
        super().__init_subclass__(**kwargs)
        own = cls.__mro__[: cls.__mro__.index(Connection)]
        missing = [
            name
            for name in vars(Connection)
            if name.startswith("send_") and not any(name in vars(k) for k in own)
        ]
        if missing:
            raise TypeError(f"{cls.__name__} must render {', '.join(missing)} (or define it to do nothing)")

    @property
    def caller(self) -> Caller:
        if self.home is None:
            raise RuntimeError("a connection across workspaces has no single caller: use its channel's")
        return self.home

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.caller.tenant_id

    @property
    def closing(self) -> bool:
        return self._closing is not None

    def start(self) -> None:
        """The handshake is done: write what was offered before it."""
        self._started = True
        if self._queue:
            self._drainer = asyncio.create_task(self._drain(), name=f"ws-drain-{self.id}")

    def offer(self, text: str, *, ephemeral: bool = False) -> None:
        """Send one text frame without waiting. Never blocks the caller."""
        self.offer_frame(text_frame(text.encode()), ephemeral=ephemeral)

    def offer_frame(self, frame: bytes, *, ephemeral: bool = False) -> None:
        """Send an already framed message (shared by every socket it fans out to) without waiting."""
        if self._closing is not None:
            return
        if self._drainer is None and self._started:
            pending = self._pending
            pending.append(frame)
            if len(pending) == 1:
                self._coalescer.mark(self)
            elif len(pending) >= MAX_COALESCED_FRAMES:
                self.write_pending()
            return
        depth = len(self._queue)
        if ephemeral and depth >= self._ephemeral_limit:
            metrics.dropped_frames.inc()
            return
        if depth >= self._max_queue:
            self._slow_consumer()
            return
        self._queue.append(frame)
        if self._started and self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name=f"ws-drain-{self.id}")

    def write_pending(self) -> None:
        """Hand what this loop iteration offered to the socket in one write, or queue it if the
        socket does not take data now."""
        pending = self._pending
        if not pending or self._closing is not None:
            pending.clear()
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        if self._sink.write_now(data):
            pending.clear()
            return
        if len(self._queue) + len(pending) > self._max_queue:
            pending.clear()
            self._slow_consumer()
            return
        self._queue.extend(pending)
        pending.clear()
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name=f"ws-drain-{self.id}")

    def _slow_consumer(self) -> None:
        metrics.slow_consumer_closes.inc()
        log.info("closing slow consumer", extra={"connection_id": self.id, "user": self.user_id})
        self.close(CLOSE_SLOW_CONSUMER, "slow consumer")

    def close(self, code: int, reason: str) -> None:
        """Drop what is queued and close the socket with this code, without waiting for the peer."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        self._pending.clear()
        self._queue.clear()
        # The drain task may be stuck waiting for a peer that does not read; it will never finish,
        # so it is cancelled and the close frame goes out from a task of its own (the server
        # aborts the TCP connection if the peer does not answer the close within its timeout).
        if self._drainer is not None:
            self._drainer.cancel()
        self._closer = asyncio.create_task(self._send_close(code, reason), name=f"ws-close-{self.id}")
        self._abort_later()

    def expire_at(self, when: datetime | None) -> None:
        """Close with 4001 at ``when`` (the token's expiry; None: never), replacing any earlier time."""
        if self._closing is not None:
            return
        self._cancel_timer()
        if when is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, when.timestamp() - time.time())
            self._timer = loop.call_at(loop.time() + delay, self._token_expired)

    def _token_expired(self) -> None:
        self._timer = None
        log.info("closing: token expired", extra={"connection_id": self.id, "user": self.user_id})
        self.close(CLOSE_UNAUTHORIZED, "token expired")

    def _abort_later(self) -> None:
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + self._close_timeout_s, self._abort)

    def _abort(self) -> None:
        self._timer = None
        if self._sink.abort():
            log.info("aborted: the close did not complete", extra={"connection_id": self.id})

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def flushed(self) -> None:
        """Return once every frame offered so far has been handed to the socket (or dropped)."""
        self.write_pending()
        drainer = self._drainer
        if drainer is not None:
            await asyncio.wait({drainer})

    async def _send_close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._sink.flush(self._queue)
        except (OSError, RuntimeError, asyncio.CancelledError):
            # The peer is gone, we are closing it, or shutting down: nothing left to deliver.
            self._queue.clear()
        except Exception:
            log.debug("drain stopped", exc_info=True, extra={"connection_id": self.id})
            self._queue.clear()
        finally:
            self._drainer = None

    # -- what the fanout hub hands over; this class speaks the JSON protocol, others override --------
    # ``shared`` is one dict per fanned-out item: the first socket of a protocol renders into it
    # and every other socket reuses the result, so each message is encoded once per protocol.
    def send_entry(self, entry: Entry, shared: SharedFrames) -> None:
        frame = shared.get("json")
        if frame is None:
            frame = shared["json"] = text_frame(p.encode_bytes(p.entry_frame(entry)))
            if (thread := p.thread_frame(entry)) is not None:
                shared["json.thread"] = text_frame(p.encode_bytes(thread))
        self.offer_frame(frame)
        thread_frame = shared.get("json.thread")
        if thread_frame is not None:
            self.offer_frame(thread_frame)

    def send_typing(
        self, channel_id: uuid.UUID, user_id: str, display_name: str, shared: SharedFrames
    ) -> None:
        frame = shared.get("json")
        if frame is None:
            payload = p.TypingPayload(display_name)
            typing = p.TypingFrame(channel_id=channel_id, user_id=user_id, payload=payload)
            frame = shared["json"] = text_frame(p.encode_bytes(typing))
        self.offer_frame(frame, ephemeral=True)

    def send_presence(self, user_id: str, status: str, shared: SharedFrames) -> None:
        frame = shared.get("json")
        if frame is None:
            frame = shared["json"] = text_frame(
                p.encode_bytes(p.PresenceFrame(user_id=user_id, payload=p.PresencePayload(status)))
            )
        self.offer_frame(frame, ephemeral=True)

    def send_subscribed(self, channel_id: uuid.UUID) -> None:
        self.offer(p.encode(p.Subscribed(channel_id=channel_id)))

    def send_unsubscribed(self, channel_id: uuid.UUID) -> None:
        self.offer(p.encode(p.Unsubscribed(channel_id=channel_id)))

    def send_resync_required(self, channel_id: uuid.UUID) -> None:
        self.offer(p.encode(p.ResyncRequired(channel_id=channel_id)))

    async def stop(self) -> None:
        """The handler is done with this socket. It may still hold a TCP connection that does not
        finish closing (e.g. the peer closed but reads nothing): the close deadline covers it."""
        if self._closing is None:
            self._abort_later()
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
        if self._closer is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._closer, timeout=15)


class WriteCoalescer:
    """Writes every connection's frames of one event-loop iteration together, after the iteration.

    Messages reach a gateway in bursts (one NATS read carries all that arrived meanwhile) and each
    goes to many sockets. Writing at once costs a syscall per message per socket; writing after
    the burst costs one per socket, so the busier the gateway, the cheaper each delivery (what
    nats-server's per-client flusher does). An idle gateway writes a lone message one callback
    later, microseconds."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Connection] = []
        self._scheduled = False

    def mark(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._write_all)

    def _write_all(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        metrics.coalesced_writes.inc(len(dirty))
        for conn in dirty:
            conn.write_pending()
