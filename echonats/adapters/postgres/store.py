"""PostgreSQL implementation of the Store port (asyncpg). Driver errors become domain errors here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg

from echonats.adapters.postgres.connection import Conn
from echonats.adapters.postgres.conversations import Conversations
from echonats.adapters.postgres.errors import translated
from echonats.adapters.postgres.messages import MessageHistory, delete_channel_messages
from echonats.adapters.postgres.outbox import OutboxWriter
from echonats.adapters.postgres.workspaces import Workspaces
from echonats.core.ports import MembershipState, TenantLimits
from echonats.model import (
    Channel,
    ChannelKind,
    ChannelMember,
    ManualPresence,
    Member,
    Role,
    Tenant,
    User,
    UserStatus,
)
from echonats.model.errors import Conflict

Row = asyncpg.Record


def _tenant(row: Row) -> Tenant:
    return Tenant(
        row["id"], row["name"], row["max_channels"], row["max_messages_per_second"], row["created_at"]
    )


def _member(row: Row) -> Member:
    return Member(
        row["tenant_id"],
        row["user_id"],
        row["display_name"],
        row["email"],
        Role(row["role"]),
        row["joined_at"],
    )


def _channel(row: Row) -> Channel:
    return Channel(
        row["id"],
        row["tenant_id"],
        row["name"],
        row["topic"],
        row["is_private"],
        row["created_by"],
        row["created_at"],
        ChannelKind(row["kind"]),
    )


_TENANT = "SELECT * FROM tenants WHERE id = $1"
_TENANT_FOR_UPDATE = _TENANT + " FOR UPDATE"


class _Tenants:
    def __init__(self, conn: Conn) -> None:
        self._c = conn

    async def add(self, tenant: Tenant) -> None:
        await self._c.execute(
            "INSERT INTO tenants (id, name, max_channels, max_messages_per_second, created_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            tenant.id,
            tenant.name,
            tenant.max_channels,
            tenant.max_messages_per_second,
            tenant.created_at,
        )

    async def get(self, tenant_id: uuid.UUID, *, for_update: bool = False) -> Tenant | None:
        query = _TENANT_FOR_UPDATE if for_update else _TENANT
        row = await self._c.fetchrow(query, tenant_id)
        return _tenant(row) if row else None

    async def list(self, *, limit: int, after: uuid.UUID | None) -> list[Tenant]:
        rows = await self._c.fetch(
            "SELECT * FROM tenants WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2", after, limit
        )
        return [_tenant(r) for r in rows]

    async def update_limits(self, tenant_id: uuid.UUID, limits: TenantLimits) -> Tenant | None:
        row = await self._c.fetchrow(
            "UPDATE tenants SET max_channels = coalesce($2, max_channels), "
            "max_messages_per_second = coalesce($3, max_messages_per_second), updated_at = now() "
            "WHERE id = $1 RETURNING *",
            tenant_id,
            limits.max_channels,
            limits.max_messages_per_second,
        )
        return _tenant(row) if row else None


class _Users:
    def __init__(self, conn: Conn) -> None:
        self._c = conn

    async def ensure(self, user: User) -> None:
        # An existing identity is left as it is: what a tenant shows lives in its member row.
        await self._c.execute(
            "INSERT INTO users (id, display_name, email) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            user.id,
            user.display_name,
            user.email,
        )


_MEMBER_SELECT = (
    "SELECT m.tenant_id, m.user_id, m.display_name, m.email, m.role, m.joined_at, m.removed_at "
    "FROM tenant_members m "
)


class _MemberStatus:
    """A member's own status (sql/0007); mixed into the members repository."""

    _c: Conn

    async def set_status(self, tenant_id: uuid.UUID, user_id: str, status: UserStatus | None) -> bool:
        presence = status.presence.value if status and status.presence else None
        row = await self._c.fetchval(
            "UPDATE tenant_members SET status_presence = $3, status_text = $4, status_expires = $5 "
            "WHERE tenant_id = $1 AND user_id = $2 AND removed_at IS NULL RETURNING 1",
            tenant_id,
            user_id,
            presence,
            status.text if status else "",
            status.expires_at if status else None,
        )
        return row is not None

    async def statuses(self, tenant_id: uuid.UUID, user_ids: Sequence[str]) -> dict[str, UserStatus]:
        rows = await self._c.fetch(
            "SELECT user_id, status_presence, status_text, status_expires FROM tenant_members "
            "WHERE tenant_id = $1 AND user_id = ANY($2::text[]) AND removed_at IS NULL "
            "AND (status_presence IS NOT NULL OR status_text <> '')",
            tenant_id,
            list(user_ids),
        )
        return {
            r["user_id"]: UserStatus(
                ManualPresence(r["status_presence"]) if r["status_presence"] else None,
                r["status_text"],
                r["status_expires"],
            )
            for r in rows
        }

    async def active_ids(self, tenant_id: uuid.UUID, *, limit: int) -> list[str]:
        rows = await self._c.fetch(
            "SELECT user_id FROM tenant_members WHERE tenant_id = $1 AND removed_at IS NULL "
            "ORDER BY user_id LIMIT $2",
            tenant_id,
            limit,
        )
        return [r["user_id"] for r in rows]


class _Members(_MemberStatus):
    def __init__(self, conn: Conn) -> None:
        self._c = conn

    async def state(self, tenant_id: uuid.UUID, user_id: str) -> MembershipState:
        row = await self._c.fetchrow(
            _MEMBER_SELECT + "WHERE m.tenant_id = $1 AND m.user_id = $2", tenant_id, user_id
        )
        if row is None:
            return MembershipState(None, removed=False)
        if row["removed_at"] is not None:
            return MembershipState(None, removed=True)
        return MembershipState(_member(row), removed=False)

    async def add(self, tenant_id: uuid.UUID, user: User, role: Role) -> Member:
        row = await self._c.fetchrow(
            "INSERT INTO tenant_members (tenant_id, user_id, role, display_name, email) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, user_id) DO NOTHING RETURNING *",
            tenant_id,
            user.id,
            role.value,
            user.display_name,
            user.email,
        )
        if row is None:
            raise Conflict("already a member of this workspace")
        return _member(row)

    async def reinstate(self, tenant_id: uuid.UUID, user_id: str, role: Role) -> Member | None:
        row = await self._c.fetchrow(
            "UPDATE tenant_members SET removed_at = NULL, role = $3, joined_at = now() "
            "WHERE tenant_id = $1 AND user_id = $2 AND removed_at IS NOT NULL RETURNING *",
            tenant_id,
            user_id,
            role.value,
        )
        return _member(row) if row else None

    async def list(self, tenant_id: uuid.UUID, *, limit: int, after: str | None) -> list[Member]:
        rows = await self._c.fetch(
            _MEMBER_SELECT + "WHERE m.tenant_id = $1 AND m.removed_at IS NULL AND ($2::text IS NULL "
            "OR m.user_id > $2) ORDER BY m.user_id LIMIT $3",
            tenant_id,
            after,
            limit,
        )
        return [_member(r) for r in rows]

    async def set_role(self, tenant_id: uuid.UUID, user_id: str, role: Role) -> Member | None:
        await self._c.execute(
            "UPDATE tenant_members SET role = $3 "
            "WHERE tenant_id = $1 AND user_id = $2 AND removed_at IS NULL",
            tenant_id,
            user_id,
            role.value,
        )
        return (await self.state(tenant_id, user_id)).member

    async def count_owners(self, tenant_id: uuid.UUID) -> int:
        rows = await self._c.fetch(
            "SELECT user_id FROM tenant_members WHERE tenant_id = $1 AND role = 'owner' "
            "AND removed_at IS NULL FOR UPDATE",
            tenant_id,
        )
        return len(rows)

    async def remove(self, tenant_id: uuid.UUID, user_id: str, *, ban: bool) -> bool:
        if ban:
            status = await self._c.execute(
                "UPDATE tenant_members SET removed_at = now() WHERE tenant_id = $1 AND user_id = $2 "
                "AND removed_at IS NULL",
                tenant_id,
                user_id,
            )
        else:
            status = await self._c.execute(
                "DELETE FROM tenant_members WHERE tenant_id = $1 AND user_id = $2 AND removed_at IS NULL",
                tenant_id,
                user_id,
            )
        return not status.endswith(" 0")


class _Channels:
    def __init__(self, conn: Conn) -> None:
        self._c = conn

    async def add(self, channel: Channel) -> None:
        try:
            await self._c.execute(
                "INSERT INTO channels (id, tenant_id, name, topic, is_private, created_by, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",  # a channel; DMs are opened by Conversations
                channel.id,
                channel.tenant_id,
                channel.name,
                channel.topic,
                channel.is_private,
                channel.created_by,
                channel.created_at,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a channel named {channel.name!r} already exists") from exc

    async def count(self, tenant_id: uuid.UUID) -> int:
        query = "SELECT count(*) FROM channels WHERE tenant_id = $1 AND kind = 'channel'"  # DMs do not count
        return int(await self._c.fetchval(query, tenant_id))

    async def get(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> Channel | None:
        row = await self._c.fetchrow(
            "SELECT * FROM channels WHERE tenant_id = $1 AND id = $2", tenant_id, channel_id
        )
        return _channel(row) if row else None

    async def list_visible(self, tenant_id: uuid.UUID, user_id: str) -> list[Channel]:
        rows = await self._c.fetch(
            "SELECT c.* FROM channels c WHERE c.tenant_id = $1 AND c.kind = 'channel' "
            "AND (NOT c.is_private OR EXISTS ("
            "SELECT 1 FROM channel_members cm WHERE cm.channel_id = c.id AND cm.user_id = $2)) "
            "ORDER BY lower(c.name)",
            tenant_id,
            user_id,
        )
        return [_channel(r) for r in rows]

    async def update(self, channel: Channel) -> None:
        try:
            await self._c.execute(
                "UPDATE channels SET name = $3, topic = $4, updated_at = now() "
                "WHERE tenant_id = $1 AND id = $2",
                channel.tenant_id,
                channel.id,
                channel.name,
                channel.topic,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a channel named {channel.name!r} already exists") from exc

    async def delete(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> bool:
        await delete_channel_messages(self._c, tenant_id, channel_id)
        status = await self._c.execute(
            "DELETE FROM channels WHERE tenant_id = $1 AND id = $2", tenant_id, channel_id
        )
        return not status.endswith(" 0")

    async def member_role(self, channel_id: uuid.UUID, user_id: str) -> Role | None:
        role = await self._c.fetchval(
            "SELECT role FROM channel_members WHERE channel_id = $1 AND user_id = $2", channel_id, user_id
        )
        return Role(role) if role else None

    async def add_member(self, tenant_id: uuid.UUID, channel_id: uuid.UUID, user_id: str, role: Role) -> bool:
        status = await self._c.execute(
            "INSERT INTO channel_members (channel_id, user_id, tenant_id, role) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING",
            channel_id,
            user_id,
            tenant_id,
            role.value,
        )
        return not status.endswith(" 0")

    async def remove_member(self, channel_id: uuid.UUID, user_id: str) -> bool:
        status = await self._c.execute(
            "DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2", channel_id, user_id
        )
        return not status.endswith(" 0")

    async def members(self, channel_id: uuid.UUID) -> list[ChannelMember]:
        rows = await self._c.fetch(
            "SELECT cm.channel_id, cm.user_id, m.display_name, cm.role, cm.joined_at FROM channel_members cm "
            "JOIN tenant_members m ON m.tenant_id = cm.tenant_id AND m.user_id = cm.user_id "
            "WHERE cm.channel_id = $1 ORDER BY cm.joined_at, cm.user_id",
            channel_id,
        )
        return [
            ChannelMember(r["channel_id"], r["user_id"], r["display_name"], Role(r["role"]), r["joined_at"])
            for r in rows
        ]

    async def remove_user_everywhere(self, tenant_id: uuid.UUID, user_id: str) -> None:
        await self._c.execute(
            "DELETE FROM channel_members WHERE tenant_id = $1 AND user_id = $2", tenant_id, user_id
        )


class PgTransaction:
    def __init__(self, conn: Conn) -> None:
        self.tenants = _Tenants(conn)
        self.users = _Users(conn)
        self.members = _Members(conn)
        self.channels = _Channels(conn)
        self.messages = MessageHistory(conn)
        self.conversations = Conversations(conn)
        self.workspaces = Workspaces(conn)
        self.outbox = OutboxWriter(conn)


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransaction]:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                yield PgTransaction(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[PgTransaction]:
        with translated():
            async with self._pool.acquire() as conn:
                yield PgTransaction(conn)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[PgTransaction]:
        with translated():
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield PgTransaction(conn)
