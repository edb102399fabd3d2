"""The one place domain errors become socket answers, for the JSON WebSocket and STOMP alike:
close codes, JSON error frames, STOMP ERROR frames. Matched along the error's MRO like the HTTP map
(``gateway.errors``), so a subclass of an error gets its parent's close code."""

from __future__ import annotations

from echonats import metrics
from echonats.gateway import protocol as p
from echonats.gateway import stomp_frames as sf
from echonats.model import errors

CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_NOT_FOUND = 4004  # the workspace asked for does not exist, or the user is not in it
CLOSE_SLOW_CONSUMER = 4008
CLOSE_TOO_MANY_CONNECTIONS = 4029

MAX_CLOSE_REASON_CHARS = 120  # a close frame's reason must fit in 123 bytes

# Errors that end a socket before (or instead of) serving it; anything else: try again later.
CLOSE_CODES: dict[type[errors.EchonatsError], int] = {
    errors.Unauthenticated: CLOSE_UNAUTHORIZED,
    errors.Forbidden: CLOSE_FORBIDDEN,
    errors.NotFound: CLOSE_NOT_FOUND,
    errors.LimitExceeded: CLOSE_TOO_MANY_CONNECTIONS,
}


def close_for(exc: errors.EchonatsError) -> tuple[int, str]:
    """The close code and reason for a refused handshake (or a refused token on a live socket)."""
    for cls in type(exc).__mro__:
        if cls in CLOSE_CODES:
            return CLOSE_CODES[cls], exc.message[:MAX_CLOSE_REASON_CHARS]
    return CLOSE_TRY_AGAIN_LATER, "try again later"


def close_code(exc: errors.EchonatsError) -> int:
    return close_for(exc)[0]


def retry_after_ms(exc: errors.EchonatsError, transport: str) -> int | None:
    """How long a refused client should wait, if it was rate limited: the one place a socket's
    refusal is counted in ``rate_limited`` (the HTTP map counts its own)."""
    if not isinstance(exc, errors.RateLimited):
        return None
    metrics.rate_limited.labels(transport).inc()
    return exc.retry_after_ms


def error_frame(exc: errors.EchonatsError, ref: str | None = None) -> str:
    """A JSON WebSocket error frame; the socket stays open."""
    wait_ms = retry_after_ms(exc, "websocket")
    return p.encode(p.ErrorFrame(code=exc.code, message=exc.message, ref=ref, retry_after_ms=wait_ms))


def bad_frame(message: str) -> str:
    """A JSON error frame for input that is not a valid client frame."""
    return p.encode(p.ErrorFrame(code="bad_request", message=message))


def internal_error_frame(ref: str | None) -> str:
    return p.encode(p.ErrorFrame(code="internal_error", message="internal error", ref=ref))


def stomp_error_frame(exc: errors.EchonatsError, receipt: str | None = None) -> str:
    """A STOMP ERROR frame for a refused SEND (``retry-after-ms`` when rate limited)."""
    wait_ms = retry_after_ms(exc, "stomp")
    extra = {} if wait_ms is None else {"retry-after-ms": str(wait_ms)}
    return sf.error_frame(exc.message, code=exc.code, receipt=receipt, **extra)
