"""The persist worker's writes (``PersistSink``): a batch of log entries in one transaction.

Runs of messages are inserted in one statement (one array per column); each change is one
statement guarded by its mark, so replaying a batch, or applying changes of one message out of
order (two workers), leaves the row as the log's order says. A change whose message is not stored
raises ``TargetMissing`` (a worker may still be writing it) unless its channel is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import assert_never

import asyncpg

from echonats.adapters.postgres.connection import Conn
from echonats.adapters.postgres.errors import pipeline_error, translated
from echonats.adapters.postgres.outbox import OutboxWriter
from echonats.model import (
    Change,
    DomainEvent,
    Entry,
    Message,
    MessageDeleted,
    MessageEdited,
    PinChanged,
    ReactionChanged,
)
from echonats.model import events as ev
from echonats.model.errors import TargetMissing

MENTION_IDS = uuid.UUID("6f1c2a52-7d0e-4a53-9a1e-0c5d6f3b8e21")  # namespace of mention event ids

_INSERT = """
INSERT INTO messages (id, tenant_id, channel_id, sender_id, sender_display_name, body, nonce, created_at,
                      thread_id, also_to_channel)
SELECT r.id, r.tenant_id, r.channel_id, r.sender_id, r.sender_display_name, r.body, r.nonce, r.created_at,
       r.thread_id, r.also_to_channel
FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[], $9::bigint[], $10::boolean[])
     AS r(id, tenant_id, channel_id, sender_id, sender_display_name, body, nonce, created_at, thread_id,
          also_to_channel)
JOIN channels c ON c.id = r.channel_id AND c.tenant_id = r.tenant_id  -- drop messages of deleted channels
ON CONFLICT (id) DO NOTHING
RETURNING id, thread_id, created_at
"""
# The members a message notifies: those named that are in the channel, or all of them but the
# sender for @here/@channel. Returns who was notified anew (a replayed message notifies nobody).
_MENTION = """
INSERT INTO message_mentions (user_id, channel_id, message_id, tenant_id, sender_id)
SELECT cm.user_id, cm.channel_id, $1, cm.tenant_id, $3
FROM channel_members cm
WHERE cm.channel_id = $2 AND cm.user_id <> $3 AND ($5 OR cm.user_id = ANY($4::text[]))
ON CONFLICT DO NOTHING
RETURNING user_id
"""
_UNMENTION = "DELETE FROM message_mentions WHERE message_id = $1"
# Replies newly inserted above: their roots count them (a statement of its own, so a root inserted
# by the same batch is seen). Returns the roots found, to tell a missing one.
_COUNT_REPLIES = """
UPDATE messages m SET reply_count = m.reply_count + r.n,
                      last_reply_at = greatest(m.last_reply_at, r.latest)
FROM (SELECT root, count(*) AS n, max(at) AS latest
      FROM unnest($1::bigint[], $2::timestamptz[]) AS x(root, at) GROUP BY root) r
WHERE m.id = r.root
RETURNING m.id
"""
_EDIT = """
UPDATE messages SET body = $2, edited_at = $3, edit_mark = $4
WHERE id = $1 AND deleted_at IS NULL AND edit_mark < $4
"""
_DELETE = """
UPDATE messages SET body = '', edited_at = NULL, deleted_at = $2, deleted_by = $3, pinned_at = NULL,
                    pinned_by = NULL
WHERE id = $1 AND deleted_at IS NULL
RETURNING thread_id
"""
_UNCOUNT_REPLY = "UPDATE messages SET reply_count = greatest(reply_count - 1, 0) WHERE id = $1"
_DROP_REACTIONS = "DELETE FROM message_reactions WHERE message_id = $1"
_REACT = """
INSERT INTO message_reactions (message_id, emoji, user_id, tenant_id, channel_id, added, change_id)
SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM messages WHERE id = $1 AND deleted_at IS NULL)
ON CONFLICT (message_id, emoji, user_id) DO UPDATE SET added = excluded.added, change_id = excluded.change_id
WHERE message_reactions.change_id < excluded.change_id
"""
_PIN = """
UPDATE messages SET pinned_at = CASE WHEN $2 THEN $3::timestamptz END, pinned_by = CASE WHEN $2 THEN $4 END,
                    pin_mark = $5
WHERE id = $1 AND deleted_at IS NULL AND pin_mark < $5
"""
_EXISTS = "SELECT EXISTS (SELECT 1 FROM messages WHERE id = $1)"
_CHANNEL_EXISTS = "SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1 AND tenant_id = $2)"

_Row = tuple[int, uuid.UUID, uuid.UUID, str, str, str, str | None, datetime, int | None, bool]


def _row(m: Message) -> _Row:
    return (
        m.id,
        m.tenant_id,
        m.channel_id,
        m.sender_id,
        m.sender_display_name,
        m.body,
        m.nonce,
        m.created_at,
        m.thread_id,
        m.also_to_channel,
    )


class PostgresPersistSink:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    async def write(self, entries: Sequence[Entry]) -> Sequence[DomainEvent]:
        if not entries:
            return []
        events: list[DomainEvent] = []
        with translated(pipeline_error):
            async with self._pool.acquire() as conn, conn.transaction():
                run: list[Message] = []
                for entry in entries:
                    if isinstance(entry, Message):
                        run.append(entry)
                        continue
                    await _insert(conn, run, events)
                    run = []
                    await _apply(conn, entry, events)
                await _insert(conn, run, events)
                outbox = OutboxWriter(conn)
                for event in events:
                    await outbox.add(event)
        return events


async def _insert(conn: Conn, messages: list[Message], events: list[DomainEvent]) -> None:
    if not messages:
        return
    inserted = await conn.fetch(_INSERT, *zip(*(_row(m) for m in messages), strict=True))
    stored = {r["id"] for r in inserted}
    for m in messages:
        if m.id in stored and (m.mentions or m.mentions_channel):
            events += await _mention(conn, m, m.id, m.sender_id, m.mentions, m.mentions_channel)
    replies = [(r["thread_id"], r["created_at"]) for r in inserted if r["thread_id"] is not None]
    if not replies:
        return
    roots, times = zip(*replies, strict=True)
    found = {r["id"] for r in await conn.fetch(_COUNT_REPLIES, list(roots), list(times))}
    if missing := set(roots) - found:
        raise TargetMissing(f"thread root(s) not stored yet: {sorted(missing)[:5]}")


async def _apply(conn: Conn, change: Change, events: list[DomainEvent]) -> None:
    match change:
        case MessageEdited():
            status = await conn.execute(_EDIT, change.message_id, change.body, change.at, change.id)
            if not status.endswith(" 0"):  # the edit applied: its mentions replace the old ones
                await conn.execute(_UNMENTION, change.message_id)
                if change.mentions or change.mentions_channel:
                    events += await _mention(
                        conn,
                        change,
                        change.message_id,
                        change.actor_id,
                        change.mentions,
                        change.mentions_channel,
                    )
        case MessageDeleted():
            thread = await conn.fetch(_DELETE, change.message_id, change.at, change.actor_id)
            if thread:
                await conn.execute(_DROP_REACTIONS, change.message_id)
                await conn.execute(_UNMENTION, change.message_id)
                if thread[0]["thread_id"] is not None:
                    await conn.execute(_UNCOUNT_REPLY, thread[0]["thread_id"])
            status = f"UPDATE {len(thread)}"
        case ReactionChanged():
            status = await conn.execute(
                _REACT,
                change.message_id,
                change.emoji,
                change.actor_id,
                change.tenant_id,
                change.channel_id,
                change.added,
                change.id,
            )
        case PinChanged():
            status = await conn.execute(
                _PIN, change.message_id, change.pinned, change.at, change.actor_id, change.id
            )
        case _:
            assert_never(change)
    # Nothing changed and the message is not there: written by a worker still busy with an earlier
    # batch, or never (its channel was deleted: drop the change).
    if (
        status.endswith(" 0")
        and not await conn.fetchval(_EXISTS, change.message_id)
        and await conn.fetchval(_CHANNEL_EXISTS, change.channel_id, change.tenant_id)
    ):
        raise TargetMissing(f"message {change.message_id} of change {change.id} is not stored yet")


async def _mention(
    conn: Conn,
    entry: Message | MessageEdited,
    message_id: int,
    sender_id: str,
    named: tuple[str, ...],
    everyone: bool,
) -> list[DomainEvent]:
    """Mention rows for the members notified anew, and an event for each (their live feed)."""
    rows = await conn.fetch(_MENTION, message_id, entry.channel_id, sender_id, list(named), everyone)
    at = entry.created_at if isinstance(entry, Message) else entry.at
    return [
        ev.MessageMentioned(
            tenant_id=entry.tenant_id,
            occurred_at=at,
            actor_id=sender_id,
            payload=ev.MentionData(
                user_id=r["user_id"], channel_id=entry.channel_id, message_id=message_id, sender_id=sender_id
            ),
            # Deterministic: a batch written again (the worker crashed before its ack) publishes
            # the same events, which the event stream drops as duplicates.
            id=uuid.uuid5(MENTION_IDS, f"{message_id}:{entry.id}:{r['user_id']}"),
        )
        for r in rows
    ]
