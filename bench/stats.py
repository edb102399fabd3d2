"""Pure bookkeeping for the bench: sequence tracking, loss counting, percentiles, merging.

Nothing here touches the network or the clock, so it is unit tested on known inputs
(tests/unit/test_bench_stats.py), and it needs nothing beyond the standard library. Latencies
travel between processes as raw ``array('q')`` microsecond values: merging is concatenation, so
percentiles over several receiver processes are exact, not an average of per-process percentiles.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9))

StreamKey = tuple[int, int]  # (sender index, channel index): one ordered stream of sequence numbers


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (the smallest value with >= q% at or below it)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    rank = max(1, math.ceil(q / 100.0 * n))
    return float(sorted_values[rank - 1])


def summarize_us(values_us: Iterable[int]) -> dict[str, float]:
    """count/mean/percentiles/max of microsecond samples, reported in milliseconds."""
    data = sorted(values_us)
    if not data:
        return {"count": 0}
    out: dict[str, float] = {"count": len(data), "mean": sum(data) / len(data) / 1000.0}
    for name, q in PERCENTILES:
        out[name] = percentile(data, q) / 1000.0
    out["min"] = data[0] / 1000.0
    out["max"] = data[-1] / 1000.0
    return out


def merge_latencies(parts: Iterable[bytes | array[int]]) -> array[int]:
    """Concatenate ``array('q')`` payloads (or their bytes) from several processes."""
    merged: array[int] = array("q")
    for part in parts:
        if isinstance(part, bytes):
            merged.frombytes(part)
        else:
            merged.extend(part)
    return merged


class SeqTracker:
    """Per (socket, stream): which sequence numbers arrived, duplicates and order violations."""

    __slots__ = ("duplicates", "last", "out_of_order", "received", "seen")

    def __init__(self, capacity: int = 256) -> None:
        self.seen = bytearray(capacity)
        self.last = -1
        self.received = 0
        self.duplicates = 0
        self.out_of_order = 0

    def observe(self, seq: int) -> None:
        if seq < 0:
            raise ValueError(f"negative sequence number {seq}")
        self.received += 1
        if seq >= len(self.seen):
            self.seen.extend(bytes(max(seq + 1 - len(self.seen), len(self.seen))))
        if self.seen[seq]:
            self.duplicates += 1
            return
        self.seen[seq] = 1
        if seq < self.last:
            self.out_of_order += 1
        else:
            self.last = seq

    def report(self) -> StreamSeen:
        return StreamSeen(
            seen=bytes(self.seen[: self.last + 1]),
            received=self.received,
            duplicates=self.duplicates,
            out_of_order=self.out_of_order,
        )


@dataclass(frozen=True, slots=True)
class StreamSeen:
    seen: bytes  # one byte per sequence number, 1 = arrived
    received: int
    duplicates: int
    out_of_order: int


@dataclass(slots=True)
class SocketReport:
    channel: int
    streams: dict[StreamKey, StreamSeen] = field(default_factory=dict)


@dataclass(slots=True)
class ReceiverReport:
    """What one receiver process sends back after a step (picklable)."""

    latencies_us: bytes
    sockets: list[SocketReport]
    first_recv_ns: int = 0
    last_recv_ns: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    disconnects: int = 0
    misrouted: int = 0
    other_frames: int = 0


@dataclass(slots=True)
class SenderReport:
    """What the sender process sends back after a step (picklable)."""

    acked: dict[StreamKey, bytes]  # one byte per sequence number, 1 = acknowledged
    sent: int
    errors: dict[str, int]
    ack_latencies_us: bytes
    first_send_ns: int = 0
    last_send_ns: int = 0
    last_ack_ns: int = 0
    max_behind_ms: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    acked_sends: int = -1  # of the acked writes, the messages (-1: all; a mix also edits and reacts)


def count_lost(acked: bytes, seen: bytes) -> tuple[int, int]:
    """(acknowledged but never delivered, delivered but never acknowledged) for one stream.

    Both maps hold one byte (0 or 1) per sequence number; as big integers of equal length, a bit
    count of ``a & ~s`` counts the bytes set in one and not the other."""
    n = max(len(acked), len(seen))
    a = int.from_bytes(acked.ljust(n, b"\0"), "big")
    s = int.from_bytes(seen.ljust(n, b"\0"), "big")
    return (a & ~s).bit_count(), (s & ~a).bit_count()


@dataclass(slots=True)
class Integrity:
    sockets: int = 0
    expected: int = 0  # acknowledged messages x sockets of their channel
    delivered: int = 0  # message frames received, duplicates included
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    unacked_delivered: int = 0
    misrouted: int = 0
    disconnects: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


def check_integrity(receivers: Sequence[ReceiverReport], acked: Mapping[StreamKey, bytes]) -> Integrity:
    """Every socket must see every acknowledged message of its channel exactly once, in order."""
    by_channel: dict[int, list[tuple[StreamKey, bytes]]] = {}
    for key, bitmap in acked.items():
        by_channel.setdefault(key[1], []).append((key, bitmap))
    out = Integrity()
    for receiver in receivers:
        out.misrouted += receiver.misrouted
        out.disconnects += receiver.disconnects
        for sock in receiver.sockets:
            out.sockets += 1
            expected_streams = by_channel.get(sock.channel, [])
            for key, bitmap in expected_streams:
                out.expected += bitmap.count(1)
                got = sock.streams.get(key)
                lost, extra = count_lost(bitmap, got.seen if got else b"")
                out.lost += lost
                out.unacked_delivered += extra
            for key, got in sock.streams.items():
                out.delivered += got.received
                out.duplicates += got.duplicates
                out.out_of_order += got.out_of_order
                if key not in acked:
                    out.unacked_delivered += got.seen.count(1)
    return out


def span_rate(count: int, first_ns: int, last_ns: int) -> float:
    """Events per second over [first, last]; 0 when the span is empty."""
    span = (last_ns - first_ns) / 1e9
    return count / span if span > 0 and count > 0 else 0.0


def merge_receivers(receivers: Sequence[ReceiverReport]) -> tuple[array[int], int, int]:
    """All latencies and the overall first/last delivery time of several receiver processes."""
    lat = merge_latencies(r.latencies_us for r in receivers)
    firsts = [r.first_recv_ns for r in receivers if r.first_recv_ns]
    lasts = [r.last_recv_ns for r in receivers if r.last_recv_ns]
    return lat, (min(firsts) if firsts else 0), (max(lasts) if lasts else 0)


def ratio(ours: float | None, reference: float | None) -> float | None:
    """echonats / reference, or None when either side is missing or the reference is zero."""
    if ours is None or reference is None or not math.isfinite(ours) or not math.isfinite(reference):
        return None
    if reference == 0:
        return None
    return ours / reference
