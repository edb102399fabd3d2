"""The worker process: connects to the services, serves its metrics, runs the stream consumers."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

from echonats.bootstrap import open_resources
from echonats.settings import Settings

log = logging.getLogger(__name__)


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with open_resources(settings, name="echonats-worker"):
        if settings.worker.metrics_port:
            start_http_server(settings.worker.metrics_port, addr=settings.gateway.host)
        log.info("worker started", extra={"service": "worker"})
        await stop.wait()
        log.info("worker stopping", extra={"service": "worker"})


def run_worker(settings: Settings) -> int:
    settings.require_service_urls()
    asyncio.run(_run(settings))
    return 0
