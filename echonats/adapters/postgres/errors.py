"""asyncpg's exceptions as the domain's errors: the one translation the PostgreSQL adapters share."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import asyncpg

from echonats.model.errors import Conflict, EchonatsError, StorageRejected, Unavailable, ValidationFailed

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now" (down, restarting, connection cut mid-query),
# as opposed to a bug or a constraint: callers get Unavailable (503 / a retryable error frame).
DB_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,  # admin_shutdown, crash_shutdown, cannot_connect_now
)

# Errors that mean "PostgreSQL cannot hold this input value": NUL or other characters text cannot
# hold, a number out of range. Plus asyncpg's bare DataError, which it raises itself, before sending
# anything, for a query argument it cannot encode (an integer outside int64, a lone surrogate).
_INPUT_REFUSED = (
    asyncpg.CharacterNotInRepertoireError,  # 22021: e.g. NUL in text
    asyncpg.UntranslatableCharacterError,  # 22P05
    asyncpg.NumericValueOutOfRangeError,  # 22003
)


def _input_refused(exc: BaseException) -> bool:
    return type(exc) is asyncpg.DataError or isinstance(exc, _INPUT_REFUSED)


def domain_error(exc: BaseException) -> EchonatsError | None:
    """The domain error for a driver exception; None for anything else (a bug: re-raise it as is)."""
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return Conflict(f"conflicting change: {exc.__class__.__name__}")
    if _input_refused(exc):
        # The use cases validate their inputs, so this is a backstop: a client error rather than a
        # 500, logged so the missing rule gets added. Other data errors (division by zero, a bad cast
        # in our SQL) are bugs and stay 500s. The value itself is not logged.
        log.warning(
            "PostgreSQL refused an input value (%s): a validation rule is missing", type(exc).__name__
        )
        return ValidationFailed("a value in the request is out of range or contains characters not allowed")
    if isinstance(exc, DB_UNAVAILABLE):
        return Unavailable(f"PostgreSQL: {exc}")
    return None


def pipeline_error(exc: BaseException) -> EchonatsError | None:
    """The worker pipelines' view (persist, outbox): a row the schema refuses is the record's fault
    (``StorageRejected``: set it aside); anything else from the server or the connection is an outage
    to wait out, however long, never the record's fault (``Unavailable``). None for a bug."""
    if isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)):
        return StorageRejected(str(exc))  # the server's reason, as the dead letter's detail
    if isinstance(exc, (*DB_UNAVAILABLE, asyncpg.PostgresError)):
        return Unavailable(f"PostgreSQL: {exc!r}")
    return None


@contextmanager
def translated(
    classify: Callable[[BaseException], EchonatsError | None] = domain_error,
) -> Iterator[None]:
    """Driver exceptions raised in the block come out as the domain error ``classify`` names for them
    (request paths: ``domain_error``; worker pipelines: ``pipeline_error``); anything else as it is."""
    try:
        yield
    except Exception as exc:
        translation = classify(exc)
        if translation is None:
            raise  # a domain error raised inside the block, or a bug: as it is
        raise translation from exc
