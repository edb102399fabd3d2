"""Bounds on what an unauthenticated HTTP client can make a gateway hold: header size and read time.

uvicorn's httptools protocol (the one it picks by default, and the fast one) has neither a header size
limit nor a deadline for a request whose headers or body never finish; h11 has only the size limit
and costs throughput. This subclass adds both at the byte stream, before anything reaches the app:

- request line + headers larger than ``max_header_bytes``: 431 and close, checked on every read, so at
  most one read (asyncio reads up to 256 KiB) is buffered past the limit. WebSocket upgrades are HTTP
  requests here too, so the limit covers them;
- headers not complete ``header_timeout_s`` after the connection opened or the request's first byte:
  408 and close (the idle time between keep-alive requests is uvicorn's ``timeout_keep_alive``);
- a body the app waits for that has not fully arrived ``body_timeout_s`` after the app first waited
  for it: 408 and close; the app's ``receive`` returns ``http.disconnect``.

Each drop is counted in one rate-limited INFO line (see :class:`echonats.logs.RateLimitedLog`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from echonats.logs import RateLimitedLog

# One line per 10 s at most, whatever a client does: drops are normal on the internet, not errors.
dropped_requests = RateLimitedLog(logging.getLogger("echonats.http"), "http requests dropped", 10.0)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float


def _error_response(status: int, text: str) -> bytes:
    body = text.encode("ascii")
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


# How long a rejected connection is kept half-closed, reading and dropping input, before it is closed.
LINGER_S = 2.0

HEADERS_TOO_LARGE = _error_response(431, "Request header fields too large")
HEADERS_TIMEOUT = _error_response(408, "Request header timeout")
BODY_TIMEOUT = _error_response(408, "Request body timeout")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`HttpLimits` (set by
    :func:`bounded_http_protocol`)."""

    limits: HttpLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True  # between a request's first byte (or the connection) and its headers
        self._header_bytes = 0  # raw bytes read since the request began, while its headers are unfinished
        self._parsed_header_bytes = 0  # size of the request line and headers parsed so far
        self._header_deadline: asyncio.TimerHandle | None = None
        self._expects_body = False
        self._rejected = False

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a byte holds a descriptor just like a slow request does.
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # answered and closing: read nothing more
        counting = self._awaiting_headers
        if counting:
            # Counts a whole read even if it also holds body bytes; that only matters when the headers
            # are still unfinished after it, and then the read was all header bytes anyway.
            self._header_bytes += len(data)
            if self._header_deadline is None:
                self._arm_header_deadline()
        super().data_received(data)
        if (
            counting
            and self._awaiting_headers
            and not self._rejected
            and self._header_bytes > self.limits.max_header_bytes
        ):
            self._reject(HEADERS_TOO_LARGE, "header too large")

    # -- httptools parser callbacks (ignored once the connection is rejected) -----------------------

    def on_message_begin(self) -> None:
        if not self._rejected:
            self._parsed_header_bytes = 16  # method, spaces, "HTTP/1.1\r\n" and the final CRLF, about
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._rejected:
            self._parsed_header_bytes += len(url)
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._rejected:
            self._parsed_header_bytes += len(name) + len(value) + 4  # ": " and CRLF
            super().on_header(name, value)
            if self.headers[-1][0] in (b"content-length", b"transfer-encoding"):
                self._expects_body = True

    def on_headers_complete(self) -> None:
        if self._rejected:
            return
        self._awaiting_headers = False
        self._cancel_header_deadline()
        if self._parsed_header_bytes > self.limits.max_header_bytes:
            # Complete, but too large (it came in one read, so the check in data_received missed it).
            self._reject(HEADERS_TOO_LARGE, "header too large")
            return
        previous = self.cycle
        super().on_headers_complete()
        if self._expects_body and self.cycle is not previous:
            self._bound_body_reads(self.cycle)
        self._expects_body = False

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        super().on_message_complete()
        # The next byte starts a new request; its deadline is armed when it arrives (until then the
        # connection is idle and uvicorn's keep-alive timeout applies).
        self._awaiting_headers = True
        self._header_bytes = 0

    def handle_websocket_upgrade(self) -> None:
        if not self._rejected:  # an upgrade request whose headers were too large
            super().handle_websocket_upgrade()

    # -- limits --------------------------------------------------------------------------------------

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.limits.header_timeout_s, self._header_timed_out)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_timed_out(self) -> None:
        self._header_deadline = None
        if self._awaiting_headers and not self.transport.is_closing():
            self._reject(HEADERS_TIMEOUT, "header timeout")

    def _reject(self, response: bytes, reason: str) -> None:
        """Answer ``response`` and close, or, while an earlier pipelined response is still being sent,
        stop reading and close once it is done (a status line now would corrupt that response)."""
        self._rejected = True
        self._cancel_header_deadline()
        if self.transport.is_closing():
            return  # uvicorn already answered (e.g. 400 for a malformed request)
        dropped_requests.note(reason)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            cycle.keep_alive = False
            self.transport.pause_reading()
            return
        self._answer_and_close(response)

    def _answer_and_close(self, response: bytes) -> None:
        """Write ``response``, then close gracefully: closing a socket that still has unread input makes
        the kernel send a reset, which can destroy the response before the client reads it (a client
        still sending its huge header would never see the 431). So, like nginx's lingering close,
        half-close after the response and close ``LINGER_S`` later; reading stops meanwhile, so a client
        still sending only fills kernel buffers (it is blocked, not served) until the reset."""
        self._rejected = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.transport.pause_reading()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def _bound_body_reads(self, cycle: RequestResponseCycle) -> None:
        """Give the app's waits for this request's body one deadline, from the first wait on; the
        request bodies the gateway takes are small (64 KiB at most), so a total deadline is fair and
        also stops a client trickling a byte at a time."""
        receive = cycle.receive
        loop = self.loop
        timeout_s = self.limits.body_timeout_s
        deadline: float | None = None

        async def receive_within_deadline() -> Any:
            nonlocal deadline
            if not cycle.more_body or cycle.body or cycle.disconnected or cycle.response_complete:
                return await receive()  # nothing to wait for
            if deadline is None:
                deadline = loop.time() + timeout_s
            timer = loop.call_at(deadline, self._body_timed_out, cycle)
            try:
                return await receive()
            finally:
                timer.cancel()

        # The ASGI task has been created but not started: it looks ``receive`` up when it runs.
        cycle.receive = receive_within_deadline  # type: ignore[method-assign]

    def _body_timed_out(self, cycle: RequestResponseCycle) -> None:
        if cycle.disconnected or cycle.response_complete or not cycle.more_body:
            return
        dropped_requests.note("body timeout")
        # The app's pending receive now returns http.disconnect and its later sends are dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        if cycle.response_started:
            self._rejected = True
            self.transport.close()
        else:
            self._answer_and_close(BODY_TIMEOUT)


def bounded_http_protocol(limits: HttpLimits) -> type[asyncio.Protocol]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``; uvicorn instantiates it per connection."""
    return type("GatewayHttpProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
