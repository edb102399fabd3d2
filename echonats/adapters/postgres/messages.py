"""Reads of the messages and reactions tables (history, threads, pins, single messages), the channel
deletion's cleanup and where a messages stream created anew starts. The persist worker's writes are
in ``persist_sink``."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

import asyncpg

from echonats.adapters.postgres.connection import Conn
from echonats.core.ports import ReactionKey, ReactionMark, StoredMessage
from echonats.model import Message, Reaction

# Every query below is a constant: _COLUMNS is spliced in at import, never anything from a request.
_COLUMNS = (
    "m.id, m.tenant_id, m.channel_id, m.sender_id, m.sender_display_name, m.body, m.nonce, m.created_at, "
    "m.thread_id, m.also_to_channel, m.edited_at, m.deleted_at, m.reply_count, m.last_reply_at, "
    "m.pinned_at, m.edit_mark, m.pin_mark"
)


def _page_query(*, thread: bool, before: bool, after: bool, forward: bool) -> str:
    """A history page by keyset on the id, one statement per shape: with ``id < $n OR $n IS NULL``
    in one statement for all, PostgreSQL's generic plan cannot bound the index range by the
    cursor and walks the channel's index from its end, skipping everything newer than the page
    (measured: milliseconds per page deep in a 10M-message channel). $1 is the channel, $2 the
    limit, then the thread, ``before`` and ``after`` as present."""
    conditions = ["m.channel_id = $1"]
    args = 2
    if thread:
        args += 1
        conditions.append(f"m.thread_id = ${args}")
    else:
        conditions.append("(m.thread_id IS NULL OR m.also_to_channel)")
    if before:
        args += 1
        conditions.append(f"m.id < ${args}")
    if after:
        args += 1
        conditions.append(f"m.id > ${args}")
    where = " AND ".join(conditions)
    order = "ASC" if forward else "DESC"
    return f"SELECT {_COLUMNS} FROM messages m WHERE {where} ORDER BY m.id {order} LIMIT $2"  # noqa: S608


# Every shape, built once from the constants above: the listing uses messages_channel_id_idx,
# a thread messages_thread_idx.
_PAGES = {
    (thread, before, after, forward): _page_query(thread=thread, before=before, after=after, forward=forward)
    for thread in (False, True)
    for before in (False, True)
    for after in (False, True)
    for forward in (False, True)
}

_BY_IDS = f"SELECT {_COLUMNS} FROM messages m WHERE m.id = ANY($1::bigint[])"  # noqa: S608
_PINNED = (
    f"SELECT {_COLUMNS} FROM messages m WHERE m.channel_id = $1 AND m.pinned_at IS NOT NULL "  # noqa: S608
    "ORDER BY m.pin_mark DESC"
)
# Each emoji once per message, in emoji order (by code point, as ``core.timeline`` folds them).
_REACTIONS = """
SELECT message_id, emoji, count(*) AS n, bool_or(user_id = $2) AS me
FROM message_reactions WHERE message_id = ANY($1::bigint[]) AND added
GROUP BY message_id, emoji ORDER BY message_id, emoji COLLATE "C"
"""
_MARKS = """
SELECT r.message_id, r.emoji, r.user_id, r.added, r.change_id
FROM message_reactions r
JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS k(message_id, emoji, user_id)
  ON r.message_id = k.message_id AND r.emoji = k.emoji AND r.user_id = k.user_id
"""


def _stored(row: asyncpg.Record, reactions: tuple[Reaction, ...]) -> StoredMessage:
    deleted = row["deleted_at"] is not None
    message = Message(
        id=row["id"],
        tenant_id=row["tenant_id"],
        channel_id=row["channel_id"],
        sender_id=row["sender_id"],
        sender_display_name=row["sender_display_name"] or row["sender_id"],
        body=row["body"],
        nonce=row["nonce"],
        created_at=row["created_at"],
        thread_id=row["thread_id"],
        also_to_channel=row["also_to_channel"],
        edited_at=row["edited_at"],
        deleted=deleted,
        reply_count=row["reply_count"],
        last_reply_at=row["last_reply_at"],
        reactions=() if deleted else reactions,
        pinned=row["pinned_at"] is not None,
    )
    return StoredMessage(message, edit_mark=row["edit_mark"], pin_mark=row["pin_mark"])


class MessageHistory:
    """``MessageRepo``, inside a store transaction or read."""

    def __init__(self, conn: Conn) -> None:
        self._c = conn

    async def page(
        self,
        channel_id: uuid.UUID,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        viewer: str,
        thread_id: int | None = None,
    ) -> list[StoredMessage]:
        forward = after is not None and before is None
        query = _PAGES[(thread_id is not None, before is not None, after is not None, forward)]
        args = [value for value in (thread_id, before, after) if value is not None]
        rows = await self._c.fetch(query, channel_id, limit, *args)
        return await self._with_reactions(rows, viewer)

    async def by_ids(self, ids: Sequence[int], *, viewer: str) -> dict[int, StoredMessage]:
        if not ids:
            return {}
        rows = await self._c.fetch(_BY_IDS, list(ids))
        return {s.message.id: s for s in await self._with_reactions(rows, viewer)}

    async def pinned(self, channel_id: uuid.UUID, *, viewer: str) -> list[StoredMessage]:
        return await self._with_reactions(await self._c.fetch(_PINNED, channel_id), viewer)

    async def reaction_marks(self, keys: Sequence[ReactionKey]) -> dict[ReactionKey, ReactionMark]:
        if not keys:
            return {}
        message_ids, emoji, users = zip(*keys, strict=True)
        rows = await self._c.fetch(_MARKS, list(message_ids), list(emoji), list(users))
        return {
            (r["message_id"], r["emoji"], r["user_id"]): ReactionMark(r["added"], r["change_id"])
            for r in rows
        }

    async def _with_reactions(self, rows: list[asyncpg.Record], viewer: str) -> list[StoredMessage]:
        if not rows:
            return []
        reactions: defaultdict[int, list[Reaction]] = defaultdict(list)
        for r in await self._c.fetch(_REACTIONS, [row["id"] for row in rows], viewer):
            reactions[r["message_id"]].append(Reaction(r["emoji"], r["n"], r["me"]))
        return [_stored(row, tuple(reactions.get(row["id"], ()))) for row in rows]


async def delete_channel_messages(conn: Conn, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> None:
    # No foreign keys (see docs/decisions.md D5): a channel's rows go explicitly.
    await conn.execute("DELETE FROM messages WHERE tenant_id = $1 AND channel_id = $2", tenant_id, channel_id)
    for table in ("message_reactions", "message_mentions"):
        await conn.execute(
            f"DELETE FROM {table} WHERE tenant_id = $1 AND channel_id = $2",  # noqa: S608 (constant names)
            tenant_id,
            channel_id,
        )


async def next_message_id(pool: asyncpg.Pool[asyncpg.Record]) -> int:
    """One above the highest persisted id (of a message or of a change applied to one): where a
    messages stream created anew starts, so no id repeats and no mark outranks a new change."""
    return int(
        await pool.fetchval(
            "SELECT greatest((SELECT max(greatest(id, edit_mark, pin_mark)) FROM messages),"
            " (SELECT max(change_id) FROM message_reactions), 0) + 1"
        )
    )
