"""Real services for integration tests.

One private stack per test session (nats-server with JetStream, PostgreSQL, Valkey on free ports),
unless TEST_ECHONATS_NATS_URL / TEST_ECHONATS_DATABASE_URL / TEST_ECHONATS_REDIS_URL point at
existing ones. Every test starts from a clean state: tables truncated, streams deleted, Redis
flushed, so no test depends on another's leftovers or on order.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import nats
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient
from nats.js.errors import NotFoundError

from echonats.adapters.postgres.migrations import apply_migrations
from echonats.devstack.stack import LocalStack, StackUrls
from echonats.settings import Settings, load_settings
from tests.integration.api import Workspace, create_workspace, gateway_client

TEST_JWT_SECRET = "integration-test-secret-0123456789abcdef"


@pytest.fixture(scope="session")
def stack_urls() -> Iterator[StackUrls]:
    given = {
        "nats_url": os.environ.get("TEST_ECHONATS_NATS_URL"),
        "database_url": os.environ.get("TEST_ECHONATS_DATABASE_URL"),
        "redis_url": os.environ.get("TEST_ECHONATS_REDIS_URL"),
    }
    stack = LocalStack(
        nats=not given["nats_url"],
        postgres=not given["database_url"],
        redis=not given["redis_url"],
        durable=False,  # tests need no fsync; user stacks keep it on
    )
    started = stack.start()
    urls = StackUrls(
        nats_url=given["nats_url"] or started.nats_url,
        database_url=given["database_url"] or started.database_url,
        redis_url=given["redis_url"] or started.redis_url,
        nats_monitor_url=started.nats_monitor_url,
    )
    assert urls.database_url
    asyncio.run(apply_migrations(urls.database_url))
    try:
        yield urls
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def service_env(stack_urls: StackUrls) -> dict[str, str]:
    """Environment for echonats processes and Settings in tests."""
    return {**stack_urls.as_env(), "ECHONATS_JWT_SECRET": TEST_JWT_SECRET, "ECHONATS_LOG_FORMAT": "text"}


@pytest.fixture
def env(service_env: dict[str, str]) -> dict[str, str]:
    """The environment of real `python -m echonats` processes in tests: per-user rate limits out of
    the way, readable logs."""
    return {
        **service_env,
        "ECHONATS_ADMIN_TOKEN": ADMIN_TOKEN,
        "ECHONATS_RATE_USER_PER_SECOND": "100000",
        "ECHONATS_RATE_USER_BURST": "100000",
        "ECHONATS_LOG_FORMAT": "text",
    }


@pytest.fixture
def settings(service_env: dict[str, str]) -> Settings:
    return load_settings(service_env)


async def _reset_postgres(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        if tables:
            names = ", ".join(f'"{row["tablename"]}"' for row in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def _reset_nats(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in await js.streams_info():
            try:
                await js.delete_stream(name.config.name or "")
            except NotFoundError:
                continue
    finally:
        await nc.close()


async def _reset_redis(url: str) -> None:
    client = aioredis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture(autouse=True)
async def clean_state(stack_urls: StackUrls) -> None:
    assert stack_urls.database_url
    assert stack_urls.nats_url
    assert stack_urls.redis_url
    await asyncio.gather(
        _reset_postgres(stack_urls.database_url),
        _reset_nats(stack_urls.nats_url),
        _reset_redis(stack_urls.redis_url),
    )


ADMIN_TOKEN = "integration-admin-token-0123456789"


@pytest.fixture
def gateway_settings(service_env: dict[str, str]) -> Settings:
    # Per-user limits out of the way of functional tests; the rate-limit tests set their own.
    return load_settings(
        {
            **service_env,
            "ECHONATS_ADMIN_TOKEN": ADMIN_TOKEN,
            "ECHONATS_RATE_USER_PER_SECOND": "100000",
            "ECHONATS_RATE_USER_BURST": "100000",
        }
    )


@pytest.fixture
async def client(gateway_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with gateway_client(gateway_settings) as test_client:
        yield test_client


@pytest.fixture
async def workspace(client: AsyncTestClient[Any], gateway_settings: Settings) -> Workspace:
    return await create_workspace(client, gateway_settings, ADMIN_TOKEN)


@pytest.fixture
def self_service_settings(service_env: dict[str, str]) -> Settings:
    """Users of tokens without a tenant claim may create and join workspaces."""
    return load_settings(
        {**service_env, "ECHONATS_ADMIN_TOKEN": ADMIN_TOKEN, "ECHONATS_SELF_SERVICE_WORKSPACES": "true"}
    )


@pytest.fixture
async def self_service_api(self_service_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with gateway_client(self_service_settings) as client:
        yield client


@pytest.fixture
async def nc(stack_urls: StackUrls) -> AsyncIterator[nats.NATS]:
    """A plain NATS connection to the test stack (adapter tests against a real nats-server)."""
    assert stack_urls.nats_url
    client = await nats.connect(stack_urls.nats_url)
    yield client
    await client.close()
