"""The error hierarchy shared by core, adapters and edges.

Each class carries a stable machine-readable ``code``. Transports map these to HTTP statuses and
WebSocket error frames/close codes in exactly one place each (see ``echonats.gateway.errors``).
Adapters translate driver exceptions into these at the boundary (``raise Unavailable(...) from exc``).
"""

from __future__ import annotations

from collections.abc import Mapping


class EchonatsError(Exception):
    code: str = "internal_error"

    def __init__(self, message: str, *, details: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, object] = dict(details or {})


class ConfigError(EchonatsError):
    """Invalid configuration; the message names the offending variable first."""

    code = "config_error"


class ValidationFailed(EchonatsError):
    code = "validation_failed"


class PayloadTooLarge(EchonatsError):
    code = "payload_too_large"


class Unauthenticated(EchonatsError):
    code = "unauthenticated"


class Forbidden(EchonatsError):
    code = "forbidden"


class NotFound(EchonatsError):
    code = "not_found"


class Conflict(EchonatsError):
    code = "conflict"


class LimitExceeded(EchonatsError):
    """A configured quota (e.g. a tenant's maxChannels) would be exceeded."""

    code = "limit_exceeded"


class RateLimited(EchonatsError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_ms: int, limit: int = 0, remaining: int = 0) -> None:
        super().__init__(message, details={"retryAfterMs": retry_after_ms})
        self.retry_after_ms = retry_after_ms
        self.limit = limit
        self.remaining = remaining


class Unavailable(EchonatsError):
    """A dependency (NATS, PostgreSQL, Redis) cannot serve the request right now."""

    code = "unavailable"


class StorageRejected(EchonatsError):
    """The store refused a record as it is (a value or a constraint its schema does not allow): unlike
    ``Unavailable``, retrying the same record cannot help, so a pipeline sets it aside (dead letter)."""

    code = "storage_rejected"


class TargetMissing(StorageRejected):
    """A change to a message the store does not have (yet): another worker may still be writing
    it, so the change is retried for a while before it is set aside."""

    code = "target_missing"


class MessageGone(Conflict):
    """The message was deleted: it can no longer be edited, reacted to, pinned or replied to."""

    code = "message_deleted"
