"""Outbox relay: publishes domain events whose fast-path publication after commit did not happen
(gateway crashed between commit and publish, or the event stream was down). The event stream dedupes
on the event id, so an event published by both paths is stored once."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from echonats import metrics
from echonats.core.pipeline_ports import OutboxRelayStore, StoredEventPublisher
from echonats.model.errors import EchonatsError

log = logging.getLogger(__name__)

# Rows younger than this are left to the gateway's own publish-after-commit.
GRACE = timedelta(seconds=5)
INTERVAL_S = 2.0
BATCH = 200


class OutboxRelay:
    def __init__(self, store: OutboxRelayStore, publisher: StoredEventPublisher) -> None:
        self._store = store
        self._publisher = publisher

    async def relay_once(self, grace: timedelta = GRACE) -> int:
        """Publish and delete due rows; several relays may run (each claims other rows). Returns rows
        relayed. A failed publish leaves every claimed row for the next round."""
        async with self._store.claim_due(grace, BATCH) as due:
            if due:
                await self._publisher.publish_stored(due)
        metrics.outbox_relayed.inc(len(due))
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                relayed = await self.relay_once()
                if relayed:
                    log.info("outbox relay published %d deferred events", relayed)
            except EchonatsError as exc:
                log.warning("outbox relay failed, will retry: %s", exc.message)
            try:
                await asyncio.wait_for(stop.wait(), timeout=INTERVAL_S)
            except TimeoutError:
                continue
