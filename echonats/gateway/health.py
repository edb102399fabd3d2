"""Liveness (`/health`), readiness (`/ready`) and Prometheus metrics (`/metrics`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from echonats.core.ports import DependencyProbe
from echonats.metrics import GATEWAY as GATEWAY_METRICS
from echonats.model.errors import EchonatsError


class HealthStatus(msgspec.Struct):
    status: str


class ReadyStatus(msgspec.Struct):
    status: str
    checks: dict[str, str]


@get("/health", summary="Liveness: the process is up", tags=["operations"], security=[])
async def health() -> HealthStatus:
    return HealthStatus(status="ok")


async def _run_probe(probe: DependencyProbe, timeout_s: float) -> str:
    try:
        await asyncio.wait_for(probe.check(), timeout=timeout_s)
    except EchonatsError as exc:
        return exc.message
    except TimeoutError:
        return f"no answer within {timeout_s:g}s"
    return "ok"


async def check_readiness(probes: Sequence[DependencyProbe], timeout_s: float) -> ReadyStatus:
    results = await asyncio.gather(*(_run_probe(p, timeout_s) for p in probes))
    checks = {p.name: r for p, r in zip(probes, results, strict=True)}
    ready = all(r == "ok" for r in results)
    return ReadyStatus(status="ready" if ready else "unavailable", checks=checks)


@get(
    "/ready",
    summary="Readiness: NATS, PostgreSQL and Redis answer",
    tags=["operations"],
    security=[],
    responses={503: ResponseSpec(data_container=ReadyStatus, description="A dependency is unreachable")},
)
async def ready(state: State) -> Response[ReadyStatus]:
    status = await check_readiness(state.probes, state.ready_timeout_s)
    return Response(status, status_code=200 if status.status == "ready" else 503)


@get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["operations"],
    media_type=CONTENT_TYPE_LATEST,
    include_in_schema=True,
    security=[],
)
async def metrics() -> Response[bytes]:
    return Response(generate_latest(GATEWAY_METRICS), media_type=CONTENT_TYPE_LATEST)
