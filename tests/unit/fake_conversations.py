"""The in-memory ``ConversationRepo``: DMs, read state, unread and mention counts over the fake
store's tables (``State``), with the PostgreSQL adapter's semantics."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from echonats.model import Channel, ChannelKind, Role, Unread

if TYPE_CHECKING:
    from tests.unit.fakes import InMemoryStore


class InMemoryConversations:
    def __init__(self, store: InMemoryStore, *, writable: bool) -> None:
        from tests.unit.fakes import _Repo  # the fakes' read/write bookkeeping

        self._repo = _Repo(store, writable=writable)
        self._s = store.state

    async def open_dm(self, channel: Channel, key: str, member_ids: Sequence[str]) -> tuple[Channel, bool]:
        self._repo._write("conversations.open_dm")
        existing = self._s.dm_keys.get((channel.tenant_id, key))
        if existing is not None:
            return self._s.channels[existing], False
        self._s.channels[channel.id] = channel
        self._s.dm_keys[(channel.tenant_id, key)] = channel.id
        from tests.unit.fakes import ChannelMemberRow

        for user_id in member_ids:
            self._s.channel_members[(channel.id, user_id)] = ChannelMemberRow(
                channel.tenant_id, Role.MEMBER, channel.created_at
            )
        return channel, True

    async def dms_of(self, tenant_id: uuid.UUID, user_id: str) -> list[tuple[Channel, tuple[str, ...]]]:
        self._repo._read("conversations.dms_of")
        found = [
            c
            for c in self._s.channels.values()
            if c.tenant_id == tenant_id
            and c.kind is ChannelKind.DM
            and (c.id, user_id) in self._s.channel_members
        ]
        found.sort(key=lambda c: (c.created_at, str(c.id)), reverse=True)
        return [(c, tuple(sorted(u for (ch, u) in self._s.channel_members if ch == c.id))) for c in found]

    async def mark_read(
        self, channel_id: uuid.UUID, user_id: str, message_id: int, *, forward_only: bool
    ) -> int | None:
        self._repo._write("conversations.mark_read")
        if (channel_id, user_id) not in self._s.channel_members:
            return None
        current = self._s.last_read.get((channel_id, user_id), 0)
        stored = max(current, message_id) if forward_only else message_id
        self._s.last_read[(channel_id, user_id)] = stored
        return stored

    async def unreads(self, tenant_id: uuid.UUID, user_id: str, cap: int) -> list[Unread]:
        self._repo._read("conversations.unreads")
        out = []
        for (channel_id, member), row in sorted(
            self._s.channel_members.items(), key=lambda kv: str(kv[0][0])
        ):
            if member != user_id or row.tenant_id != tenant_id:
                continue
            last = self._s.last_read.get((channel_id, user_id), 0)
            unread = sum(
                1
                for m in self._s.messages.values()
                if m.channel_id == channel_id
                and m.id > last
                and not m.deleted
                and m.listed_in_channel
                and m.sender_id != user_id
            )
            mentions = sum(1 for u, c, i in self._s.mentions if u == user_id and c == channel_id and i > last)
            kind = self._s.channels[channel_id].kind
            out.append(Unread(channel_id, kind, last, min(unread, cap), min(mentions, cap)))
        return out

    async def mentions_of(
        self, tenant_id: uuid.UUID, user_id: str, *, before: int | None, limit: int
    ) -> list[int]:
        self._repo._read("conversations.mentions_of")
        ids = [
            i
            for u, c, i in self._s.mentions
            if u == user_id and (c, u) in self._s.channel_members and (before is None or i < before)
        ]
        return sorted(ids, reverse=True)[:limit]

    async def member_count(self, channel_id: uuid.UUID) -> int:
        self._repo._read("conversations.member_count")
        return sum(1 for (c, _) in self._s.channel_members if c == channel_id)
