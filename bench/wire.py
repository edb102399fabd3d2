"""What goes over the wire: bench message bodies, echonats frames and the NATS text protocol.

A body is ``B|<step>|<sender>|<channel>|<seq>|<send time ns>|<padding>``: plain ASCII, so it needs no
escaping inside the echonats JSON frame and a receiver finds it with two ``bytes.find`` calls
instead of decoding JSON for every delivery. The reference mode publishes a payload shaped (and
sized) like the echonats message frame, so both modes move the same bytes per delivery. The
JetStream reference publishes the same payload with ``HPUB`` (a ``Nats-Msg-Id`` header, a reply
inbox for JetStream's PubAck) and receives the stream's republished copy as ``HMSG``.
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
    """The core-NATS reference's subject for a channel (outside the JetStream reference's stream)."""
    return f"bench.ref.{uuid.UUID(channel_id).hex}"


# The JetStream reference: senders publish to ``benchjs.<channel>.msg``, which the stream captures;
# the stream republishes each stored message on ``benchjs.<channel>.live``, where receivers listen
# (as echonats' messages stream republishes ``echo.<t>.ch.<c>.msg`` on ``....live``).
JS_STREAM = "BENCHREF"
JS_SUBJECTS = "benchjs.*.msg"
JS_REPUBLISH_DEST = "benchjs.{{wildcard(1)}}.live"


def js_subject(channel_id: str) -> str:
    return f"benchjs.{uuid.UUID(channel_id).hex}.msg"


def js_live_subject(channel_id: str) -> str:
    return f"benchjs.{uuid.UUID(channel_id).hex}.live"


# -- NATS client protocol (text, over the WebSocket listener) -------------------------------------


def _nats_connect(headers: bool) -> bytes:
    flag = "true" if headers else "false"
    return (
        f'CONNECT {{"verbose":false,"pedantic":false,"protocol":1,"headers":{flag},'
        f'"no_responders":{flag},"lang":"python-bench","version":"1"}}\r\n'
    ).encode()


NATS_CONNECT = _nats_connect(headers=False)
# The JetStream reference's clients: HPUB with Nats-Msg-Id, republished messages arrive as HMSG,
# and a publish no stream takes is answered at once with a 503 status (no responders).
NATS_CONNECT_HEADERS = _nats_connect(headers=True)
NATS_PING = b"PING\r\n"
NATS_PONG = b"PONG\r\n"

NatsEvent = tuple[str, bytes, bytes, bytes]  # (kind, subject, headers, payload)


def nats_sub(subject: str, sid: int) -> bytes:
    return f"SUB {subject} {sid}\r\n".encode()


def nats_pub(subject: str, payload: bytes) -> bytes:
    return f"PUB {subject} {len(payload)}\r\n".encode() + payload + b"\r\n"


def msg_id_headers(msg_id: str) -> bytes:
    """A NATS header block carrying ``Nats-Msg-Id`` (JetStream drops a repeat within the window)."""
    return f"NATS/1.0\r\nNats-Msg-Id: {msg_id}\r\n\r\n".encode()


def nats_hpub(subject: str, reply: str, headers: bytes, payload: bytes) -> bytes:
    size = len(headers) + len(payload)
    return f"HPUB {subject} {reply} {len(headers)} {size}\r\n".encode() + headers + payload + b"\r\n"


def parse_puback(headers: bytes, payload: bytes) -> tuple[int, str | None]:
    """(stream sequence, None) of a JetStream PubAck, or (-1, reason) for an error reply.

    ``{"stream":"S","seq":7}`` (``"duplicate":true`` too: the message is stored, once) is an ack;
    ``{"error":{"code":..,"description":..}}``, a status header (``NATS/1.0 503``: no stream took
    the subject) or anything unreadable is an error."""
    if headers:
        status = headers.split(b"\r\n", 1)[0][len(b"NATS/1.0") :].strip()
        if status:
            return -1, f"status {status.decode(errors='replace')}"
    try:
        reply = json.loads(payload)
    except ValueError:
        return -1, f"unreadable reply {payload[:60]!r}"
    if not isinstance(reply, dict):
        return -1, f"unreadable reply {payload[:60]!r}"
    error = reply.get("error")
    if error is not None:
        if isinstance(error, dict):
            code, detail = error.get("code"), error.get("description", "")
            return -1, f"{code} {error.get('err_code', '')} {detail}".strip()
        return -1, str(error)
    seq = reply.get("seq")
    if not isinstance(seq, int) or "stream" not in reply:
        return -1, f"unreadable reply {payload[:60]!r}"
    return seq, None


class NatsParser:
    """Incremental parser of what a NATS server sends; a protocol line may span WebSocket frames.

    ``feed`` returns events ``(kind, subject, headers, payload)``: ``MSG`` (headers empty) and
    ``HMSG`` (the header block, ``NATS/1.0...\\r\\n\\r\\n``, apart from the payload) with the
    message's subject, ``PING``, ``PONG`` and ``ERR`` (the text as payload); INFO and +OK are
    consumed silently.
    """

    __slots__ = ("_buf", "_hdr", "_need", "_subject")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = -1  # payload bytes (headers included; +2 for CRLF) still expected, or -1
        self._hdr = -1  # header bytes of an HMSG at the start of that payload, or -1 for a MSG
        self._subject = b""

    def feed(self, data: bytes) -> list[NatsEvent]:
        self._buf += data
        events: list[NatsEvent] = []
        buf = self._buf
        pos = 0
        while True:
            if self._need >= 0:
                if len(buf) - pos < self._need + 2:
                    break
                end = pos + self._need
                if self._hdr < 0:
                    events.append(("MSG", self._subject, b"", bytes(buf[pos:end])))
                else:
                    split = pos + self._hdr
                    events.append(("HMSG", self._subject, bytes(buf[pos:split]), bytes(buf[split:end])))
                pos = end + 2
                self._need = -1
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = bytes(buf[pos:end])
            pos = end + 2
            if line.startswith(b"MSG "):
                # MSG <subject> <sid> [reply-to] <#bytes>
                parts = line.split(b" ")
                self._subject, self._hdr, self._need = parts[1], -1, int(parts[-1])
            elif line.startswith(b"HMSG "):
                # HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
                parts = line.split(b" ")
                self._subject, self._hdr, self._need = parts[1], int(parts[-2]), int(parts[-1])
            elif line == b"PING":
                events.append(("PING", b"", b"", b""))
            elif line == b"PONG":
                events.append(("PONG", b"", b"", b""))
            elif line.startswith(b"-ERR"):
                events.append(("ERR", b"", b"", line[5:]))
        del buf[:pos]
        return events
