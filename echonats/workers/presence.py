"""Presence sweeper: turns users offline when their connections' heartbeats lapse (a gateway died
or lost Redis) and idle when they stop being active, then announces it on core NATS.

Several workers may sweep at once: the store reports each change once (compare-and-set in Redis).
Announcements are ephemeral (core NATS, not JetStream): a client that misses one asks for the
current statuses when it (re)connects.
"""

from __future__ import annotations

import asyncio
import logging

from echonats.core.ports import PresencePublisher, PresenceStore
from echonats.model.errors import Unavailable

log = logging.getLogger(__name__)


class PresenceSweeper:
    def __init__(
        self, store: PresenceStore, publisher: PresencePublisher, *, interval_s: float = 1.0
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._interval_s = interval_s
        self._failing = False  # log an outage once when it starts and once when it ends, not per tick

    async def sweep_once(self) -> int:
        """Apply due changes and publish them; returns how many were published. Never raises for
        Redis or NATS errors (they are logged; the next tick retries)."""
        try:
            changes = await self._store.sweep()
        except Unavailable as exc:
            self._failed(f"presence sweep failed, will retry: {exc.message}")
            return 0
        published = 0
        for change in changes:
            try:
                await self._publisher.publish_presence(change)
            except Unavailable as exc:
                # The change is already recorded in Redis; clients catch up on their next fetch.
                self._failed(f"presence change not published: {exc.message}")
                continue
            published += 1
        if self._failing and published == len(changes):
            self._failing = False
            log.info("presence sweeper recovered")
        return published

    def _failed(self, message: str) -> None:
        if not self._failing:
            log.warning(message)
        else:
            log.debug(message)
        self._failing = True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sweep_once()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._interval_s)
            except TimeoutError:
                continue
