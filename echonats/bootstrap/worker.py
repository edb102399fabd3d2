"""Wires the worker process: connects to the services, serves its metrics, runs the loops."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from prometheus_client import start_http_server

from echonats.adapters.nats.event_publisher import JetStreamEventPublisher
from echonats.adapters.nats.live import NatsAnnouncer
from echonats.adapters.nats.persist_stream import JetStreamPersistStream
from echonats.adapters.postgres.outbox import PostgresOutbox
from echonats.adapters.postgres.persist_sink import PostgresPersistSink
from echonats.adapters.redis.realtime import RedisPresenceStore
from echonats.bootstrap.resources import Resources, open_resources, prepare_streams
from echonats.core.event_sink import PublishThenForget
from echonats.metrics import WORKER as WORKER_METRICS
from echonats.settings import Settings
from echonats.workers.outbox import OutboxRelay
from echonats.workers.persist import PERSIST_LINGER_S, PersistWorker
from echonats.workers.presence import PresenceSweeper

log = logging.getLogger(__name__)


def persist_worker(resources: Resources, *, fetch_timeout_s: float = 1.0) -> PersistWorker:
    """The persist pipeline: the messages stream into PostgreSQL, then the events committed with
    a batch (mentions) published (what cannot be is left in the outbox for the relay)."""
    return PersistWorker(
        JetStreamPersistStream(resources.nats),
        PostgresPersistSink(resources.pg),
        publisher=PublishThenForget(JetStreamEventPublisher(resources.nats), PostgresOutbox(resources.pg)),
        fetch_timeout_s=fetch_timeout_s,
        linger_s=PERSIST_LINGER_S,
    )


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with open_resources(settings, name="echonats-worker") as resources:
        await prepare_streams(settings, resources)
        if settings.worker.metrics_port:
            start_http_server(
                settings.worker.metrics_port, addr=settings.gateway.host, registry=WORKER_METRICS
            )
        persist = persist_worker(resources)
        relay = OutboxRelay(PostgresOutbox(resources.pg), JetStreamEventPublisher(resources.nats))
        tasks = [
            asyncio.create_task(persist.run(stop), name="persist"),
            asyncio.create_task(relay.run(stop), name="outbox-relay"),
            asyncio.create_task(
                PresenceSweeper(
                    RedisPresenceStore(
                        resources.redis,
                        ttl_s=settings.realtime.presence_ttl_s,
                        idle_after_s=settings.realtime.presence_idle_after_s,
                    ),
                    NatsAnnouncer(resources.nats),
                ).run(stop),
                name="presence-sweeper",
            ),
        ]
        log.info("worker started", extra={"service": "worker"})
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
        stop.set()  # one consumer failing stops the others; the supervisor restarts the process
        results = await asyncio.gather(*tasks, waiter, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        log.info("worker stopped", extra={"service": "worker"})


def run_worker(settings: Settings) -> int:
    settings.require_service_urls()
    # uvloop (which uvicorn runs the gateway on) where installed: the worker is mostly socket I/O
    # (fetches, acks, Postgres), which uvloop does in C.
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run(settings))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - e.g. Windows: the default loop works too
        return None
    return uvloop.new_event_loop
