"""The redis-py exceptions that mean "Redis cannot serve this now", translated to ``Unavailable``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import RedisError

from echonats.model.errors import Unavailable

REDIS_ERRORS = (RedisError, OSError, TimeoutError)


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Inside, a Redis failure leaves as ``Unavailable("Redis: <what>: ...")``."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise Unavailable(f"Redis: {what}: {exc!r}") from exc
