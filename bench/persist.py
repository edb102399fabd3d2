"""Persist lag: how long after the send a message's row is in PostgreSQL.

A poller reads the rows committed since its last look (keyset on the id, every
``POLL_INTERVAL_S``) and takes, for each row of the current step, ``now - send time`` from the
body. The figure is send -> visible in PostgreSQL with a resolution of one poll interval (it is an
upper bound by at most that much). At the end of a step the bench waits until every acknowledged
message of the step is stored and counts them exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array

import asyncpg

from bench.wire import parse_body

POLL_INTERVAL_S = 0.02
BATCH = 20_000


class PersistPoller:
    def __init__(self, database_url: str, tenant_id: str) -> None:
        self.database_url = database_url
        self.tenant_id = tenant_id
        self.step = -1
        self.seen = 0
        self.lags_us: array[int] = array("q")
        self._last_id = 0
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._found = asyncio.Event()
        self._lock = asyncio.Lock()  # one asyncpg connection: one query at a time

    async def __aenter__(self) -> PersistPoller:
        self._conn = await asyncpg.connect(self.database_url)
        row = await self._conn.fetchval("SELECT coalesce(max(id), 0) FROM messages")
        self._last_id = int(row)
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    def start_step(self, step: int) -> None:
        self.step = step
        self.seen = 0
        self.lags_us = array("q")

    async def _poll(self) -> None:
        assert self._conn is not None
        while True:
            async with self._lock:
                rows = await self._conn.fetch(
                    "SELECT id, body FROM messages WHERE id > $1 AND tenant_id = $2 ORDER BY id LIMIT $3",
                    self._last_id,
                    self.tenant_id,
                    BATCH,
                )
            now = time.time_ns()
            for row in rows:
                fields = parse_body(row["body"].encode())
                if fields is not None and fields.step == self.step:
                    self.seen += 1
                    self.lags_us.append((now - fields.sent_ns) // 1000)
            if rows:
                self._last_id = int(rows[-1]["id"])
                self._found.set()
            if len(rows) < BATCH:
                await asyncio.sleep(POLL_INTERVAL_S)

    async def stored(self, step: int) -> int:
        """Exact number of stored rows of a step (independent of what the poller saw)."""
        assert self._conn is not None
        async with self._lock:
            value = await self._conn.fetchval(
                "SELECT count(*) FROM messages WHERE tenant_id = $1 AND body LIKE $2",
                self.tenant_id,
                f"B|{step}|%",
            )
        return int(value)

    async def wait_for(self, expected: int, timeout_s: float) -> None:
        """Until the poller saw ``expected`` rows of the current step (or the timeout)."""
        deadline = time.monotonic() + timeout_s
        while self.seen < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._found.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._found.wait(), remaining)
