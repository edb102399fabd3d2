"""STOMP 1.2 frames: an incremental parser, a serializer and the server's frames. Pure: no I/O, no
framework imports.

Over WebSocket a STOMP frame may arrive split across several messages, several frames may share
one message, and heart-beats (lone EOLs) may sit between frames, so the parser keeps a buffer and
returns whatever complete frames it holds after each ``feed``.

Rules implemented (https://stomp.github.io/stomp-specification-1.2.html):

- Lines end with LF or CRLF; one trailing CR before LF is part of the EOL, never of a value.
- Header names and values are escaped (``\\r`` ``\\n`` ``\\c`` ``\\\\``); any other escape is an
  error. CONNECT and CONNECTED headers are not escaped, for 1.0 compatibility (the spec says so).
- Repeated headers: the first occurrence wins. A header splits at its first ``:``; a raw ``:`` in
  a value is tolerated (1.0 clients send them) rather than refused.
- ``content-length`` (bytes) lets a body contain NUL; without it the body ends at the first NUL.
- A frame bigger than ``max_frame_bytes`` (or with too many headers) is an error as soon as that
  is known, so a client cannot make the server buffer without bound.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from echonats.model import Message
from echonats.model import events as ev

CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
COMMANDS = CLIENT_COMMANDS | SERVER_COMMANDS
# The spec exempts these from escaping: 1.0 peers send them before any version is negotiated.
UNESCAPED_COMMANDS = frozenset({"CONNECT", "CONNECTED"})

DEFAULT_MAX_FRAME_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 64
HEARTBEAT = "\n"

_ESCAPES = {"\\r": "\r", "\\n": "\n", "\\c": ":", "\\\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(.?)", re.DOTALL)
_TO_ESCAPE = str.maketrans({"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"})


class FrameError(ValueError):
    """The input is not valid STOMP (the connection cannot be trusted to resynchronise)."""


@dataclass(frozen=True, slots=True)
class Frame:
    command: str
    # First occurrence of each header, in arrival order (later repeats are dropped).
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def escape(value: str) -> str:
    return value.translate(_TO_ESCAPE)


def unescape(value: str) -> str:
    if "\\" not in value:
        return value  # the common case costs one scan

    def replace(match: re.Match[str]) -> str:
        try:
            return _ESCAPES[match.group(0)]
        except KeyError:
            raise FrameError(f"undefined escape sequence {match.group(0)!r} in header") from None

    return _ESCAPE_RE.sub(replace, value)


def serialize(
    command: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: bytes | str = b"",
    *,
    content_length: bool = True,
) -> bytes:
    """One frame as bytes. ``content-length`` is added for a non-empty body unless given or disabled."""
    if command not in COMMANDS:
        raise ValueError(f"unknown STOMP command {command!r}")
    payload = body.encode() if isinstance(body, str) else body
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    if content_length and payload and not any(name == "content-length" for name, _ in pairs):
        pairs.append(("content-length", str(len(payload))))
    raw = command in UNESCAPED_COMMANDS
    lines = [command]
    for name, value in pairs:
        if raw and (":" in name or any(c in name + value for c in "\r\n")):
            # Unescaped headers cannot represent these; refusing beats emitting a corrupt frame.
            raise ValueError(f"{command} headers cannot contain CR, LF, or ':' in a name")
        lines.append(f"{name}:{value}" if raw else f"{escape(name)}:{escape(value)}")
    return ("\n".join(lines) + "\n\n").encode() + payload + b"\x00"


class FrameParser:
    """Feed bytes as they arrive; get back the complete frames. Heart-beat EOLs are skipped.

    After a ``FrameError`` the parser's state is undefined: the caller reports and closes.
    """

    def __init__(
        self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, max_headers: int = DEFAULT_MAX_HEADERS
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.max_headers = max_headers
        self._buffer = bytearray()
        self.heartbeats = 0  # EOLs seen between frames; callers may count them as liveness

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            self._skip_heartbeats()
            if not self._buffer:
                return frames
            frame = self._next_frame()
            if frame is None:
                return frames
            frames.append(frame)

    def _skip_heartbeats(self) -> None:
        buf = self._buffer
        start = 0
        while start < len(buf):
            if buf[start] == 0x0A:
                start += 1
            elif buf[start] == 0x0D and start + 1 < len(buf) and buf[start + 1] == 0x0A:
                start += 2
            else:
                break  # a lone CR at the end waits for its LF
            self.heartbeats += 1
        if start:
            del buf[:start]

    def _next_frame(self) -> Frame | None:
        """Parse the frame at the start of the buffer and consume it; None if it is incomplete."""
        buf = self._buffer
        lines: list[bytes] = []
        pos = 0
        while True:  # header section: lines up to the first empty one
            end = buf.find(b"\n", pos)
            if end < 0:
                self._check_size(len(buf))
                return None
            line = bytes(buf[pos:end])
            pos = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                break
            lines.append(line)
            if len(lines) > self.max_headers + 1:
                raise FrameError(f"more than {self.max_headers} headers")
            self._check_size(pos)
        command = _text(lines[0], "command")
        if command not in COMMANDS:
            raise FrameError(f"unknown command {command[:40]!r}")
        headers = self._headers(command, lines[1:])
        body_start = pos
        length_header = headers.get("content-length")
        if length_header is not None:
            if not length_header.isdigit() or not length_header.isascii():
                raise FrameError(f"invalid content-length {length_header[:40]!r}")
            length = int(length_header)
            self._check_size(body_start + length + 1)
            if len(buf) < body_start + length + 1:
                return None
            if buf[body_start + length] != 0:
                raise FrameError("frame body is longer than its content-length")
            end = body_start + length
        else:
            end = buf.find(b"\x00", body_start)
            if end < 0:
                self._check_size(len(buf) + 1)
                return None
        self._check_size(end + 1)
        frame = Frame(command, headers, bytes(buf[body_start:end]))
        del buf[: end + 1]
        return frame

    def _headers(self, command: str, lines: list[bytes]) -> dict[str, str]:
        escaped = command not in UNESCAPED_COMMANDS
        headers: dict[str, str] = {}
        for line in lines:
            name_raw, colon, value_raw = _text(line, "header").partition(":")
            if not colon:
                raise FrameError(f"header line without ':': {name_raw[:40]!r}")
            name = unescape(name_raw) if escaped else name_raw
            if not name:
                raise FrameError("empty header name")
            value = unescape(value_raw) if escaped else value_raw
            headers.setdefault(name, value)  # the first occurrence wins
        return headers

    def _check_size(self, size: int) -> None:
        if size > self.max_frame_bytes:
            raise FrameError(f"frame larger than {self.max_frame_bytes} bytes")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise FrameError(f"{what} is not UTF-8") from None


# -- the server's frames, rendered as text (they travel as WebSocket text messages) --------------
SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")  # preferred first


def negotiate_subprotocol(offered: Iterable[str]) -> str | None:
    """The WebSocket subprotocol to answer; clients such as Node's ``ws`` abort if none is."""
    offers = set(offered)
    return next((proto for proto in SUBPROTOCOLS if proto in offers), None)


def parse_heartbeat(value: str | None) -> tuple[int, int] | None:
    """``heart-beat: cx,cy`` as two non-negative integers (absent: 0,0); None if malformed."""
    parts = (value or "0,0").split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and p.strip().isascii() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def message_tail(message_id: str, destination: str, body: bytes) -> str:
    """A MESSAGE frame after its subscription header: the same for every subscriber, so fanout
    renders it once and each socket only prepends its own subscription id."""
    return (
        f"\nmessage-id:{escape(message_id)}\ndestination:{escape(destination)}\n"
        f"content-type:application/json\ncontent-length:{len(body)}\n\n{body.decode()}\x00"
    )


def message_frame(escaped_subscription: str, tail: str) -> str:
    return f"MESSAGE\nsubscription:{escaped_subscription}{tail}"


def message_frame_bytes(escaped_subscription: str, tail: bytes) -> bytes:
    """:func:`message_frame` on a tail already encoded to UTF-8 (once per fanned-out message)."""
    return b"MESSAGE\nsubscription:" + escaped_subscription.encode() + tail


def receipt_frame(receipt_id: str, **extra: str) -> str:
    return serialize("RECEIPT", {"receipt-id": receipt_id, **extra}).decode()


def error_frame(message: str, *, code: str | None = None, receipt: str | None = None, **extra: str) -> str:
    """An ERROR frame: the short text in the ``message`` header, the full text as the body."""
    headers = {"message": message[:200], "content-type": "text/plain", **extra}
    if code is not None:
        headers["code"] = code
    if receipt is not None:
        headers["receipt-id"] = receipt  # which frame failed, as the spec recommends
    return serialize("ERROR", headers, message).decode()


# -- echonats' destinations ---------------------------------------------------------------------
_CHANNEL = re.compile(r"(/app)?/channels/([^/]+)")
_SERVER_EVENT = re.compile(r"/servers/([^/]+)/(channels/created|channels/deleted|user-joined|user-left)")
EVENT_DESTINATIONS = {
    "channels/created": ev.CHANNEL_CREATED,
    "channels/deleted": ev.CHANNEL_DELETED,
    "user-joined": ev.MEMBER_JOINED,
    "user-left": ev.MEMBER_LEFT,
}


def channel_destination(destination: str, *, send: bool) -> uuid.UUID | None:
    """The channel of ``/app/channels/{id}`` (``send``) or ``/channels/{id}``; None otherwise."""
    match = _CHANNEL.fullmatch(destination)
    if match is None or (match.group(1) is not None) != send:
        return None
    return _uuid(match.group(2))


def event_destination(destination: str) -> tuple[uuid.UUID, str] | None:
    """(tenant id, event type) of ``/servers/{tenantId}/<kind>``; None otherwise."""
    match = _SERVER_EVENT.fullmatch(destination)
    tenant_id = _uuid(match.group(1)) if match else None
    if match is None or tenant_id is None:
        return None
    return tenant_id, EVENT_DESTINATIONS[match.group(2)]


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


# -- the bodies of echonats' MESSAGE frames -----------------------------------------------------
class ChannelMessageBody(msgspec.Struct, rename="camel"):
    id: int
    username: str  # the sender's display name
    channel_id: uuid.UUID
    content: str
    timestamp: datetime


_json = msgspec.json.Encoder()


def channel_message_tail(m: Message) -> str:
    # By hand: the fields are renamed (msgspec.convert cannot map them) and this runs once per
    # fanned-out message.
    body = _json.encode(ChannelMessageBody(m.id, m.sender_display_name, m.channel_id, m.body, m.created_at))
    return message_tail(str(m.id), f"/channels/{m.channel_id}", body)


def event_message_frame(escaped_subscription: str, destination: str, event_id: str, data: object) -> str:
    tail = message_tail(event_id, destination, _json.encode({"event": data}))
    return message_frame(escaped_subscription, tail)
