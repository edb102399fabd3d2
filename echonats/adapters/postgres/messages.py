"""The messages table: what the persist worker writes and history reads."""

from __future__ import annotations

import asyncpg


async def next_message_id(pool: asyncpg.Pool[asyncpg.Record]) -> int:
    """One above the highest persisted id: where a messages stream created anew starts."""
    return int(await pool.fetchval("SELECT coalesce(max(id), 0) + 1 FROM messages"))
