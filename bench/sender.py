"""Sender process: S sender sockets paced on one absolute schedule (no drift), measuring acks.

Message k of a step is due at ``t0 + k / rate`` and goes to sender ``k % S``, which cycles over
its channels. The send timestamp (``time.time_ns``, the same clock the receivers read) is taken
right before the frame is written. If the process falls behind, due messages go out at once and
the worst lag behind schedule is reported, so a slow generator is visible instead of silently
lowering the offered load.

echonats: a ``send`` frame with a unique nonce; its ``ack`` (stored in JetStream) closes the
ack latency. Core-NATS reference: ``PUB`` followed by ``PING``; the ``PONG`` (the server has
processed the publish) closes it. JetStream reference: ``HPUB <subject> <inbox> ...`` with a
``Nats-Msg-Id`` (as echonats dedupes by nonce); JetStream's PubAck on the inbox (stored on disk)
closes it, an ``{"error": ...}`` reply counts as an error.

Mix (scenario ``mix``): of every 4 writes of a sender socket, the first is a send, the second an
edit of that socket's latest acknowledged message in the channel, the last two reactions to it;
each carries the bench fields (the edit in its body, a reaction in its shortcode), so receivers
time and sequence-check every kind alike. The reference publishes one same-sized message for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.child import cpu_seconds
from bench.stats import SenderReport, StreamKey
from bench.wire import (
    NATS_CONNECT,
    NATS_CONNECT_HEADERS,
    NATS_PING,
    NATS_PONG,
    NatsParser,
    edit_frame,
    make_body,
    msg_id_headers,
    nats_hpub,
    nats_pub,
    nats_sub,
    parse_puback,
    react_frame,
    reaction_emoji,
    reference_payload,
    send_frame,
)

ACK_DRAIN_TIMEOUT_S = 120.0  # a saturated server works off its backlog; the step waits for it
TIMER_RESOLUTION_S = 0.001
REACTIONS_PER_MESSAGE = 16  # mix: reactions to one message before sending instead (the limit is 20)


@dataclass(frozen=True, slots=True)
class SenderConnSpec:
    url: str
    user_id: str
    channels: list[int]  # channel indexes this sender cycles over


@dataclass(frozen=True, slots=True)
class SenderSpec:
    mode: str  # "echonats" | "reference" | "reference-js"
    targets: list[str]  # per channel index: channel id (echonats) or NATS subject (references)
    channel_ids: list[str]
    senders: list[SenderConnSpec] = field(default_factory=list)
    body_bytes: int = 64
    mix: bool = False


class SenderCore:
    def __init__(self, spec: SenderSpec) -> None:
        self.spec = spec
        self.run_id = uuid.uuid4().hex[:8]
        self.conns: list[_SenderBase] = []
        self.sent = 0
        self._drained = asyncio.Event()
        self._new_step(-1)

    def _new_step(self, step: int) -> None:
        self.step = step
        self.acked: dict[StreamKey, bytearray] = {}
        self.errors: dict[str, int] = {}
        self.ack_lat: array[int] = array("q")
        self.pending = 0
        self.sent = 0
        self.last_ack_ns = 0
        self.acked_sends = 0

    def progress(self) -> int:
        return self.sent

    def on_ack(self, step: int, key: StreamKey, seq: int, sent_ns: int, now_ns: int) -> None:
        if step != self.step:
            return  # a late ack of an earlier step (that step already counted it as missing)
        self.pending -= 1
        if self.pending == 0:
            self._drained.set()
        self.last_ack_ns = now_ns
        self.ack_lat.append((now_ns - sent_ns) // 1000)
        bitmap = self.acked.get(key)
        if bitmap is None:
            bitmap = self.acked[key] = bytearray(256)
        if seq >= len(bitmap):
            bitmap.extend(bytes(max(seq + 1 - len(bitmap), len(bitmap))))
        bitmap[seq] = 1

    def on_error(self, step: int, code: str) -> None:
        if step != self.step:
            return
        self.pending -= 1
        if self.pending == 0:
            self._drained.set()
        self.errors[code] = self.errors.get(code, 0) + 1

    async def handle(self, command: tuple[Any, ...]) -> object:
        kind = command[0]
        if kind == "connect":
            cls = SENDERS[self.spec.mode]
            self.conns = [cls(self, i, s) for i, s in enumerate(self.spec.senders)]
            for conn in self.conns:
                await ws_connect(lambda c=conn: c, conn.spec.url, websocket_handshake_timeout=30)  # type: ignore[misc]
                await asyncio.wait_for(asyncio.shield(conn.ready), 30)
            return ("connected", len(self.conns), 0, [])
        if kind == "run":
            return await self._run(int(command[1]), float(command[2]), float(command[3]))
        if kind == "close":
            for conn in self.conns:
                if conn.transport is not None and not conn.transport.is_disconnected:
                    conn.transport.disconnect()
            await asyncio.sleep(0.1)
            return ("closed",)
        raise ValueError(f"unknown command {kind!r}")

    async def _run(self, step: int, rate: float, duration_s: float) -> SenderReport:
        self._new_step(step)
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        loop = asyncio.get_running_loop()
        total = max(1, round(rate * duration_s))
        interval = 1.0 / rate
        n_senders = len(self.conns)
        seqs: dict[StreamKey, int] = {}
        first_ns = last_ns = 0
        max_behind = 0.0
        t0 = loop.time() + 0.02
        k = 0
        while k < total:
            delay = t0 + k * interval - loop.time()
            if delay > 0:
                # Event-loop timers have a 1 ms resolution (libuv): a shorter sleep would spin and
                # steal a core from the server. Late messages go out at once below, timestamped.
                await asyncio.sleep(max(delay, TIMER_RESOLUTION_S))
            now = loop.time()
            while k < total and t0 + k * interval <= now:
                max_behind = max(max_behind, now - (t0 + k * interval))
                s = k % n_senders
                conn = self.conns[s]
                channel = conn.spec.channels[(k // n_senders) % len(conn.spec.channels)]
                key = (s, channel)
                seq = seqs.get(key, 0)
                seqs[key] = seq + 1
                last_ns = conn.send(step, k, channel, seq)
                if not first_ns:
                    first_ns = last_ns
                self.pending += 1
                self.sent += 1
                k += 1
        if self.pending > 0:
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), ACK_DRAIN_TIMEOUT_S)
        if self.pending > 0:
            self.errors["no_ack"] = self.errors.get("no_ack", 0) + self.pending
        return SenderReport(
            acked={key: bytes(bitmap) for key, bitmap in self.acked.items()},
            sent=self.sent,
            errors=dict(self.errors),
            ack_latencies_us=self.ack_lat.tobytes(),
            first_send_ns=first_ns,
            last_send_ns=last_ns,
            last_ack_ns=self.last_ack_ns,
            max_behind_ms=max_behind * 1000.0,
            cpu_s=cpu_seconds() - cpu0,
            wall_s=time.monotonic() - wall0,
            acked_sends=self.acked_sends if self.spec.mix else -1,
        )


class _SenderBase(WSListener):
    def __init__(self, core: SenderCore, index: int, spec: SenderConnSpec) -> None:
        super().__init__()
        self.core = core
        self.index = index
        self.spec = spec
        self.transport: WSTransport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def body(self, step: int, channel: int, seq: int, now_ns: int) -> str:
        return make_body(step, self.index, channel, seq, now_ns, self.core.spec.body_bytes)

    def send(self, step: int, k: int, channel: int, seq: int) -> int:
        raise NotImplementedError

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("sender disconnected"))


class _EchoSender(_SenderBase):
    def __init__(self, core: SenderCore, index: int, spec: SenderConnSpec) -> None:
        super().__init__(core, index, spec)
        # nonce -> (step, stream, seq, sent ns, channel index if a send else -1)
        self.inflight: dict[str, tuple[int, StreamKey, int, int, int]] = {}
        self.latest: dict[int, int] = {}  # channel index -> this socket's latest acked message id
        self.reactions: dict[int, int] = {}  # channel index -> reactions sent to that message

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.TEXT, b'{"type":"ping"}')

    def send(self, step: int, k: int, channel: int, seq: int) -> int:
        assert self.transport is not None
        now = time.time_ns()
        nonce = f"{self.core.run_id}-{step}-{k}"
        target = self.core.spec.targets[channel]
        kind = (k // len(self.core.conns)) % 4 if self.core.spec.mix else 0
        latest = self.latest.get(channel)
        if kind >= 2 and self.reactions.get(channel, 0) >= REACTIONS_PER_MESSAGE:
            latest = None  # its send's ack is late: a message takes 20 distinct emoji at most
        if kind == 0 or latest is None:
            frame = send_frame(target, self.body(step, channel, seq, now), nonce)
        elif kind == 1:
            frame = edit_frame(target, latest, self.body(step, channel, seq, now), nonce)
        else:
            frame = react_frame(target, latest, reaction_emoji(step, self.index, channel, seq, now), nonce)
            self.reactions[channel] = self.reactions.get(channel, 0) + 1
        is_send = kind == 0 or latest is None
        self.inflight[nonce] = (step, (self.index, channel), seq, now, channel if is_send else -1)
        self.transport.send(WSMsgType.TEXT, frame)
        return now

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.time_ns()
        if frame.msg_type != WSMsgType.TEXT:
            return
        msg = json.loads(frame.get_payload_as_bytes())
        kind = msg.get("type")
        if kind == "ack":
            entry = self.inflight.pop(msg.get("nonce"), None)
            if entry is not None:
                step, key, seq, sent_ns, sent_to = entry
                if sent_to >= 0:
                    self.latest[sent_to] = int(msg["messageId"])
                    self.reactions[sent_to] = 0
                    if step == self.core.step:
                        self.core.acked_sends += 1
                self.core.on_ack(step, key, seq, sent_ns, now)
        elif kind == "error":
            entry = self.inflight.pop(msg.get("ref"), None)
            if entry is not None:
                self.core.on_error(entry[0], str(msg.get("code")))
        elif kind == "pong" and not self.ready.done():
            self.ready.set_result(None)


class _NatsSender(_SenderBase):
    def __init__(self, core: SenderCore, index: int, spec: SenderConnSpec) -> None:
        super().__init__(core, index, spec)
        self.parser = NatsParser()
        self.inflight: deque[tuple[int, StreamKey, int, int]] = deque()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.BINARY, NATS_CONNECT + NATS_PING)

    def send(self, step: int, k: int, channel: int, seq: int) -> int:
        assert self.transport is not None
        now = time.time_ns()
        body = self.body(step, channel, seq, now)
        payload = reference_payload(self.core.spec.channel_ids[channel], self.spec.user_id, body)
        self.inflight.append((step, (self.index, channel), seq, now))
        self.transport.send(WSMsgType.BINARY, nats_pub(self.core.spec.targets[channel], payload) + NATS_PING)
        return now

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.time_ns()
        if frame.msg_type not in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
            return
        for event, _subject, _headers, payload in self.parser.feed(frame.get_payload_as_bytes()):
            if event == "PONG":
                if not self.ready.done():
                    self.ready.set_result(None)
                elif self.inflight:
                    self.core.on_ack(*self.inflight.popleft(), now)
            elif event == "PING":
                transport.send(WSMsgType.BINARY, NATS_PONG)
            elif event == "ERR" and self.inflight:
                self.core.on_error(self.inflight.popleft()[0], payload.decode(errors="replace"))


class _JsSender(_SenderBase):
    """JetStream reference: one inbox subscription per socket, a reply subject per publish."""

    def __init__(self, core: SenderCore, index: int, spec: SenderConnSpec) -> None:
        super().__init__(core, index, spec)
        self.parser = NatsParser()
        self.inbox = f"_INBOX.{core.run_id}.{index}"
        # reply subject -> (step, stream, seq, sent ns)
        self.inflight: dict[bytes, tuple[int, StreamKey, int, int]] = {}

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        transport.send(WSMsgType.BINARY, NATS_CONNECT_HEADERS + nats_sub(f"{self.inbox}.>", 1) + NATS_PING)

    def send(self, step: int, k: int, channel: int, seq: int) -> int:
        assert self.transport is not None
        now = time.time_ns()
        body = self.body(step, channel, seq, now)
        payload = reference_payload(self.core.spec.channel_ids[channel], self.spec.user_id, body)
        reply = f"{self.inbox}.{step}.{k}"
        headers = msg_id_headers(f"{self.core.run_id}-{step}-{k}")
        self.inflight[reply.encode()] = (step, (self.index, channel), seq, now)
        self.transport.send(
            WSMsgType.BINARY, nats_hpub(self.core.spec.targets[channel], reply, headers, payload)
        )
        return now

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.time_ns()
        if frame.msg_type not in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
            return
        for event, subject, headers, payload in self.parser.feed(frame.get_payload_as_bytes()):
            if event in ("MSG", "HMSG"):
                entry = self.inflight.pop(subject, None)
                if entry is None:
                    continue
                _seq, error = parse_puback(headers, payload)
                if error is None:
                    self.core.on_ack(*entry, now)
                else:
                    self.core.on_error(entry[0], error[:80])
            elif event == "PONG" and not self.ready.done():
                self.ready.set_result(None)  # the inbox subscription is in place
            elif event == "PING":
                transport.send(WSMsgType.BINARY, NATS_PONG)
            elif event == "ERR":  # not tied to one publish: counted, the missing acks show as no_ack
                code = f"-ERR {payload.decode(errors='replace')[:80]}"
                self.core.errors[code] = self.core.errors.get(code, 0) + 1


SENDERS: dict[str, type[_SenderBase]] = {
    "echonats": _EchoSender,
    "reference": _NatsSender,
    "reference-js": _JsSender,
}
