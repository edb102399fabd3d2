"""A user's workspaces across tenants, and deleting a workspace with everything in it."""

from __future__ import annotations

import uuid

from echonats.adapters.postgres.connection import Conn
from echonats.model import Member, Role, Tenant


class Workspaces:
    def __init__(self, conn: Conn) -> None:
        self._c = conn

    async def memberships_of(self, user_id: str) -> list[tuple[Tenant, Member]]:
        rows = await self._c.fetch(
            "SELECT t.id, t.name, t.max_channels, t.max_messages_per_second, t.created_at, "
            "m.display_name, m.email, m.role, m.joined_at FROM tenant_members m "
            "JOIN tenants t ON t.id = m.tenant_id WHERE m.user_id = $1 AND m.removed_at IS NULL "
            "ORDER BY m.joined_at, t.id",
            user_id,
        )
        return [
            (
                Tenant(r["id"], r["name"], r["max_channels"], r["max_messages_per_second"], r["created_at"]),
                Member(r["id"], user_id, r["display_name"], r["email"], Role(r["role"]), r["joined_at"]),
            )
            for r in rows
        ]

    async def tenant_of_channel(self, channel_id: uuid.UUID) -> uuid.UUID | None:
        tenant_id: uuid.UUID | None = await self._c.fetchval(
            "SELECT tenant_id FROM channels WHERE id = $1", channel_id
        )
        return tenant_id

    async def delete(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        # Locks the tenant first: a concurrent create_channel (which reads it FOR UPDATE) waits.
        if await self._c.fetchval("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id) is None:
            return []
        channel_ids: list[uuid.UUID] = [
            r["id"] for r in await self._c.fetch("SELECT id FROM channels WHERE tenant_id = $1", tenant_id)
        ]
        # Messages, reactions and mentions have no foreign keys (D5): each goes by the column its
        # index leads with; members and channels go with the tenant (ON DELETE CASCADE).
        for table in ("messages", "message_reactions"):
            await self._c.execute(
                f"DELETE FROM {table} WHERE channel_id = ANY($1::uuid[])",  # noqa: S608 (constant names)
                channel_ids,
            )
        await self._c.execute("DELETE FROM message_mentions WHERE tenant_id = $1", tenant_id)
        await self._c.execute("DELETE FROM tenants WHERE id = $1", tenant_id)
        return channel_ids
