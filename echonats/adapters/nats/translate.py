"""nats-py's failures as ``Unavailable``, in one context manager.

Stand-in: the realtime slice of issue #12 writes the same function in ``adapters/nats/errors.py``;
at merge this module goes and its callers import that one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from echonats.adapters.nats.errors import NATS_ERRORS
from echonats.model.errors import Unavailable


@contextmanager
def unavailable(what: str) -> Iterator[None]:
    """NATS errors raised in the block come out as ``Unavailable("<what>: <error>")``."""
    try:
        yield
    except NATS_ERRORS as exc:
        raise Unavailable(f"{what}: {exc!r}") from exc
