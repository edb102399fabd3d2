"""One WebSocket connection: a bounded send queue drained by its own writer task.

The fanout path only appends an already-encoded frame and wakes the writer, so a client that
reads slowly delays nobody else. As its queue fills it first loses ephemeral frames (typing,
presence); once full, it is closed with 4008 ("slow consumer").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque

from litestar.types import Send
from prometheus_client import Counter

from echonats.core.base import Caller
from echonats.gateway import protocol as p
from echonats.model import Message

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_SLOW_CONSUMER = 4008
CLOSE_SERVICE_RESTART = 1012

dropped_frames = Counter(
    "echonats_ws_dropped_ephemeral_frames_total", "Typing/presence frames dropped for slow clients"
)
slow_consumer_closes = Counter("echonats_ws_slow_consumer_closes_total", "Connections closed with 4008")


class Connection:
    def __init__(self, caller: Caller, send: Send, *, max_queue: int) -> None:
        self.id = uuid.uuid4().hex
        self.caller = caller
        self.channels: set[uuid.UUID] = set()
        self.last_active = time.time()
        self._send = send
        self._max_queue = max_queue
        # Ephemeral frames stop being queued at half capacity, keeping room for messages.
        self._ephemeral_limit = max_queue // 2
        self._queue: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    @property
    def user_id(self) -> str:
        return self.caller.user_id

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.caller.tenant_id

    @property
    def closing(self) -> bool:
        return self._closing is not None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.id}")

    def offer(self, frame: str, *, ephemeral: bool = False) -> None:
        """Queue a frame without waiting. Never blocks the caller (the fanout loop)."""
        if self._closing is not None:
            return
        depth = len(self._queue)
        if ephemeral and depth >= self._ephemeral_limit:
            dropped_frames.inc()
            return
        if depth >= self._max_queue:
            slow_consumer_closes.inc()
            log.info("closing slow consumer", extra={"connection_id": self.id, "user": self.user_id})
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        self._queue.append(frame)
        self._wakeup.set()

    def close(self, code: int, reason: str) -> None:
        """Drop what is queued and close the socket with this code, without waiting for the peer."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        self._queue.clear()
        # The writer may be stuck waiting for a peer that does not read; it will never finish that
        # send, so it is cancelled and the close frame goes out from a task of its own (the server
        # aborts the TCP connection if the peer does not answer the close within its timeout).
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.create_task(self._send_close(code, reason), name=f"ws-close-{self.id}")

    async def _send_close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue:
                    await self._send({"type": "websocket.send", "text": self._queue.popleft(), "bytes": None})
        except (OSError, RuntimeError, asyncio.CancelledError):
            # The peer is gone, we are closing it, or shutting down: nothing left to deliver.
            return
        except Exception:
            log.debug("writer stopped", exc_info=True, extra={"connection_id": self.id})

    # -- what the fanout hub hands over; this class speaks the JSON protocol, others override --------
    # ``shared`` is one dict per fanned-out item: the first socket of a protocol renders into it
    # and every other socket reuses the result, so each message is encoded once per protocol.
    def send_message(self, message: Message, shared: dict[str, str]) -> None:
        frame = shared.get("json")
        if frame is None:
            frame = shared["json"] = p.encode(p.MessageFrame.of(message))
        self.offer(frame)

    def send_typing(
        self, channel_id: uuid.UUID, user_id: str, display_name: str, shared: dict[str, str]
    ) -> None:
        frame = shared.get("json")
        if frame is None:
            frame = shared["json"] = p.encode(
                p.TypingFrame(channel_id=channel_id, user_id=user_id, payload=p.TypingPayload(display_name))
            )
        self.offer(frame, ephemeral=True)

    def send_presence(self, user_id: str, status: str, shared: dict[str, str]) -> None:
        frame = shared.get("json")
        if frame is None:
            frame = shared["json"] = p.encode(
                p.PresenceFrame(user_id=user_id, payload=p.PresencePayload(status))
            )
        self.offer(frame, ephemeral=True)

    def send_subscribed(self, channel_id: uuid.UUID) -> None:
        self.offer(p.encode(p.Subscribed(channel_id=channel_id)))

    def send_unsubscribed(self, channel_id: uuid.UUID) -> None:
        self.offer(p.encode(p.Unsubscribed(channel_id=channel_id)))

    def send_resync_required(self, channel_id: uuid.UUID) -> None:
        self.offer(p.encode(p.ResyncRequired(channel_id=channel_id)))

    async def stop(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._closer is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._closer, timeout=15)
