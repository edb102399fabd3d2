"""Helpers for driving the REST API in integration tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.bootstrap.gateway import create_gateway_app
from echonats.bootstrap.resources import open_resources
from echonats.bootstrap.worker import persist_worker
from echonats.settings import Settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Workspace:
    """A tenant created through the admin API, with helpers to act as its users."""

    client: AsyncTestClient[Any]
    settings: Settings
    tenant_id: str
    owner_id: str

    def token(self, user_id: str, name: str | None = None, roles: tuple[str, ...] = ()) -> str:
        return mint_dev_token(
            self.settings.auth, tenant_id=self.tenant_id, user_id=user_id, name=name or user_id, roles=roles
        )

    def as_user(self, user_id: str, name: str | None = None) -> dict[str, str]:
        return bearer(self.token(user_id, name))

    @property
    def owner(self) -> dict[str, str]:
        return self.as_user(self.owner_id, "Owner")

    async def set_limits(self, admin_token: str, **limits: int) -> None:
        response = await self.client.patch(
            f"/api/v1/admin/tenants/{self.tenant_id}", json=limits, headers=bearer(admin_token)
        )
        assert response.status_code == 200, response.text

    async def channel(self, name: str, *, private: bool = False, by: str | None = None) -> str:
        headers = self.as_user(by) if by else self.owner
        response = await self.client.post(
            "/api/v1/channels", json={"name": name, "isPrivate": private}, headers=headers
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def send(
        self, channel_id: str, body: str, *, by: str | None = None, nonce: str | None = None
    ) -> int:
        headers = self.as_user(by) if by else self.owner
        payload: dict[str, str] = {"body": body}
        if nonce is not None:
            payload["nonce"] = nonce
        response = await self.client.post(
            f"/api/v1/channels/{channel_id}/messages", json=payload, headers=headers
        )
        assert response.status_code == 201, response.text
        return int(response.json()["id"])


async def create_workspace(
    client: AsyncTestClient[Any], settings: Settings, admin_token: str, name: str = "Acme"
) -> Workspace:
    response = await client.post(
        "/api/v1/admin/tenants",
        json={"name": name, "adminEmail": "owner@example.com", "adminDisplayName": "Owner"},
        headers=bearer(admin_token),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Workspace(client, settings, body["id"], body["adminUserId"])


@asynccontextmanager
async def gateway_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_gateway_app(settings), timeout=30) as client:
        yield client


@asynccontextmanager
async def running_persist_worker(settings: Settings) -> AsyncIterator[None]:
    """A persist worker on its own connections, like a separate process, until the block ends."""
    stop = asyncio.Event()
    async with open_resources(settings, name="test-persist-worker") as resources:
        worker = persist_worker(resources, fetch_timeout_s=0.2)
        task = asyncio.create_task(worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            await task


async def wait_for(predicate: Any, *, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll an async predicate until true; fail with `what` after the timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.02)  # polling a condition with a deadline
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def random_id() -> str:
    return str(uuid.uuid4())


__all__ = [
    "Workspace",
    "bearer",
    "create_workspace",
    "gateway_client",
    "httpx",
    "running_persist_worker",
    "wait_for",
]
