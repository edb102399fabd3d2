from __future__ import annotations

from pathlib import Path

import pytest

from echonats.adapters.postgres.migrations import load_migrations, migrations_dir
from echonats.model.errors import ConfigError


def test_repository_migrations_are_numbered_and_contiguous() -> None:
    migrations = load_migrations()
    assert migrations_dir().name in ("sql", "_sql")
    versions = [m.version for m in migrations]
    assert versions == list(range(1, len(versions) + 1))
    first = migrations[0].sql
    for table in ("tenants", "users", "tenant_members", "channels", "channel_members", "messages"):
        assert f"CREATE TABLE {table} (" in first
    assert "max_messages_per_second" in first
    assert "ON messages (channel_id, id)" in first


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(ConfigError, match="NNNN_lower_snake"):
        load_migrations(tmp_path)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 2;")
    with pytest.raises(ConfigError, match="share a version"):
        load_migrations(tmp_path)
