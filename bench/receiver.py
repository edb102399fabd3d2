"""Receiver process: many WebSocket clients on one event loop, recording every delivery.

Each socket subscribes to one channel (echonats ``subscribe`` frame, or NATS ``SUB`` over the
nats-server WebSocket listener in the reference modes; the JetStream reference's receivers listen
on the stream's republished subject, whose messages arrive as ``HMSG`` with the stream's headers).
A delivery costs a timestamp, two ``bytes.find`` calls and a split: the receive time is taken
first thing in the frame callback, so the figure is send -> delivery as seen by a client,
including the kernel and this process.
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.child import cpu_seconds
from bench.stats import ReceiverReport, SeqTracker, SocketReport, StreamKey
from bench.wire import (
    EDIT_FRAME_PREFIX,
    MESSAGE_FRAME_PREFIX,
    NATS_CONNECT,
    NATS_CONNECT_HEADERS,
    NATS_PING,
    NATS_PONG,
    PRESENCE_FRAME_PREFIX,
    REACTION_FRAME_PREFIX,
    NatsParser,
    body_of_frame,
    body_of_reaction,
    nats_sub,
    parse_body,
    subscribe_frame,
)

CONNECT_CONCURRENCY = 64
SUBSCRIBE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class SocketSpec:
    url: str
    channel: int  # channel index (what bodies carry)
    target: str  # echonats: channel id; references: NATS subject


@dataclass(frozen=True, slots=True)
class ReceiverSpec:
    mode: str  # "echonats" | "reference" | "reference-js"
    sockets: list[SocketSpec] = field(default_factory=list)


class ReceiverCore:
    def __init__(self, spec: ReceiverSpec) -> None:
        self.spec = spec
        self.listeners: list[_Base] = []
        self.connected = 0
        self.step = -1
        self._reset()

    def _reset(self) -> None:
        self.latencies: array[int] = array("q")
        self.trackers: list[dict[StreamKey, SeqTracker]] = [{} for _ in self.listeners]
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.misrouted = 0
        self.other = 0
        self.stale = 0
        self.disconnects = 0
        self.cpu0 = cpu_seconds()
        self.wall0 = time.monotonic()

    def progress(self) -> int:
        return self.count if self.step >= 0 else self.connected

    def on_body(self, index: int, body: bytes | None, now_ns: int) -> None:
        fields = parse_body(body) if body is not None else None
        if fields is None or fields.step != self.step:
            self.stale += 1
            return
        channel = self.listeners[index].spec.channel
        if fields.channel != channel:
            self.misrouted += 1
        key = (fields.sender, fields.channel)
        streams = self.trackers[index]
        tracker = streams.get(key)
        if tracker is None:
            tracker = streams[key] = SeqTracker()
        tracker.observe(fields.seq)
        self.latencies.append((now_ns - fields.sent_ns) // 1000)
        self.count += 1
        if not self.first_ns:
            self.first_ns = now_ns
        self.last_ns = now_ns

    def on_disconnect(self, index: int) -> None:
        self.disconnects += 1

    async def handle(self, command: tuple[Any, ...]) -> object:
        kind = command[0]
        if kind == "connect":
            return await self._connect(int(command[1]))
        if kind == "start":
            self.step = int(command[1])
            self._reset()
            return ("ok",)
        if kind == "stop":
            report = self._report()
            self.step = -1
            return report
        if kind == "close":
            for listener in self.listeners:
                listener.close()
            await asyncio.sleep(0.2)
            return ("closed",)
        raise ValueError(f"unknown command {kind!r}")

    async def _connect(self, upto: int) -> tuple[str, int, int, list[str]]:
        """Connect sockets[len(listeners):upto] and wait until each is subscribed."""
        start = len(self.listeners)
        specs = self.spec.sockets[start:upto]
        cls = _EchoListener if self.spec.mode == "echonats" else _NatsListener
        new = [cls(self, start + i, s) for i, s in enumerate(specs)]
        self.listeners.extend(new)
        self.trackers.extend({} for _ in new)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(listener: _Base) -> str | None:
            async with gate:
                try:
                    await ws_connect(
                        lambda: listener,
                        listener.spec.url,
                        websocket_handshake_timeout=30,
                        read_buffer_init_size=4096,
                    )
                    await asyncio.wait_for(asyncio.shield(listener.subscribed), SUBSCRIBE_TIMEOUT_S)
                except Exception as exc:
                    return f"{type(exc).__name__}: {exc}"[:200]
            self.connected += 1
            return None

        results = await asyncio.gather(*(one(listener) for listener in new))
        errors = [r for r in results if r]
        return ("connected", len(new) - len(errors), len(errors), errors[:5])

    def _report(self) -> ReceiverReport:
        sockets = [
            SocketReport(
                channel=listener.spec.channel,
                streams={key: t.report() for key, t in self.trackers[i].items()},
            )
            for i, listener in enumerate(self.listeners)
        ]
        return ReceiverReport(
            latencies_us=self.latencies.tobytes(),
            sockets=sockets,
            first_recv_ns=self.first_ns,
            last_recv_ns=self.last_ns,
            cpu_s=cpu_seconds() - self.cpu0,
            wall_s=time.monotonic() - self.wall0,
            disconnects=self.disconnects,
            misrouted=self.misrouted,
            other_frames=self.other,
        )


class _Base(WSListener):
    def __init__(self, core: ReceiverCore, index: int, spec: SocketSpec) -> None:
        super().__init__()
        self.core = core
        self.index = index
        self.spec = spec
        self.transport: WSTransport | None = None
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closing = False

    def _fail(self, reason: str) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(reason))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._fail("disconnected before subscribing")
        if not self.closing:
            self.core.on_disconnect(self.index)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.disconnect()


class _EchoListener(_Base):
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.TEXT, subscribe_frame(self.spec.target))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.time_ns()
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            data = frame.get_payload_as_bytes()
            if data.startswith(MESSAGE_FRAME_PREFIX) or data.startswith(EDIT_FRAME_PREFIX):
                self.core.on_body(self.index, body_of_frame(data), now)
            elif data.startswith(REACTION_FRAME_PREFIX):
                self.core.on_body(self.index, body_of_reaction(data), now)
            elif data.startswith(PRESENCE_FRAME_PREFIX):
                self.core.other += 1
            else:
                self._control(data)
        elif kind == WSMsgType.CLOSE:
            self._fail(f"closed {frame.get_close_code()} {frame.get_close_reason()}")

    def _control(self, data: bytes) -> None:
        self.core.other += 1
        msg = json.loads(data)
        if msg.get("type") == "subscribed" and not self.subscribed.done():
            self.subscribed.set_result(None)
        elif msg.get("type") == "error":
            self._fail(f"error frame {msg.get('code')}: {msg.get('message')}")


class _NatsListener(_Base):
    def __init__(self, core: ReceiverCore, index: int, spec: SocketSpec) -> None:
        super().__init__(core, index, spec)
        self.parser = NatsParser()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        connect = NATS_CONNECT_HEADERS if self.core.spec.mode == "reference-js" else NATS_CONNECT
        transport.send(WSMsgType.BINARY, connect + nats_sub(self.spec.target, 1) + NATS_PING)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.time_ns()
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            self._fail(f"closed {frame.get_close_code()} {frame.get_close_reason()}")
            return
        if kind not in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
            return
        for event, _subject, _headers, payload in self.parser.feed(frame.get_payload_as_bytes()):
            if event == "MSG" or event == "HMSG":
                self.core.on_body(self.index, body_of_frame(payload), now)
            elif event == "PING":
                transport.send(WSMsgType.BINARY, NATS_PONG)
            elif event == "PONG":
                if not self.subscribed.done():
                    self.subscribed.set_result(None)
            else:
                self._fail(f"nats error {payload!r}")
