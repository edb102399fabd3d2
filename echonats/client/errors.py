"""What the client raises."""

from __future__ import annotations

from echonats.gateway.protocol import ErrorFrame

# Close codes after which connecting again cannot help (see the README's close codes): 4001 only
# when the token cannot change (a token provider gets one more try with a fresh token).
CLOSE_UNAUTHORIZED = 4001
FATAL_CLOSE_CODES = frozenset(
    {
        1002,  # protocol error
        1003,  # unsupported data
        1007,  # invalid UTF-8
        1008,  # policy violation
        1009,  # a frame larger than the server's limit: resending it would only repeat this
        1010,  # a mandatory extension
        4003,  # forbidden: not (any more) allowed in the workspace
        4004,  # ?tenant= names no workspace of the user
    }
)


class ClientError(Exception):
    """Base of everything ``echonats.client`` raises."""


class ServerError(ClientError):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, frame: ErrorFrame) -> None:
        super().__init__(f"{frame.code}: {frame.message}")
        self.frame = frame
        self.code = frame.code
        self.message = frame.message
        self.retry_after_ms = frame.retry_after_ms


class RateLimited(ServerError):
    """Still ``rate_limited`` after the configured number of waits and resends."""


class ConnectionFailed(ClientError):
    """The connection ended and the client will not connect again: a fatal close code (``code``
    is set) or the reconnect attempts were used up (``code`` None)."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ClientClosed(ClientError):
    """The client was closed while the request waited."""
