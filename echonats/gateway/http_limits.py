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
    body_cycle_class: type[BodyDeadlineCycle]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per request, only attribute updates happen here (no timer per request, no per-header
        # callback): one deadline timer per connection is re-armed only when it fires mid-request.
        self._awaiting_headers = True  # the current request's headers are not complete yet
        self._request_started = False  # ... and it has begun (first byte, or the connection opened)
        self._request_started_at = 0.0
        self._header_bytes = 0  # raw bytes read for the current request while its headers were pending
        self._header_deadline: asyncio.TimerHandle | None = None
        self._rejected = False

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a byte holds a descriptor just like a slow request does.
        self._start_request_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # answered and closing: read nothing more
        counting = self._awaiting_headers
        if counting:
            if not self._request_started:
                self._start_request_clock()
            # Counts a whole read even if it also holds body bytes; that only matters when the headers
            # are still unfinished after it, and then the read was all header bytes anyway.
            self._header_bytes += len(data)
        super().data_received(data)
        if (
            counting
            and self._awaiting_headers
            and not self._rejected
            and self._header_bytes > self.limits.max_header_bytes
        ):
            self._reject(HEADERS_TOO_LARGE, "header too large")

    # -- httptools parser callbacks (ignored once the connection is rejected) -----------------------

    def on_headers_complete(self) -> None:
        if self._rejected:
            return
        self._awaiting_headers = False
        # The raw count vouches for small headers; it says nothing when the headers came in one large
        # read with a body, or began inside a read that ended the previous (pipelined) request.
        raw = self._header_bytes
        if (raw == 0 or raw > self.limits.max_header_bytes) and self._parsed_header_bytes() > (
            self.limits.max_header_bytes
        ):
            self._reject(HEADERS_TOO_LARGE, "header too large")
            return
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:
            self._bound_body_reads(self.cycle)

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        super().on_message_complete()
        # The next byte starts a new request and its clock (until then the connection is idle and
        # uvicorn's keep-alive timeout applies).
        self._awaiting_headers = True
        self._request_started = False
        self._header_bytes = 0

    def handle_websocket_upgrade(self) -> None:
        if not self._rejected:  # an upgrade request whose headers were too large
            super().handle_websocket_upgrade()

    # -- limits --------------------------------------------------------------------------------------

    def _parsed_header_bytes(self) -> int:
        # request line ("GET ", url, " HTTP/1.1\r\n"), each "name: value\r\n", the final CRLF
        return 16 + len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _start_request_clock(self) -> None:
        self._request_started = True
        self._request_started_at = self.loop.time()
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_at(
                self._request_started_at + self.limits.header_timeout_s, self._check_header_deadline
            )

    def _check_header_deadline(self) -> None:
        self._header_deadline = None
        if not (self._awaiting_headers and self._request_started) or self.transport.is_closing():
            return  # between requests, or busy with one: the next request's first byte re-arms
        deadline = self._request_started_at + self.limits.header_timeout_s
        if self.loop.time() < deadline:  # a later request than the one this timer was armed for
            self._header_deadline = self.loop.call_at(deadline, self._check_header_deadline)
        else:
            self._reject(HEADERS_TIMEOUT, "header timeout")

    def _reject(self, response: bytes, reason: str) -> None:
        """Answer ``response`` and close, or, while an earlier pipelined response is still being sent,
        stop reading and close once it is done (a status line now would corrupt that response)."""
        self._rejected = True
        if self.transport.is_closing():
            return  # uvicorn already answered (e.g. 400 for a malformed request)
        dropped_requests.note(reason)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            cycle.keep_alive = False
            self.transport.pause_reading()
            return
        linger_close(self.transport, response)

    def _bound_body_reads(self, cycle: RequestResponseCycle) -> None:
        # uvicorn builds the cycle itself; giving it the subclass's ``receive`` this way (same layout,
        # no closure) keeps the cost per request to an assignment and makes no reference cycle.
        cycle.__class__ = self.body_cycle_class


class BodyDeadlineCycle(RequestResponseCycle):
    """A request whose app, once it waits for the body, gets all of it within ``body_timeout_s``, or
    408 and a closed connection (its pending ``receive`` then returns ``http.disconnect``). The
    request bodies the gateway takes are small (64 KiB at most), so one total deadline is fair, and it
    also stops a client trickling a byte at a time."""

    body_timeout_s: float
    _body_deadline: float | None = None

    async def receive(self) -> Any:
        if not self.more_body or self.body or self.disconnected or self.response_complete:
            return await super().receive()  # nothing to wait for
        loop = asyncio.get_running_loop()
        if self._body_deadline is None:
            self._body_deadline = loop.time() + self.body_timeout_s
        timer = loop.call_at(self._body_deadline, self._body_timed_out)
        try:
            return await super().receive()
        finally:
            timer.cancel()

    def _body_timed_out(self) -> None:
        if self.disconnected or self.response_complete or not self.more_body:
            return
        dropped_requests.note("body timeout")
        # The app's pending receive now returns http.disconnect and its later sends are dropped.
        self.disconnected = True
        self.message_event.set()
        if self.response_started or not self.transport.can_write_eof():
            self.transport.close()
        else:
            linger_close(self.transport, BODY_TIMEOUT)


def linger_close(transport: asyncio.Transport, response: bytes) -> None:
    """Write ``response``, then close gracefully: closing a socket that still has unread input makes
    the kernel send a reset, which can destroy the response before the client reads it (a client
    still sending its huge header would never see the 431). So, like nginx's lingering close,
    half-close after the response and close ``LINGER_S`` later; reading stops meanwhile, so a client
    still sending only fills kernel buffers (it is blocked, not served) until the reset."""
    transport.write(response)
    if transport.can_write_eof():
        transport.write_eof()
        transport.pause_reading()
        asyncio.get_running_loop().call_later(LINGER_S, transport.close)
    else:
        transport.close()


def bounded_http_protocol(limits: HttpLimits) -> type[asyncio.Protocol]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``; uvicorn instantiates it per connection."""
    cycle = type("GatewayRequestCycle", (BodyDeadlineCycle,), {"body_timeout_s": limits.body_timeout_s})
    return type(
        "GatewayHttpProtocol", (BoundedHttpToolsProtocol,), {"limits": limits, "body_cycle_class": cycle}
    )
