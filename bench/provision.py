"""Tenant, users, channels and tokens, created through the public REST API like a client would."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import httpx

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.settings import AuthSettings

TOKEN_TTL_S = 6 * 3600
MAX_RATE = 1_000_000
CONCURRENCY = 16


@dataclass(slots=True)
class Tenant:
    id: str
    admin_user_id: str
    admin_token: str
    users: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)


class Provisioner:
    def __init__(self, base_url: str, admin_token: str, jwt_secret: str) -> None:
        self.base = base_url
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.auth = AuthSettings(jwt_secret=jwt_secret)

    def token(self, tenant_id: str, user_id: str) -> str:
        return mint_dev_token(
            self.auth, tenant_id=tenant_id, user_id=user_id, name=f"bench {user_id[:8]}", ttl_s=TOKEN_TTL_S
        )

    async def tenant(self, name: str) -> Tenant:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
            created = await _json(
                http.post(
                    "/api/v1/admin/tenants",
                    headers=self.admin,
                    json={"name": name, "adminEmail": "bench@example.com", "adminDisplayName": "bench admin"},
                )
            )
            # The bench offers thousands of messages per second: lift the tenant's limits.
            await _json(
                http.patch(
                    f"/api/v1/admin/tenants/{created['id']}",
                    headers=self.admin,
                    json={"maxMessagesPerSecond": MAX_RATE, "maxChannels": MAX_RATE},
                )
            )
        tenant = Tenant(id=created["id"], admin_user_id=created["adminUserId"], admin_token="")
        tenant.admin_token = self.token(tenant.id, tenant.admin_user_id)
        return tenant

    async def users(self, tenant: Tenant, count: int, prefix: str) -> list[str]:
        """``count`` new members of the tenant (each with a token in ``tenant.tokens``)."""
        gate = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:

            async def one(i: int) -> str:
                async with gate:
                    member = await _json(
                        http.post(
                            f"/api/v1/admin/tenants/{tenant.id}/users",
                            headers=self.admin,
                            json={
                                "email": f"{prefix}-{i}-{uuid.uuid4().hex[:6]}@bench.local",
                                "displayName": f"{prefix} {i}",
                            },
                        )
                    )
                return str(member["id"])

            ids = list(await asyncio.gather(*(one(i) for i in range(count))))
        for user_id in ids:
            tenant.tokens[user_id] = self.token(tenant.id, user_id)
        tenant.users.extend(ids)
        return ids

    async def channels(self, tenant: Tenant, count: int, prefix: str) -> list[str]:
        headers = {"Authorization": f"Bearer {tenant.admin_token}"}
        gate = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:

            async def one(i: int) -> str:
                async with gate:
                    channel = await _json(
                        http.post(
                            "/api/v1/channels",
                            headers=headers,
                            json={"name": f"{prefix}-{i}-{uuid.uuid4().hex[:6]}", "isPrivate": False},
                        )
                    )
                return str(channel["id"])

            return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _json(request: object) -> dict[str, object]:
    response: httpx.Response = await request  # type: ignore[misc]
    if response.status_code >= 300:
        request = response.request
        raise RuntimeError(
            f"{request.method} {request.url.path}: {response.status_code} {response.text[:300]}"
        )
    data = response.json()
    assert isinstance(data, dict)
    return data
