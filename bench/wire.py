"""What goes over the wire: bench message bodies, echonats frames and the NATS text protocol.

A body is ``B|<step>|<sender>|<channel>|<seq>|<send time ns>|<padding>``: plain ASCII, so it needs no
escaping inside the echonats JSON frame and a receiver finds it with two ``bytes.find`` calls
instead of decoding JSON for every delivery. The reference mode publishes a payload shaped (and
sized) like the echonats message frame, so both modes move the same bytes per delivery.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

BODY_PREFIX = b"B|"
_BODY_KEY = b'"body":"'
MESSAGE_FRAME_PREFIX = b'{"type":"message"'
EDIT_FRAME_PREFIX = b'{"type":"message_updated"'  # a mix's edit: its body is a bench body too
PRESENCE_FRAME_PREFIX = b'{"type":"presence"'
REACTION_FRAME_PREFIX = b'{"type":"reaction_added"'
_EMOJI_KEY = b'"emoji":":b-'


@dataclass(frozen=True, slots=True)
class BodyFields:
    step: int
    sender: int
    channel: int
    seq: int
    sent_ns: int


def make_body(step: int, sender: int, channel: int, seq: int, sent_ns: int, pad_to: int) -> str:
    head = f"B|{step}|{sender}|{channel}|{seq}|{sent_ns}|"
    return head + "x" * max(1, pad_to - len(head))


def parse_body(body: bytes) -> BodyFields | None:
    if not body.startswith(BODY_PREFIX):
        return None
    parts = body.split(b"|", 6)
    if len(parts) < 7:
        return None
    try:
        return BodyFields(int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4]), int(parts[5]))
    except ValueError:
        return None


def body_of_frame(frame: bytes) -> bytes | None:
    """The body of an echonats ``message`` frame (or of a reference payload) without decoding JSON."""
    start = frame.find(_BODY_KEY)
    if start < 0:
        return None
    start += len(_BODY_KEY)
    end = frame.find(b'"', start)
    return frame[start:end] if end > start else None


def send_frame(channel_id: str, body: str, nonce: str) -> bytes:
    return json.dumps(
        {"type": "send", "channelId": channel_id, "body": body, "nonce": nonce}, separators=(",", ":")
    ).encode()


def edit_frame(channel_id: str, message_id: int, body: str, nonce: str) -> bytes:
    frame = {"type": "edit", "channelId": channel_id, "messageId": message_id, "body": body, "nonce": nonce}
    return json.dumps(frame, separators=(",", ":")).encode()


def reaction_emoji(step: int, sender: int, channel: int, seq: int, sent_ns: int) -> str:
    """A bench body's fields as a reaction shortcode (``:b-<step>-<sender>-<channel>-<seq>-<ns>:``,
    under the 64 characters a reaction may have), so a reaction is timed like a message."""
    return f":b-{step}-{sender}-{channel}-{seq}-{sent_ns}:"


def react_frame(channel_id: str, message_id: int, emoji: str, nonce: str) -> bytes:
    frame = {
        "type": "react",
        "channelId": channel_id,
        "messageId": message_id,
        "emoji": emoji,
        "nonce": nonce,
    }
    return json.dumps(frame, separators=(",", ":")).encode()


def body_of_reaction(frame: bytes) -> bytes | None:
    """The bench body a ``reaction_added`` frame's shortcode carries (see ``reaction_emoji``)."""
    start = frame.find(_EMOJI_KEY)
    if start < 0:
        return None
    start += len(_EMOJI_KEY)
    end = frame.find(b':"', start)
    return b"B|" + frame[start:end].replace(b"-", b"|") + b"|" if end > start else None


def subscribe_frame(channel_id: str) -> bytes:
    return json.dumps({"type": "subscribe", "channelId": channel_id}, separators=(",", ":")).encode()


def reference_payload(channel_id: str, user_id: str, body: str) -> bytes:
    """A payload with the same shape and size as the echonats message frame for this body."""
    return json.dumps(
        {
            "type": "message",
            "channelId": channel_id,
            "userId": user_id,
            "body": body,
            "payload": {
                "messageId": 1_000_000,
                "senderDisplayName": "bench sender",
                "createdAt": "2026-01-01T00:00:00.000000Z",
            },
        },
        separators=(",", ":"),
    ).encode()


def reference_subject(channel_id: str) -> str:
    return f"bench.ref.{uuid.UUID(channel_id).hex}"


# -- NATS client protocol (text, over the WebSocket listener) -------------------------------------

NATS_CONNECT = (
    b'CONNECT {"verbose":false,"pedantic":false,"protocol":1,"headers":false,'
    b'"no_responders":false,"lang":"python-bench","version":"1"}\r\n'
)
NATS_PING = b"PING\r\n"
NATS_PONG = b"PONG\r\n"


def nats_sub(subject: str, sid: int) -> bytes:
    return f"SUB {subject} {sid}\r\n".encode()


def nats_pub(subject: str, payload: bytes) -> bytes:
    return f"PUB {subject} {len(payload)}\r\n".encode() + payload + b"\r\n"


class NatsParser:
    """Incremental parser of what a NATS server sends; a protocol line may span WebSocket frames.

    ``feed`` returns events: ``("MSG", payload)``, ``("PING", b"")``, ``("PONG", b"")``,
    ``("ERR", text)``; INFO and +OK are consumed silently.
    """

    __slots__ = ("_buf", "_need")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = -1  # payload bytes (+2 for CRLF) still expected after a MSG line, or -1

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self._buf += data
        events: list[tuple[str, bytes]] = []
        buf = self._buf
        pos = 0
        while True:
            if self._need >= 0:
                if len(buf) - pos < self._need + 2:
                    break
                events.append(("MSG", bytes(buf[pos : pos + self._need])))
                pos += self._need + 2
                self._need = -1
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = bytes(buf[pos:end])
            pos = end + 2
            if line.startswith(b"MSG "):
                self._need = int(line.rsplit(b" ", 1)[1])
            elif line == b"PING":
                events.append(("PING", b""))
            elif line == b"PONG":
                events.append(("PONG", b""))
            elif line.startswith(b"-ERR"):
                events.append(("ERR", line[5:]))
        del buf[:pos]
        return events
