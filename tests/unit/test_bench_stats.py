"""The bench's bookkeeping on known inputs: percentiles, loss/dup/order counting, merging processes."""

from __future__ import annotations

import math
from array import array

import pytest

from bench.stats import (
    Integrity,
    ReceiverReport,
    SeqTracker,
    SocketReport,
    check_integrity,
    count_lost,
    merge_latencies,
    merge_receivers,
    percentile,
    ratio,
    span_rate,
    summarize_us,
)
from bench.wire import NatsParser, body_of_frame, make_body, parse_body, reference_payload


def _us(values: list[int]) -> bytes:
    return array("q", values).tobytes()


def _bitmap(seqs: list[int], size: int | None = None) -> bytes:
    out = bytearray(size if size is not None else max(seqs, default=-1) + 1)
    for seq in seqs:
        out[seq] = 1
    return bytes(out)


def _socket(channel: int, streams: dict[tuple[int, int], list[int]]) -> SocketReport:
    report = SocketReport(channel=channel)
    for key, seqs in streams.items():
        tracker = SeqTracker()
        for seq in seqs:
            tracker.observe(seq)
        report.streams[key] = tracker.report()
    return report


class TestPercentile:
    def test_nearest_rank_on_one_to_hundred(self) -> None:
        values = list(range(1, 101))
        assert percentile(values, 50) == 50
        assert percentile(values, 95) == 95
        assert percentile(values, 99) == 99
        assert percentile(values, 99.9) == 100
        assert percentile(values, 100) == 100
        assert percentile(values, 0) == 1

    def test_small_and_empty_inputs(self) -> None:
        assert percentile([7], 99.9) == 7
        assert percentile([1, 2], 50) == 1
        assert percentile([1, 2], 51) == 2
        assert math.isnan(percentile([], 50))

    def test_rejects_out_of_range(self) -> None:
        with pytest.raises(ValueError, match=r"0\.\.100"):
            percentile([1], 101)

    def test_summary_is_in_milliseconds(self) -> None:
        summary = summarize_us(array("q", [3000, 1000, 2000, 4000]))  # unsorted on purpose
        assert summary["count"] == 4
        assert summary["p50"] == 2.0
        assert summary["p99"] == 4.0
        assert summary["min"] == 1.0
        assert summary["max"] == 4.0
        assert summary["mean"] == 2.5

    def test_summary_of_nothing(self) -> None:
        assert summarize_us(array("q")) == {"count": 0}


class TestSeqTracker:
    def test_in_order_stream(self) -> None:
        tracker = SeqTracker(capacity=2)  # grows past its initial capacity
        for seq in range(10):
            tracker.observe(seq)
        report = tracker.report()
        assert (report.received, report.duplicates, report.out_of_order) == (10, 0, 0)
        assert report.seen == b"\x01" * 10

    def test_duplicates_and_reordering_are_told_apart(self) -> None:
        tracker = SeqTracker()
        for seq in [0, 1, 3, 2, 3, 5, 1]:
            tracker.observe(seq)
        report = tracker.report()
        assert report.received == 7
        assert report.duplicates == 2  # the second 3 and the second 1
        assert report.out_of_order == 1  # 2 after 3
        assert report.seen == bytes([1, 1, 1, 1, 0, 1])

    def test_negative_sequence_is_a_bug(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            SeqTracker().observe(-1)


class TestLossAndIntegrity:
    def test_count_lost(self) -> None:
        acked = _bitmap([0, 1, 2, 3, 4])
        assert count_lost(acked, _bitmap([0, 1, 2, 3, 4])) == (0, 0)
        assert count_lost(acked, _bitmap([0, 2, 4])) == (2, 0)
        assert count_lost(acked, b"") == (5, 0)
        # delivered though never acknowledged (the ack got lost): not a loss, counted apart
        assert count_lost(_bitmap([0, 1]), _bitmap([0, 1, 2])) == (0, 1)

    def test_clean_run_over_two_processes(self) -> None:
        acked = {(0, 0): _bitmap([0, 1, 2]), (1, 0): _bitmap([0, 1]), (0, 1): _bitmap([0, 1, 2, 3])}
        full0 = {(0, 0): [0, 1, 2], (1, 0): [0, 1]}
        full1 = {(0, 1): [0, 1, 2, 3]}
        receivers = [
            ReceiverReport(latencies_us=b"", sockets=[_socket(0, full0), _socket(1, full1)]),
            ReceiverReport(latencies_us=b"", sockets=[_socket(0, full0)]),
        ]
        result = check_integrity(receivers, acked)
        assert result == Integrity(sockets=3, expected=14, delivered=14)

    def test_loss_duplicates_order_misrouting_disconnects(self) -> None:
        acked = {(0, 0): _bitmap([0, 1, 2, 3]), (0, 1): _bitmap([0, 1])}
        receivers = [
            ReceiverReport(
                latencies_us=b"",
                sockets=[
                    _socket(0, {(0, 0): [0, 2, 1, 3, 3]}),  # reordered once, one duplicate
                    _socket(0, {(0, 0): [0, 3]}),  # lost 1 and 2
                    _socket(1, {}),  # lost both of channel 1
                ],
                misrouted=1,
                disconnects=2,
            )
        ]
        result = check_integrity(receivers, acked)
        assert result.sockets == 3
        assert result.expected == 4 + 4 + 2
        assert result.delivered == 5 + 2
        assert result.lost == 2 + 2
        assert result.duplicates == 1
        assert result.out_of_order == 1
        assert result.misrouted == 1
        assert result.disconnects == 2

    def test_stream_nobody_acknowledged_counts_as_unacked(self) -> None:
        receivers = [ReceiverReport(latencies_us=b"", sockets=[_socket(0, {(5, 0): [0, 1]})])]
        result = check_integrity(receivers, {})
        assert (result.expected, result.lost, result.unacked_delivered) == (0, 0, 2)


class TestMerging:
    def test_percentiles_over_processes_are_exact(self) -> None:
        # One process saw the fast half, the other the slow half: averaging per-process p50s (1.5 and
        # 5.5 ms -> 3.5) would be wrong; the merged nearest-rank p50 is 4 ms.
        a = ReceiverReport(
            latencies_us=_us([1000, 2000, 3000, 4000]), sockets=[], first_recv_ns=10, last_recv_ns=50
        )
        b = ReceiverReport(latencies_us=_us([5000, 6000, 7000]), sockets=[], first_recv_ns=5, last_recv_ns=40)
        lat, first, last = merge_receivers([a, b])
        assert sorted(lat.tolist()) == [1000, 2000, 3000, 4000, 5000, 6000, 7000]
        assert (first, last) == (5, 50)
        assert summarize_us(lat)["p50"] == 4.0

    def test_merge_accepts_arrays_and_nothing(self) -> None:
        assert merge_latencies([array("q", [1, 2]), _us([3])]).tolist() == [1, 2, 3]
        assert len(merge_latencies([])) == 0
        assert merge_receivers([ReceiverReport(latencies_us=b"", sockets=[])])[1:] == (0, 0)

    def test_rates_and_ratios(self) -> None:
        assert span_rate(100, 0, 2_000_000_000) == 50.0
        assert span_rate(100, 5, 5) == 0.0
        assert ratio(6.0, 3.0) == 2.0
        assert ratio(1.0, 0.0) is None
        assert ratio(None, 1.0) is None
        assert ratio(math.nan, 1.0) is None


class TestWire:
    def test_body_round_trip_through_a_frame(self) -> None:
        body = make_body(3, 1, 7, 42, 1_700_000_000_000_000_000, pad_to=64)
        assert len(body) == 64
        frame = reference_payload("5b3c1e8a-9f7e-4c1e-8d8e-1f2a3b4c5d6e", "u1", body)
        found = body_of_frame(frame)
        assert found is not None
        fields = parse_body(found)
        assert fields is not None
        assert (fields.step, fields.sender, fields.channel, fields.seq, fields.sent_ns) == (
            3,
            1,
            7,
            42,
            1_700_000_000_000_000_000,
        )
        assert parse_body(b"hello") is None
        assert parse_body(b"B|1|2|x|4|5|") is None

    def test_nats_parser_across_frame_boundaries(self) -> None:
        parser = NatsParser()
        stream = b'INFO {"x":1}\r\n+OK\r\nMSG a.b 1 5\r\nhello\r\nPING\r\nMSG a.b 1 reply 2\r\nhi\r\nPONG\r\n'
        events = []
        for i in range(0, len(stream), 7):  # arbitrary chunking, as WebSocket frames may split it
            events.extend(parser.feed(stream[i : i + 7]))
        assert events == [
            ("MSG", b"a.b", b"", b"hello"),
            ("PING", b"", b"", b""),
            ("MSG", b"a.b", b"", b"hi"),
            ("PONG", b"", b"", b""),
        ]
        assert parser.feed(b"-ERR 'Unknown Protocol Operation'\r\n") == [
            ("ERR", b"", b"", b"'Unknown Protocol Operation'")
        ]
