from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from echonats.adapters.postgres.migrations import (
    Migration,
    MigrationFailed,
    apply_migrations,
    load_migrations,
)
from echonats.devstack.stack import StackUrls
from echonats.model.errors import ConfigError


async def test_applying_twice_is_a_no_op(stack_urls: StackUrls) -> None:
    assert stack_urls.database_url
    # The session fixture applied everything already.
    assert await apply_migrations(stack_urls.database_url) == []
    conn = await asyncpg.connect(stack_urls.database_url)
    try:
        versions = [
            r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
        ]
    finally:
        await conn.close()
    assert versions == [m.version for m in load_migrations()]


async def test_new_migration_is_applied_once_even_by_concurrent_runners(stack_urls: StackUrls) -> None:
    assert stack_urls.database_url
    extra = Migration(9001, "probe_table", "CREATE TABLE migration_probe (id int PRIMARY KEY);")
    plan = [*load_migrations(), extra]
    conn = await asyncpg.connect(stack_urls.database_url)
    try:
        results = await asyncio.gather(*(apply_migrations(stack_urls.database_url, plan) for _ in range(4)))
        assert sorted(results) == [[], [], [], [9001]]
        assert await conn.fetchval("SELECT to_regclass('migration_probe') IS NOT NULL")
    finally:
        await conn.execute("DROP TABLE IF EXISTS migration_probe")
        await conn.execute("DELETE FROM schema_migrations WHERE version = 9001")
        await conn.close()


async def test_edited_applied_migration_is_refused(stack_urls: StackUrls) -> None:
    assert stack_urls.database_url
    first = load_migrations()[0]
    edited = Migration(first.version, first.name, first.sql + "\n-- edited")
    with pytest.raises(ConfigError, match="changed after it was applied"):
        await apply_migrations(stack_urls.database_url, [edited])


async def test_failing_migration_leaves_nothing_behind(stack_urls: StackUrls) -> None:
    assert stack_urls.database_url
    broken = Migration(9002, "broken", "CREATE TABLE half_done (id int); SELECT no_such_function();")
    with pytest.raises(MigrationFailed, match=r"9002_broken\.sql failed"):
        await apply_migrations(stack_urls.database_url, [*load_migrations(), broken])
    conn = await asyncpg.connect(stack_urls.database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9002") == 0
    finally:
        await conn.close()


async def test_member_profiles_migration_copies_each_members_current_profile(stack_urls: StackUrls) -> None:
    # A scratch database at the schema before 0004, with data, then 0004 applied on top.
    assert stack_urls.database_url
    admin = await asyncpg.connect(stack_urls.database_url)
    name = f"migrate_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = stack_urls.database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        before = [m for m in load_migrations() if m.version < 4]
        profiles = next(m for m in load_migrations() if m.name == "member_profiles")
        assert await apply_migrations(url, before) == [1, 2, 3]
        conn = await asyncpg.connect(url)
        try:
            tenants = [uuid.uuid4(), uuid.uuid4()]
            for tenant in tenants:
                await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, 't')", tenant)
            await conn.execute(
                "INSERT INTO users (id, display_name, email) VALUES ('ann', 'Ann', 'ann@example.com'), "
                "('bob', 'Bob', NULL)"
            )
            await conn.execute(
                "INSERT INTO tenant_members (tenant_id, user_id, removed_at) VALUES ($1, 'ann', NULL), "
                "($2, 'ann', now()), ($1, 'bob', NULL)",
                *tenants,
            )
            assert await apply_migrations(url, [*before, profiles]) == [profiles.version]
            rows = await conn.fetch("SELECT tenant_id, user_id, display_name, email FROM tenant_members")
            assert sorted(
                (r["tenant_id"], r["user_id"], r["display_name"], r["email"]) for r in rows
            ) == sorted(
                [
                    (tenants[0], "ann", "Ann", "ann@example.com"),
                    (tenants[1], "ann", "Ann", "ann@example.com"),
                    (tenants[0], "bob", "Bob", None),
                ]
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
