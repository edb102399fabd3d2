"""One WebSocket connection, behind a small protocol (tests inject fakes), and the retry delays.

The real transport uses ``websockets`` (asyncio API, no per-message compression: frames are small
JSON, and compression costs both ends memory per socket). It is imported on first connect, so
``import echonats.client`` needs nothing beyond msgspec.
"""

from __future__ import annotations

import random
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import ConnectionClosed


class Closed(Exception):
    """The connection ended: the close code received (1006 when there was none) and its reason."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class Refused(Exception):
    """The connection could not be opened (refused, unreachable, an HTTP answer to the upgrade such
    as 429); ``retry_after_s`` when the server said how long to wait. ``fatal``: trying again
    cannot help (an HTTP 4xx other than 429: a wrong URL, say)."""

    def __init__(self, message: str, retry_after_s: float | None = None, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.fatal = fatal


class Transport(Protocol):
    async def send(self, text: str) -> None:
        """Send one text frame (raises ``Closed`` once the connection is gone)."""

    async def recv(self) -> str | bytes:
        """The next frame; raises ``Closed`` at the end of the connection."""

    async def close(self) -> None:
        """Close the connection (idempotent)."""


Connector = Callable[[str, Mapping[str, str]], Awaitable[Transport]]
"""Opens a connection to a ws(s):// URL with these upgrade headers, or raises ``Refused``."""

Backoff = Callable[[int], float]
"""Seconds to wait before reconnect attempt ``n`` (0-based)."""


def full_jitter(base_s: float = 0.5, cap_s: float = 30.0) -> Backoff:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**n)]."""

    def delay(attempt: int) -> float:
        return random.uniform(0.0, min(cap_s, base_s * 2.0 ** min(attempt, 32)))

    return delay


def socket_url(url: str, tenant: str | None = None) -> str:
    """``http(s)://host:port`` or ``ws(s)://host:port[/ws]`` to the /ws endpoint's URL."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not an http(s):// or ws(s):// URL: {url!r}")
    path = parts.path if parts.path not in ("", "/") else "/ws"
    query = urllib.parse.parse_qsl(parts.query)
    if tenant is not None:
        query.append(("tenant", tenant))
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, urllib.parse.urlencode(query), ""))


class _WebSocket:
    """A ``websockets`` client connection as a ``Transport``."""

    def __init__(self, connection: ClientConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        self._ws = connection
        self._ended = ConnectionClosed

    @staticmethod
    def _closed(exc: ConnectionClosed) -> Closed:
        received = exc.rcvd
        return Closed(received.code, received.reason) if received is not None else Closed(1006)

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except self._ended as exc:
            raise self._closed(exc) from None

    async def recv(self) -> str | bytes:
        try:
            return await self._ws.recv()
        except self._ended as exc:
            raise self._closed(exc) from None

    async def close(self) -> None:
        await self._ws.close()


async def websocket_connector(
    url: str, headers: Mapping[str, str], *, open_timeout: float = 10.0
) -> Transport:
    """The default ``Connector``: websockets' asyncio client, compression off."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus

    try:
        connection = await connect(
            url, additional_headers=dict(headers), compression=None, open_timeout=open_timeout
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        retry_after = exc.response.headers.get("Retry-After")
        wait_s = float(retry_after) if retry_after and retry_after.isdigit() else None
        fatal = 400 <= status < 500 and status != 429
        raise Refused(f"the upgrade was answered with HTTP {status}", wait_s, fatal=fatal) from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise Refused(f"could not connect to {url.split('?')[0]}: {exc!r}") from exc
    return _WebSocket(connection)
