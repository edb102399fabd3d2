"""`echonats run` supervising its children: a crashed worker or gateway is restarted while the rest
keeps serving, and a stop signal stops gateways, then the worker, then the services.

Every wait polls a condition with a deadline or waits on output lines; the stack is stopped (and
killed if need be) even when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal

import asyncpg
import httpx
import pytest

from tests.integration.api import wait_for
from tests.integration.running import create_tenant, echonats_run, ready, send_and_ack, subscribed_client


async def test_killed_worker_is_restarted_while_the_gateway_keeps_serving() -> None:
    async with echonats_run() as stack, httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        tenant = await create_tenant(http)
        async with subscribed_client(stack, tenant) as client:
            before = await send_and_ack(client, tenant, "before")
            old = stack.child_pid("worker")
            gateway = stack.child_pid("gateway")
            assert old
            assert gateway

            os.kill(old, signal.SIGKILL)
            # Sent while no worker runs: JetStream acknowledges it, the gateway does not need the worker.
            during = await send_and_ack(client, tenant, "during")
            assert await ready(http)

            async def restarted() -> bool:
                assert stack.process.poll() is None, f"echonats run exited: {stack.log()}"
                return stack.child_pid("worker") not in (None, old)

            await wait_for(restarted, timeout_s=30, what="a new worker process")
            new = stack.child_pid("worker")
            conn = await asyncpg.connect(stack.database_url())
            try:

                async def persisted() -> bool:
                    query = "SELECT count(*) FROM messages WHERE id = ANY($1::bigint[])"
                    return int(await conn.fetchval(query, [before, during])) == 2

                await wait_for(persisted, timeout_s=45, what="both messages in PostgreSQL")
            finally:
                await conn.close()

            after = await send_and_ack(client, tenant, "after")  # the same socket, never closed
            await client.wait(lambda: after in [f["payload"]["messageId"] for f in client.of_type("message")])
            assert client.close_code is None
            assert stack.child_pid("gateway") == gateway  # the gateway was left alone
            assert stack.child_pid("worker") == new  # and the new worker stays up
            assert re.search(rf"worker \(pid {old}\) exited with signal SIGKILL", stack.log()), stack.log()
            assert await ready(http)


async def test_killed_gateway_is_restarted_on_its_port() -> None:
    async with echonats_run() as stack, httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        tenant = await create_tenant(http)
        old, worker = stack.child_pid("gateway"), stack.child_pid("worker")
        assert old
        assert worker
        os.kill(old, signal.SIGKILL)

        async def back() -> bool:
            assert stack.process.poll() is None, f"echonats run exited: {stack.log()}"
            return stack.child_pid("gateway") not in (None, old) and await ready(http)

        await wait_for(back, timeout_s=45, what="a new gateway answering /ready on the same port")
        async with subscribed_client(stack, tenant) as client:
            await send_and_ack(client, tenant, "after restart")
        assert stack.child_pid("worker") == worker
        assert re.search(rf"gateway-1 \(pid {old}\) exited with signal SIGKILL", stack.log()), stack.log()


# What a gateway or worker logs when a service went away under it.
SERVICE_ERRORS = re.compile(r"ConnectionError|Traceback|drain failed|shutting down|NATS disconnected")


@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGTERM], ids=["sighup", "sigterm"])
async def test_stop_signal_stops_gateways_then_worker_then_services(stop_signal: signal.Signals) -> None:
    async with echonats_run() as stack, httpx.AsyncClient(base_url=stack.base, timeout=10) as http:
        tenant = await create_tenant(http)
        async with subscribed_client(stack, tenant) as client:
            await send_and_ack(client, tenant, "one")
            stack.process.send_signal(stop_signal)
            assert await client.wait_closed(timeout_s=30) == 1012
        assert await asyncio.to_thread(stack.process.wait, 60) == 0
    log = stack.log()
    assert not SERVICE_ERRORS.search(log), log
    assert "killing it" not in log  # each stopped within its bound, none SIGKILLed
    order = [
        log.index("gateway-1 stopped ("),  # uvicorn re-raises SIGTERM after its graceful shutdown
        log.index("worker stopped (exit code 0)"),
        log.index("echonats.devstack.supervisor: stopped"),
    ]
    assert order == sorted(order), log
