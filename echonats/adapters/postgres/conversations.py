"""DMs, read state, unread and mention counts (``ConversationRepo``), inside a store transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from echonats.adapters.postgres.connection import Conn
from echonats.model import Channel, ChannelKind, Unread

_CHANNEL = "id, tenant_id, name, topic, is_private, created_by, created_at, kind"
# ON CONFLICT on the partial unique index: a concurrent opener's row, once committed, wins; this
# statement then returns nothing and the existing DM is read instead.
_OPEN = (
    "INSERT INTO channels (id, tenant_id, name, topic, is_private, created_by, created_at, kind, dm_key) "
    "VALUES ($1, $2, 'dm', '', true, $3, $4, 'dm', $5) "
    "ON CONFLICT (tenant_id, dm_key) WHERE dm_key IS NOT NULL DO NOTHING RETURNING id"
)
_EXISTING = f"SELECT {_CHANNEL} FROM channels WHERE tenant_id = $1 AND dm_key = $2"  # noqa: S608 (constant)
_ADD_MEMBERS = (
    "INSERT INTO channel_members (channel_id, user_id, tenant_id, role) "
    "SELECT $1, u, $2, 'member' FROM unnest($3::text[]) AS u ON CONFLICT DO NOTHING"
)
_DMS = (
    "SELECT c.id, c.tenant_id, c.name, c.topic, c.is_private, c.created_by, c.created_at, c.kind, "
    "array_agg(all_m.user_id ORDER BY all_m.user_id) AS member_ids "
    "FROM channel_members me JOIN channels c ON c.id = me.channel_id AND c.kind = 'dm' "
    "JOIN channel_members all_m ON all_m.channel_id = c.id "
    "WHERE me.tenant_id = $1 AND me.user_id = $2 GROUP BY c.id ORDER BY c.created_at DESC, c.id"
)
_READ_FORWARD = (
    "UPDATE channel_members SET last_read_id = greatest(last_read_id, $3) "
    "WHERE channel_id = $1 AND user_id = $2 RETURNING last_read_id"
)
_READ_SET = """
UPDATE channel_members SET last_read_id = $3 WHERE channel_id = $1 AND user_id = $2 RETURNING last_read_id
"""
# Per membership: messages after the last read one by others (index-only range scans of
# messages_unread_idx, stopped at the cap) and mentions of the member after it.
_UNREADS = """
SELECT cm.channel_id, c.kind, cm.last_read_id,
  (SELECT count(*) FROM (
     SELECT 1 FROM messages m
     WHERE m.channel_id = cm.channel_id AND m.id > cm.last_read_id AND m.deleted_at IS NULL
       AND (m.thread_id IS NULL OR m.also_to_channel) AND m.sender_id <> $2
     LIMIT $3) u) AS unread,
  (SELECT count(*) FROM (
     SELECT 1 FROM message_mentions mm
     WHERE mm.user_id = $2 AND mm.channel_id = cm.channel_id AND mm.message_id > cm.last_read_id
     LIMIT $3) x) AS mentions
FROM channel_members cm JOIN channels c ON c.id = cm.channel_id
WHERE cm.tenant_id = $1 AND cm.user_id = $2
ORDER BY cm.channel_id
"""
# Only of channels the user is still in: a member removed from a private channel stops seeing them.
_MENTIONS = (
    "SELECT mm.message_id FROM message_mentions mm WHERE mm.tenant_id = $1 AND mm.user_id = $2 "
    "AND ($3::bigint IS NULL OR mm.message_id < $3) AND EXISTS (SELECT 1 FROM channel_members cm "
    "WHERE cm.channel_id = mm.channel_id AND cm.user_id = mm.user_id) ORDER BY mm.message_id DESC LIMIT $4"
)


def _channel(row: asyncpg.Record) -> Channel:
    return Channel(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        topic=row["topic"],
        is_private=row["is_private"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        kind=ChannelKind(row["kind"]),
    )


class Conversations:
    def __init__(self, conn: Conn) -> None:
        self._c = conn

    async def open_dm(self, channel: Channel, key: str, member_ids: Sequence[str]) -> tuple[Channel, bool]:
        created = await self._c.fetchval(
            _OPEN, channel.id, channel.tenant_id, channel.created_by, channel.created_at, key
        )
        if created is None:
            row = await self._c.fetchrow(_EXISTING, channel.tenant_id, key)
            assert row is not None, "a DM key that conflicts exists"
            return _channel(row), False
        await self._c.execute(_ADD_MEMBERS, channel.id, channel.tenant_id, list(member_ids))
        return channel, True

    async def dms_of(self, tenant_id: uuid.UUID, user_id: str) -> list[tuple[Channel, tuple[str, ...]]]:
        rows = await self._c.fetch(_DMS, tenant_id, user_id)
        return [(_channel(r), tuple(r["member_ids"])) for r in rows]

    async def mark_read(
        self, channel_id: uuid.UUID, user_id: str, message_id: int, *, forward_only: bool
    ) -> int | None:
        value = await self._c.fetchval(
            _READ_FORWARD if forward_only else _READ_SET, channel_id, user_id, message_id
        )
        return None if value is None else int(value)

    async def unreads(self, tenant_id: uuid.UUID, user_id: str, cap: int) -> list[Unread]:
        rows = await self._c.fetch(_UNREADS, tenant_id, user_id, cap)
        return [
            Unread(r["channel_id"], ChannelKind(r["kind"]), r["last_read_id"], r["unread"], r["mentions"])
            for r in rows
        ]

    async def mentions_of(
        self, tenant_id: uuid.UUID, user_id: str, *, before: int | None, limit: int
    ) -> list[int]:
        rows = await self._c.fetch(_MENTIONS, tenant_id, user_id, before, limit)
        return [int(r["message_id"]) for r in rows]

    async def member_count(self, channel_id: uuid.UUID) -> int:
        query = "SELECT count(*) FROM channel_members WHERE channel_id = $1"
        return int(await self._c.fetchval(query, channel_id))
