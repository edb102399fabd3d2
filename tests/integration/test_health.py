from __future__ import annotations

import dataclasses

from litestar.testing import AsyncTestClient

from echonats.bootstrap.gateway import create_gateway_app
from echonats.devstack.stack import free_port
from echonats.settings import RedisSettings, Settings


async def test_health_and_ready_with_all_services_up(settings: Settings) -> None:
    async with AsyncTestClient(create_gateway_app(settings)) as client:
        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"nats": "ok", "postgres": "ok", "redis": "ok"}}


async def test_ready_reports_the_unreachable_dependency(settings: Settings) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    broken = dataclasses.replace(settings, redis=RedisSettings(url=dead_redis))
    async with AsyncTestClient(create_gateway_app(broken)) as client:
        ready = await client.get("/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["nats"] == "ok"
        assert body["checks"]["postgres"] == "ok"
        assert body["checks"]["redis"].startswith("Redis:")
        assert (await client.get("/health")).status_code == 200


async def test_metrics_and_openapi_are_served(settings: Settings) -> None:
    async with AsyncTestClient(create_gateway_app(settings)) as client:
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "python_info" in metrics.text
        schema = (await client.get("/schema/openapi.json")).json()
        assert {"/health", "/ready", "/metrics"} <= set(schema["paths"])


async def test_unknown_route_gets_the_error_envelope(settings: Settings) -> None:
    async with AsyncTestClient(create_gateway_app(settings)) as client:
        response = await client.get("/nope")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
