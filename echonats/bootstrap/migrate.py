"""Schema migrations for `echonats migrate` and `echonats run` (the adapters stay behind this)."""

from __future__ import annotations

import asyncio

from echonats.adapters.postgres.migrations import apply_migrations


def migrate(database_url: str) -> list[int]:
    """Apply pending migrations; returns the versions applied (none: already up to date)."""
    return asyncio.run(apply_migrations(database_url))
