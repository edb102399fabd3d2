"""The bench's NATS references on known bytes: HMSG/MSG parsing, HPUB, JetStream PubAcks, and the
CPU-per-send figures and ratios against both references."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

from bench.costs import cost_rows, print_cpu_costs, process_columns
from bench.report import compute_ratios
from bench.system import cpu_costs
from bench.wire import (
    NatsParser,
    body_of_frame,
    js_live_subject,
    js_subject,
    make_body,
    msg_id_headers,
    nats_hpub,
    parse_puback,
    reference_payload,
    reference_subject,
)

CHANNEL = str(uuid.UUID(int=0xABC))


def _feed_in_pieces(data: bytes, size: int) -> list[tuple[str, bytes, bytes, bytes]]:
    parser = NatsParser()
    events = []
    for i in range(0, len(data), size):  # WebSocket frames may split anything anywhere
        events.extend(parser.feed(data[i : i + size]))
    return events


class TestParser:
    def test_a_republished_hmsg_gives_its_headers_apart_from_the_payload(self) -> None:
        body = make_body(4, 1, 0, 9, 1_700_000_000_000_000_000, 64)
        payload = reference_payload(CHANNEL, "u", body)
        headers = (
            b"NATS/1.0\r\nNats-Msg-Id: r-4-9\r\nNats-Stream: BENCHREF\r\n"
            b"Nats-Sequence: 12\r\nNats-Last-Sequence: 11\r\n\r\n"
        )
        live = js_live_subject(CHANNEL).encode()
        data = (
            b"HMSG %s 1 %d %d\r\n" % (live, len(headers), len(headers) + len(payload))
            + headers
            + payload
            + b"\r\nPING\r\n"
        )
        for size in (1, 5, 64, len(data)):
            events = _feed_in_pieces(data, size)
            assert events == [("HMSG", live, headers, payload), ("PING", b"", b"", b"")], size
            assert body_of_frame(events[0][3]) == body.encode()

    def test_msg_with_a_reply_subject_and_hmsg_with_one(self) -> None:
        data = (
            b"MSG _INBOX.r.0.1.5 1 reply.to 30\r\n"
            b'{"stream":"BENCHREF","seq":42}\r\n'
            b"HMSG a.b 2 reply.to 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
            b"HMSG a.c 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
        )
        assert _feed_in_pieces(data, 3) == [
            ("MSG", b"_INBOX.r.0.1.5", b"", b'{"stream":"BENCHREF","seq":42}'),
            ("HMSG", b"a.b", b"NATS/1.0\r\n\r\n", b"hi"),
            ("HMSG", b"a.c", b"NATS/1.0 503\r\n\r\n", b""),
        ]

    def test_an_hpub_is_what_the_parser_reads_back_as_an_hmsg(self) -> None:
        headers = msg_id_headers("run-1-7")
        assert headers == b"NATS/1.0\r\nNats-Msg-Id: run-1-7\r\n\r\n"
        frame = nats_hpub("benchjs.x.msg", "_INBOX.r.0.1.7", headers, b"payload")
        line, rest = frame.split(b"\r\n", 1)
        assert line == b"HPUB benchjs.x.msg _INBOX.r.0.1.7 %d %d" % (len(headers), len(headers) + 7)
        assert rest == headers + b"payload\r\n"
        # The same bytes as the server would deliver them (HMSG carries a sid after the subject).
        delivered = b"HMSG benchjs.x.msg 1 " + frame.split(b" ", 2)[2]
        assert _feed_in_pieces(delivered, 4) == [("HMSG", b"benchjs.x.msg", headers, b"payload")]


class TestPubAck:
    def test_an_ack_and_a_duplicate_ack_give_the_sequence(self) -> None:
        assert parse_puback(b"", b'{"stream":"BENCHREF","seq":42}') == (42, None)
        assert parse_puback(b"", b'{"stream":"BENCHREF","seq":42,"duplicate": true}') == (42, None)

    def test_an_error_reply_is_an_error(self) -> None:
        reply = {"error": {"code": 503, "err_code": 10077, "description": "maximum messages exceeded"}}
        seq, error = parse_puback(b"", json.dumps(reply).encode())
        assert seq == -1
        assert error == "503 10077 maximum messages exceeded"

    def test_no_responders_and_garbage_are_errors(self) -> None:
        assert parse_puback(b"NATS/1.0 503\r\n\r\n", b"") == (-1, "status 503")
        assert parse_puback(b"", b"not json")[0] == -1
        assert parse_puback(b"", b"[1]")[0] == -1
        assert parse_puback(b"", b'{"seq":1}')[0] == -1  # no stream: not a PubAck

    def test_a_plain_header_block_is_no_error(self) -> None:
        assert parse_puback(b"NATS/1.0\r\nX: y\r\n\r\n", b'{"stream":"S","seq":3}') == (3, None)


def test_the_three_targets_use_apart_subjects() -> None:
    core, js, live = reference_subject(CHANNEL), js_subject(CHANNEL), js_live_subject(CHANNEL)
    assert len({core, js, live}) == 3
    assert js.startswith("benchjs.")
    assert js.endswith(".msg")
    assert live.endswith(".live")
    assert not core.startswith("benchjs.")  # the core reference's publishes are never stored


# -- CPU per send and ratios ---------------------------------------------------------------------


def test_cpu_costs_per_send_and_per_delivery() -> None:
    servers: dict[str, dict[str, Any]] = {
        "gateway-A": {"cpu_pct": 50.0, "cpu_s": 2.5},
        "worker": {"cpu_pct": 10.0, "cpu_s": 0.5},
        "postgres": {"cpu_pct": 0.0, "cpu_s": 0.0},
    }
    totals = cpu_costs(servers, sends=2500, deliveries=500_000)
    assert servers["gateway-A"]["cpu_us_per_send"] == 1000.0
    assert servers["gateway-A"]["cpu_us_per_delivery"] == 5.0
    assert servers["worker"]["cpu_us_per_send"] == 200.0
    assert servers["postgres"]["cpu_us_per_send"] == 0.0
    assert totals["server_cpu_us_per_send"] == 1200.0
    assert totals["server_cpu_us_per_delivery"] == 6.0
    assert (totals["tick_us_per_send"] or 0) > 0
    nothing = cpu_costs({"nats": {"cpu_s": 1.0}}, sends=0, deliveries=0)
    assert nothing["server_cpu_us_per_send"] is None


def _step(target: str, servers: dict[str, float], acked: int = 1000, delivered: int = 1000) -> dict[str, Any]:
    procs: dict[str, dict[str, Any]] = {n: {"cpu_pct": s * 10, "cpu_s": s} for n, s in servers.items()}
    totals = cpu_costs(procs, acked, delivered)
    return {
        "scenario": "ingest",
        "label": "ingest: 10 room(s) x 1 sockets",
        "target": target,
        "offered_msgs_per_s": 500.0,
        "acked": acked,
        "integrity": {"delivered": delivered},
        "latency_ms": {"p50": 2.0, "p95": 4.0, "p99": 8.0, "p999": 9.0, "max": 10.0},
        "ack_ms": {"p50": 1.0},
        "achieved_deliveries_per_s": 500.0,
        "server_cpu_pct": sum(u["cpu_pct"] for u in procs.values()),
        "servers": procs,
        **totals,
    }


def test_ratios_against_each_reference() -> None:
    results = [
        _step("echonats", {"gateway-A": 0.6, "worker": 0.2, "nats": 0.2}),
        _step("reference", {"nats-reference": 0.01}),
        _step("reference-js", {"nats-reference": 0.1}),
    ]
    rows = compute_ratios(results)
    assert [r["reference"] for r in rows] == ["reference", "reference-js"]
    assert rows[0]["server_cpu_us_per_send"] == 100.0
    assert rows[1]["server_cpu_us_per_send"] == 10.0
    assert rows[1]["latency_p50"] == 1.0


def test_the_cost_table_has_a_column_per_process() -> None:
    results = [
        _step("echonats", {"worker": 0.2, "gateway-A": 0.6, "nats": 0.2}),
        _step("reference-js", {"nats-reference": 0.1}),
    ]
    assert process_columns(results) == ["gateway-A", "worker", "nats", "nats-reference"]
    rows = cost_rows(results, "send")
    assert rows[0] == ["ingest", "echonats", "500", "1,000", "1000.0", "600.0", "200.0", "200.0", "-"]
    assert rows[1][-1] == "100.0"
    assert rows[1][5] == "-"
    out = io.StringIO()
    print_cpu_costs(results, out)
    text = out.getvalue()
    assert "Server CPU per acknowledged send" in text
    assert "per delivery" not in text  # one delivery per send: no second table
    fanout = [_step("echonats", {"gateway-A": 1.0}, acked=100, delivered=20_000)]
    out = io.StringIO()
    print_cpu_costs(fanout, out)
    assert "Server CPU per delivery" in out.getvalue()
