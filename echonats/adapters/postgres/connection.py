"""The connection type the PostgreSQL adapters' statements run on (pooled or not)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import asyncpg

if TYPE_CHECKING:
    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
else:
    Conn = asyncpg.Connection  # asyncpg's classes are not subscriptable at run time
