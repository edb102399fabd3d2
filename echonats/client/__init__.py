"""A small async Python client for the JSON WebSocket protocol (``/ws``).

::

    async with echonats.client.connect("http://127.0.0.1:8000", token=token) as chat:
        await chat.subscribe(channel_id)
        ack = await chat.send(channel_id, "hello")
        async for event in chat.events():
            match event:
                case MessageFrame(): ...
                case ResyncRequired(): ...  # refetch the channel's history over REST

Frames are the server's own msgspec Structs (``gateway.protocol``, ``gateway.feed_frames``),
decoded with one decoder over their union; a frame this client does not know (a newer server's)
comes as an ``UnknownFrame`` instead of an error.

Why it does what it does:

- **Resume.** A connection can end at any time (a gateway restarted, a network change, 4008 for a
  client that read too slowly). The client connects again with exponential backoff and full jitter,
  and subscribes every channel again with ``since`` = the last id it delivered to the application:
  the server replays exactly what came after, so nothing is lost. The live feed (frames with
  ``feedId``) is caught up the same way with a ``feed`` frame.
- **Dedupe.** Every channel frame has a position (a message's id, a change's own ``id``); a frame at
  or before the last position delivered is dropped, so a replay that overlaps what arrived never
  shows the application anything twice.
- **Nonces.** ``send`` makes one nonce per call and resends with it after a reconnect until it is
  answered: the server acks a resend with the original message, so a send whose ack was lost is
  stored once. ``rate_limited`` is waited out (``retryAfterMs``) and resent, a bounded number of times.
- **What cannot be resumed is said.** ``resync_required`` from the server comes as an event (refetch
  history); so does a ``ResyncRequired`` the client makes itself after a reconnect for a channel it
  has no position of yet (subscribed live, nothing arrived), and a ``FeedResyncRequired`` when no
  feed frame (nor ``feed_since``) gave it a feed position.
- **Fatal closes raise.** 4003, 4004, protocol errors, and 4001 unless ``token`` is a callable that
  can give a fresh token (then one reconnect is tried): ``ConnectionFailed`` from ``events()`` and
  every waiting request. Other ends (1006, 1012, 1013, 4008, 4029, HTTP 429 ...) reconnect.
"""

from __future__ import annotations

import uuid

from echonats.client.client import Client, TokenSource
from echonats.client.errors import ClientClosed, ClientError, ConnectionFailed, RateLimited, ServerError
from echonats.client.frames import AnyServerFrame, Event, UnknownFrame
from echonats.client.transport import Backoff, Closed, Connector, Refused, Transport, full_jitter


def connect(
    url: str,
    token: TokenSource,
    *,
    tenant: uuid.UUID | str | None = None,
    feed_since: int | None = None,
    backoff: Backoff | None = None,
    reconnect_attempts: int | None = None,
    request_timeout: float = 30.0,
    rate_limit_retries: int = 5,
    max_queue: int = 1000,
    open_timeout: float = 10.0,
    connector: Connector | None = None,
) -> Client:
    """A client for ``url`` (``http(s)://host:port`` or ``ws(s)://host:port[/ws]``); use it as
    ``async with`` (or ``await client.open()`` ... ``await client.close()``).

    ``token``: a JWT, or a (sync or async) callable giving one at every (re)connect. ``tenant``: the
    workspace, for a token without a tenant claim. ``feed_since``: the last ``feedId`` the
    application holds. ``backoff(n)``: seconds before reconnect attempt n (default: full jitter,
    0.5 s doubling up to 30 s); ``reconnect_attempts``: per outage (None: no limit).
    ``request_timeout`` bounds each request with its resends; ``max_queue`` the unread events.
    """
    return Client(
        url,
        token,
        tenant=tenant,
        feed_since=feed_since,
        backoff=backoff,
        reconnect_attempts=reconnect_attempts,
        request_timeout=request_timeout,
        rate_limit_retries=rate_limit_retries,
        max_queue=max_queue,
        open_timeout=open_timeout,
        connector=connector,
    )


__all__ = [
    "AnyServerFrame",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "Closed",
    "ConnectionFailed",
    "Connector",
    "Event",
    "RateLimited",
    "Refused",
    "ServerError",
    "TokenSource",
    "Transport",
    "UnknownFrame",
    "connect",
    "full_jitter",
]
