"""Server frames written to the transport, and a connection's queue around them (fake sockets)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from echonats.core.caller import Caller
from echonats.gateway.connection import CLOSE_SLOW_CONSUMER, Connection, WriteCoalescer
from echonats.gateway.ws_framing import AsgiSink, payload_of, text_frame
from echonats.model import Member, Principal, Role


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_text_frame_is_what_websockets_would_send_and_parses_back(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    payload = payload.decode("utf-8", errors="ignore").encode()  # whole characters only
    ours = text_frame(payload)
    assert ours == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    reader = StreamReader()
    reader.feed_data(ours)
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as parsed:
        next(parser)
    frame = parsed.value.value
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)
    assert payload_of(ours) == payload


class FakeSink:
    """A socket that takes frames while ``open`` and otherwise makes flush wait."""

    def __init__(self) -> None:
        self.open = True
        self.resumed = asyncio.Event()
        self.written: list[bytes] = []  # one entry per transport write

    def write_now(self, frame: bytes) -> bool:
        if self.open:
            self.written.append(frame)
        return self.open

    async def flush(self, frames: list[bytes]) -> None:
        await self.resumed.wait()
        self.written.append(b"".join(frames))
        frames.clear()

    def payloads(self) -> list[bytes]:
        data = b"".join(self.written)
        out = []
        while data:
            size = data[1]
            head = 2 if size < 126 else 4
            size = size if size < 126 else int.from_bytes(data[2:4], "big")
            out.append(data[head : head + size])
            data = data[head + size :]
        return out


def make_connection(sink: FakeSink, max_queue: int = 4) -> tuple[Connection, list[dict[str, Any]]]:
    tenant = uuid.uuid4()
    member = Member(tenant, "u1", "U One", None, Role.MEMBER, datetime.now(UTC))
    caller = Caller(Principal("u1", tenant, "U One"), member)
    sent: list[dict[str, Any]] = []

    async def send(event: Any) -> None:
        sent.append(event)

    conn = Connection(caller, send, sink=sink, coalescer=WriteCoalescer(), max_queue=max_queue)
    return conn, sent


async def next_iteration() -> None:
    """Let the coalescer's end-of-iteration callback run (it was scheduled before this)."""
    await asyncio.sleep(0)


async def test_frames_offered_before_the_handshake_wait_for_it_and_keep_their_order() -> None:
    sink = FakeSink()
    conn, _ = make_connection(sink)
    conn.offer("a")
    conn.offer("b")
    assert sink.written == []
    sink.resumed.set()
    conn.start()
    conn.offer("c")  # queued behind a and b, not written ahead of them
    await asyncio.wait_for(conn.flushed(), 2)
    assert sink.payloads() == [b"a", b"b", b"c"]


async def test_a_socket_that_keeps_up_gets_one_write_per_loop_iteration() -> None:
    sink = FakeSink()
    conn, _ = make_connection(sink)
    conn.start()
    shared = text_frame(b'{"type":"message"}')
    for _ in range(10):
        conn.offer_frame(shared)
    assert sink.written == []  # not before the burst is over
    await next_iteration()
    assert sink.written == [shared * 10]
    conn.offer_frame(shared)
    await next_iteration()
    assert sink.written == [shared * 10, shared]


async def test_one_coalescer_writes_every_socket_of_a_fanout_once() -> None:
    coalescer = WriteCoalescer()
    sinks = [FakeSink() for _ in range(3)]
    conns = []
    for sink in sinks:
        conn, _ = make_connection(sink)
        conn._coalescer = coalescer
        conn.start()
        conns.append(conn)
    for body in (b"1", b"2"):
        frame = text_frame(body)
        for conn in conns:
            conn.offer_frame(frame)
    await next_iteration()
    assert [sink.payloads() for sink in sinks] == [[b"1", b"2"]] * 3
    assert [len(sink.written) for sink in sinks] == [1, 1, 1]


async def test_a_paused_socket_queues_then_gets_the_backlog_in_one_write() -> None:
    sink = FakeSink()
    conn, _ = make_connection(sink, max_queue=8)
    conn.start()
    sink.open = False
    for body in (b"1", b"2", b"3"):
        conn.offer_frame(text_frame(body))
    await next_iteration()  # the coalesced write finds the socket paused: queued, drain task waits
    assert sink.written == []
    sink.open = True  # writable again, but frames already wait: the next one must queue behind them
    conn.offer_frame(text_frame(b"4"))
    sink.resumed.set()
    await asyncio.wait_for(conn.flushed(), 2)
    assert sink.payloads() == [b"1", b"2", b"3", b"4"]
    assert len(sink.written) == 1


async def test_a_slow_socket_loses_typing_first_then_is_closed_as_a_slow_consumer() -> None:
    sink = FakeSink()
    conn, sent = make_connection(sink, max_queue=4)
    conn.start()
    sink.open = False
    conn.offer("m1")
    await next_iteration()  # paused: from now on frames wait in the bounded queue
    conn.offer("m2")
    conn.offer("typing", ephemeral=True)  # queue at half capacity: dropped
    conn.offer("m3")
    conn.offer("m4")
    assert not conn.closing
    conn.offer("m5")  # full
    assert conn.closing
    await conn.stop()
    assert sent == [{"type": "websocket.close", "code": CLOSE_SLOW_CONSUMER, "reason": "slow consumer"}]
    conn.offer("after close")
    assert sink.written == []


async def test_a_burst_bigger_than_the_queue_does_not_close_a_socket_that_keeps_up() -> None:
    sink = FakeSink()
    conn, _ = make_connection(sink, max_queue=4)
    conn.start()
    for i in range(20):
        conn.offer(str(i))
    await next_iteration()
    assert not conn.closing
    assert sink.payloads() == [str(i).encode() for i in range(20)]


async def test_without_uvicorns_transport_frames_go_out_as_asgi_text_events_in_order() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: Any) -> None:
        sent.append(event)

    sink = AsgiSink(send)
    frames = [text_frame("é1".encode()), text_frame(b"x" * 300)]
    assert not sink.write_now(frames[0])  # never writes synchronously: everything goes via flush
    while frames:
        await sink.flush(frames)
    assert sent == [
        {"type": "websocket.send", "text": "é1", "bytes": None},
        {"type": "websocket.send", "text": "x" * 300, "bytes": None},
    ]
