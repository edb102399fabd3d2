"""The STOMP 1.2 frame parser and serializer: escaping, framing, limits, round trips."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from echonats.gateway.stomp_frames import (
    Frame,
    FrameError,
    FrameParser,
    channel_destination,
    channel_message_tail,
    error_frame,
    escape,
    event_destination,
    event_message_frame,
    message_frame,
    negotiate_subprotocol,
    parse_heartbeat,
    receipt_frame,
    serialize,
    unescape,
)
from echonats.model import Message


def parse_all(data: bytes, **limits: int) -> list[Frame]:
    return FrameParser(**limits).feed(data)


def test_a_simple_frame_without_content_length_ends_at_the_first_nul() -> None:
    frames = parse_all(b"SEND\ndestination:/app/channels/x\n\nhello\x00")
    assert frames == [Frame("SEND", {"destination": "/app/channels/x"}, b"hello")]


def test_content_length_lets_the_body_contain_nul_bytes() -> None:
    body = b"a\x00b\x00\x00c"
    data = b"SEND\ndestination:/d\ncontent-length:6\n\n" + body + b"\x00"
    [frame] = parse_all(data)
    assert frame.body == body


def test_a_frame_split_at_every_byte_boundary_is_reassembled() -> None:
    data = b"SEND\r\ndestination:/d\r\ncontent-length:3\r\nx:a\\nb\r\n\r\n\x00\x00\x00\x00"
    expected = Frame("SEND", {"destination": "/d", "content-length": "3", "x": "a\nb"}, b"\x00\x00\x00")
    for cut in range(1, len(data)):
        parser = FrameParser()
        assert parser.feed(data[:cut]) == [], cut
        assert parser.feed(data[cut:]) == [expected], cut
        assert parser.buffered == 0


def test_byte_by_byte_feeding_yields_each_frame_once() -> None:
    data = b"SUBSCRIBE\nid:1\ndestination:/a\n\n\x00\nSEND\ndestination:/b\n\nhi\x00"
    parser = FrameParser()
    frames = [frame for i in range(len(data)) for frame in parser.feed(data[i : i + 1])]
    assert [f.command for f in frames] == ["SUBSCRIBE", "SEND"]
    assert frames[1].body == b"hi"


def test_several_frames_in_one_message_with_heartbeats_between() -> None:
    data = b"\n\r\nSEND\ndestination:/a\n\none\x00\n\n\r\nSEND\ndestination:/b\n\ntwo\x00\r\n"
    parser = FrameParser()
    frames = parser.feed(data)
    assert [(f.get("destination"), f.body) for f in frames] == [("/a", b"one"), ("/b", b"two")]
    assert parser.heartbeats == 6  # \n, \r\n before; \n, \n, \r\n between; \r\n after
    assert parser.buffered == 0


def test_lone_heartbeats_produce_no_frames_and_a_split_crlf_waits() -> None:
    parser = FrameParser()
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r") == []  # may be the start of CRLF
    assert parser.buffered == 1
    assert parser.feed(b"\n") == []
    assert parser.buffered == 0
    assert parser.heartbeats == 2


def test_crlf_line_endings_do_not_leak_cr_into_values() -> None:
    [frame] = parse_all(b"SEND\r\ndestination:/d\r\nreceipt:r-1\r\n\r\nbody\x00")
    assert frame.headers == {"destination": "/d", "receipt": "r-1"}


def test_header_escapes_are_decoded() -> None:
    [frame] = parse_all(b"SEND\nde\\cst:a\\cb\\nc\\rd\\\\e\n\n\x00")
    assert frame.headers == {"de:st": "a:b\nc\rd\\e"}


@pytest.mark.parametrize("value", [b"a\\tb", b"a\\", b"\\x", b"a\\ b"])
def test_undefined_escapes_are_errors(value: bytes) -> None:
    with pytest.raises(FrameError, match="escape"):
        parse_all(b"SEND\nx:" + value + b"\n\n\x00")


def test_connect_and_connected_headers_are_not_unescaped() -> None:
    [connect] = parse_all(b"CONNECT\nlogin:a\\cb\npasscode:x:y\\n\n\n\x00")
    assert connect.headers == {"login": "a\\cb", "passcode": "x:y\\n"}
    raw = serialize("CONNECTED", {"version": "1.2", "server": "a\\b:c"})
    assert raw == b"CONNECTED\nversion:1.2\nserver:a\\b:c\n\n\x00"
    with pytest.raises(ValueError, match="CR, LF"):
        serialize("CONNECT", {"passcode": "a\nb"})


def test_repeated_headers_first_wins() -> None:
    [frame] = parse_all(b"MESSAGE\nfoo:World\nfoo:Hello\ncontent-length:2\ncontent-length:9\n\nhi\x00")
    assert frame.headers == {"foo": "World", "content-length": "2"}
    assert frame.body == b"hi"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"FROB\n\n\x00", "unknown command"),
        (b"send\n\n\x00", "unknown command"),
        (b"SEND\nno-colon\n\n\x00", "without ':'"),
        (b"SEND\n:value\n\n\x00", "empty header name"),
        (b"SEND\nx:\xff\xfe\n\n\x00", "not UTF-8"),
        (b"SEND\ncontent-length:abc\n\n\x00", "invalid content-length"),
        (b"SEND\ncontent-length:-1\n\n\x00", "invalid content-length"),
        (b"SEND\ncontent-length:2\n\nabc\x00", "longer than its content-length"),
    ],
)
def test_malformed_frames_are_errors(data: bytes, error: str) -> None:
    with pytest.raises(FrameError, match=error):
        parse_all(data)


def test_an_oversized_header_section_fails_before_it_ends() -> None:
    parser = FrameParser(max_frame_bytes=100)
    parser.feed(b"SEND\n")
    with pytest.raises(FrameError, match="larger than 100"):
        parser.feed(b"x:" + b"a" * 200)  # no newline yet: it must not wait for one


def test_an_oversized_content_length_fails_before_the_body_arrives() -> None:
    parser = FrameParser(max_frame_bytes=100)
    with pytest.raises(FrameError, match="larger than 100"):
        parser.feed(b"SEND\ncontent-length:1000\n\n")


def test_an_unterminated_body_fails_once_it_passes_the_limit() -> None:
    parser = FrameParser(max_frame_bytes=100)
    assert parser.feed(b"SEND\n\n" + b"a" * 90) == []  # still within the limit: waits for the NUL
    with pytest.raises(FrameError, match="larger than 100"):
        parser.feed(b"a" * 20)


def test_a_frame_exactly_at_the_limit_is_accepted() -> None:
    data = b"SEND\n\n" + b"a" * 93 + b"\x00"
    assert len(data) == 100
    assert parse_all(data, max_frame_bytes=100)[0].body == b"a" * 93
    with pytest.raises(FrameError):
        parse_all(b"SEND\n\n" + b"a" * 94 + b"\x00", max_frame_bytes=100)


def test_too_many_headers() -> None:
    headers = b"".join(b"h%d:v\n" % i for i in range(5))
    assert parse_all(b"SEND\n" + headers + b"\n\x00", max_headers=5)
    with pytest.raises(FrameError, match="more than 4 headers"):
        parse_all(b"SEND\n" + headers + b"\n\x00", max_headers=4)


@pytest.mark.parametrize(
    "value",
    ["plain", "a:b", "line\nbreak", "cr\rhere", "back\\slash", "\\n literal", ":\r\n\\", "ünïcødé ✓", ""],
)
def test_escape_round_trip(value: str) -> None:
    assert unescape(escape(value)) == value
    frame = Frame("MESSAGE", {value or "empty": value, "subscription": "s:1"}, b"")
    assert parse_all(serialize(frame.command, frame.headers)) == [frame]


@pytest.mark.parametrize(
    "frame",
    [
        Frame("SEND", {"destination": "/app/channels/1"}, b"hello"),
        Frame("MESSAGE", {"subscription": "sub\n0", "message-id": "7"}, "héllo \u2713".encode()),
        Frame("ERROR", {"message": "bad: thing"}, b"with\x00nul"),
        Frame("RECEIPT", {"receipt-id": "r:1"}, b""),
        Frame("CONNECTED", {"version": "1.2", "heart-beat": "0,0"}, b""),
    ],
)
def test_serialize_parse_round_trip(frame: Frame) -> None:
    raw = serialize(frame.command, frame.headers, frame.body)
    [parsed] = parse_all(raw)
    expected = dict(frame.headers)
    if frame.body:
        expected["content-length"] = str(len(frame.body))  # added for every non-empty body
    assert parsed == Frame(frame.command, expected, frame.body)


def test_serialize_keeps_a_given_content_length_and_can_omit_it() -> None:
    assert serialize("SEND", [("content-length", "2")], b"hi") == b"SEND\ncontent-length:2\n\nhi\x00"
    assert serialize("SEND", {}, "hi", content_length=False) == b"SEND\n\nhi\x00"
    with pytest.raises(ValueError, match="unknown STOMP command"):
        serialize("NOPE")


def test_subprotocol_negotiation_prefers_12() -> None:
    assert negotiate_subprotocol(["v10.stomp", "v11.stomp", "v12.stomp"]) == "v12.stomp"
    assert negotiate_subprotocol(["v11.stomp", "mqtt"]) == "v11.stomp"
    assert negotiate_subprotocol([]) is None
    assert negotiate_subprotocol(["graphql-ws"]) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, (0, 0)), ("0,0", (0, 0)), ("1000,2500", (1000, 2500)), (" 10 , 20 ", (10, 20)),
     ("10", None), ("a,b", None), ("-1,0", None), ("1,2,3", None), ("\u0661,0", None)],
)  # fmt: skip
def test_heartbeat_header_parsing(value: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_heartbeat(value) == expected


def test_destinations() -> None:
    channel, tenant = uuid.uuid4(), uuid.uuid4()
    assert channel_destination(f"/channels/{channel}", send=False) == channel
    assert channel_destination(f"/app/channels/{channel}", send=True) == channel
    assert channel_destination(f"/app/channels/{channel}", send=False) is None  # wrong direction
    assert channel_destination(f"/channels/{channel}", send=True) is None
    assert channel_destination("/channels/undefined", send=False) is None
    assert channel_destination(f"/channels/{channel}/extra", send=False) is None
    assert event_destination(f"/servers/{tenant}/channels/created") == (tenant, "channel.created")
    assert event_destination(f"/servers/{tenant}/channels/deleted") == (tenant, "channel.deleted")
    assert event_destination(f"/servers/{tenant}/user-joined") == (tenant, "member.joined")
    assert event_destination(f"/servers/{tenant}/user-left") == (tenant, "member.left")
    assert event_destination(f"/servers/{tenant}/channels/updated") is None
    assert event_destination("/servers/undefined/user-left") is None


def test_rendered_server_frames_parse_back() -> None:
    message = Message(
        id=42, tenant_id=uuid.uuid4(), channel_id=uuid.uuid4(), sender_id="u1", sender_display_name="Ünï",
        body="hi\x00there", nonce=None, created_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )  # fmt: skip
    text = message_frame(escape("sub:1"), channel_message_tail(message))
    text += event_message_frame("e", "/servers/t/user-joined", "ev-1", {"userId": "u2"})
    text += error_frame("bad\nthing", code="not_found", receipt="r1") + receipt_frame("r2", extra="x")
    msg, event, error, receipt = FrameParser().feed(text.encode())
    destination = f"/channels/{message.channel_id}"
    assert msg.headers == {
        "subscription": "sub:1",
        "message-id": "42",
        "destination": destination,
        "content-type": "application/json",
        "content-length": str(len(msg.body)),
    }
    assert json.loads(msg.body) == {
        "id": 42,
        "username": "Ünï",
        "channelId": str(message.channel_id),
        "content": "hi\x00there",
        "timestamp": "2024-05-01T12:00:00Z",
    }
    assert (event.get("subscription"), json.loads(event.body)) == ("e", {"event": {"userId": "u2"}})
    assert (error.command, error.get("message"), error.get("code"), error.get("receipt-id")) == (
        "ERROR", "bad\nthing", "not_found", "r1")  # fmt: skip
    assert (receipt.command, receipt.headers) == ("RECEIPT", {"receipt-id": "r2", "extra": "x"})
