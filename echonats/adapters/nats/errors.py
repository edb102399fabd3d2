"""The nats-py exceptions that mean "NATS cannot serve this now"; translated to ``Unavailable`` here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import nats.errors

from echonats.model.errors import Unavailable

NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """NATS errors raised in the block come out as ``Unavailable("<what>: <error>")``."""
    try:
        yield
    except NATS_ERRORS as exc:
        raise Unavailable(f"{what}: {exc!r}") from exc
