"""The messages table, every statement on it: what the persist worker writes, history reads, the
channel deletion's cleanup and where a messages stream created anew starts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from echonats.adapters.postgres.connection import Conn
from echonats.adapters.postgres.errors import pipeline_error, translated
from echonats.model import Message

_INSERT = """
INSERT INTO messages (id, tenant_id, channel_id, sender_id, sender_display_name, body, nonce, created_at)
SELECT r.id, r.tenant_id, r.channel_id, r.sender_id, r.sender_display_name, r.body, r.nonce, r.created_at
FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[])
     AS r(id, tenant_id, channel_id, sender_id, sender_display_name, body, nonce, created_at)
JOIN channels c ON c.id = r.channel_id AND c.tenant_id = r.tenant_id  -- drop messages of deleted channels
ON CONFLICT (id) DO NOTHING
"""

_PAGE = (
    "SELECT m.* FROM messages m "
    "WHERE m.channel_id = $1 AND ($2::bigint IS NULL OR m.id < $2) AND ($3::bigint IS NULL OR m.id > $3) "
)
_PAGE_FORWARD = _PAGE + "ORDER BY m.id ASC LIMIT $4"
_PAGE_BACKWARD = _PAGE + "ORDER BY m.id DESC LIMIT $4"


def _message(row: asyncpg.Record) -> Message:
    return Message(
        row["id"],
        row["tenant_id"],
        row["channel_id"],
        row["sender_id"],
        row["sender_display_name"] or row["sender_id"],
        row["body"],
        row["nonce"],
        row["created_at"],
    )


def _row(m: Message) -> tuple[int, uuid.UUID, uuid.UUID, str, str, str, str | None, datetime]:
    return (
        m.id,
        m.tenant_id,
        m.channel_id,
        m.sender_id,
        m.sender_display_name,
        m.body,
        m.nonce,
        m.created_at,
    )


class PostgresPersistSink:
    """The persist worker's writes (``PersistSink``): a batch in one idempotent statement."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    async def write(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        with translated(pipeline_error):
            # One array per column (the unnest parameters): one round trip whatever the batch size.
            await self._pool.execute(_INSERT, *zip(*(_row(m) for m in messages), strict=True))


class MessageHistory:
    """History pages, inside a store transaction or read."""

    def __init__(self, conn: Conn) -> None:
        self._c = conn

    async def page(
        self, channel_id: uuid.UUID, *, before: int | None, after: int | None, limit: int
    ) -> list[Message]:
        forward = after is not None and before is None
        rows = await self._c.fetch(
            _PAGE_FORWARD if forward else _PAGE_BACKWARD,
            channel_id,
            before,
            after,
            limit,
        )
        return [_message(r) for r in rows]


async def delete_channel_messages(conn: Conn, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> None:
    # messages has no foreign key (see docs/decisions.md D5): a channel's rows go explicitly.
    await conn.execute("DELETE FROM messages WHERE tenant_id = $1 AND channel_id = $2", tenant_id, channel_id)


async def next_message_id(pool: asyncpg.Pool[asyncpg.Record]) -> int:
    """One above the highest persisted id: where a messages stream created anew starts."""
    return int(await pool.fetchval("SELECT coalesce(max(id), 0) + 1 FROM messages"))
