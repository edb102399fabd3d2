"""Bad input over real routes: always a documented 4xx with the error body, never a 500.

The rule (README, "Errors"): 400 ``bad_request`` when the request does not match the OpenAPI schema
(not JSON, a wrong type, an unknown field, or a value outside a bound the schema declares); 422
``validation_failed`` when it matches the schema but a domain rule refuses a value; 415
``unsupported_media_type`` when a JSON route's Content-Type names another media type.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
import pytest
from litestar.testing import AsyncTestClient

from echonats.adapters.postgres.store import PostgresStore
from echonats.devstack.stack import StackUrls
from echonats.model import User
from echonats.model.errors import ValidationFailed
from tests.integration.api import Workspace, bearer
from tests.integration.conftest import ADMIN_TOKEN, TEST_JWT_SECRET

INT64_MAX = 2**63 - 1
NUL = "a\u0000b"


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # {channel} and {tenant} are filled in; already URL-encoded
    status: int
    code: str
    body: object = None
    raw: bytes | None = None  # sent as is (with content_type) instead of ``body``
    content_type: str | None = "application/json"
    as_admin: bool = False


C, M, A = "/api/v1/channels/{channel}", "/api/v1/members", "/api/v1/admin/tenants"
CASES: dict[str, Case] = {
    # Message ids: bigints. Outside the schema's bounds (0..2^63-1) or not an integer: 400.
    "before beyond int64": Case("GET", f"{C}/messages?before={INT64_MAX + 1}", 400, "bad_request"),
    "after beyond int64": Case("GET", f"{C}/messages?after={INT64_MAX + 1}", 400, "bad_request"),
    "before beyond uint64": Case("GET", f"{C}/messages?before={10**30}", 400, "bad_request"),
    "negative before": Case("GET", f"{C}/messages?before=-1", 400, "bad_request"),
    "limit 0": Case("GET", f"{C}/messages?limit=0", 400, "bad_request"),
    "limit 101": Case("GET", f"{C}/messages?limit=101", 400, "bad_request"),
    "before not a number": Case("GET", f"{C}/messages?before=abc", 400, "bad_request"),
    "members limit 0": Case("GET", f"{M}?limit=0", 400, "bad_request"),
    # User ids: NUL and other control characters break the domain rule (the schema cannot say it).
    "NUL in members cursor": Case("GET", f"{M}?after=a%00b", 422, "validation_failed"),
    "NUL in presence ids": Case("GET", "/api/v1/presence?userIds=a%00b", 422, "validation_failed"),
    "NUL in role path": Case("PATCH", f"{M}/a%00b", 422, "validation_failed", {"role": "admin"}),
    "NUL in remove path": Case("DELETE", f"{M}/a%00b", 422, "validation_failed"),
    "NUL in reinstate path": Case("POST", f"{M}/a%00b/reinstate", 422, "validation_failed"),
    "C1 control in reinstate path": Case("POST", f"{M}/a%C2%85b/reinstate", 422, "validation_failed"),
    "NUL in channel member path": Case("DELETE", f"{C}/members/a%00b", 422, "validation_failed"),
    "NUL in channel member body": Case("POST", f"{C}/members", 422, "validation_failed", {"userId": NUL}),
    "padded user id in body": Case("POST", f"{C}/members", 422, "validation_failed", {"userId": " bob"}),
    "lone surrogate in body": Case(  # not valid JSON text (msgspec refuses it)
        "POST", f"{C}/members", 400, "bad_request", raw=b'{"userId": "a\\ud800b"}'
    ),
    "user id over 255 in path": Case("DELETE", f"{M}/{'x' * 256}", 400, "bad_request"),
    # Emails: control characters (NUL included) are not an address.
    "NUL in email": Case(
        "POST",
        f"{A}/{{tenant}}/users",
        422,
        "validation_failed",
        {"email": "a\u0000b@x.org", "displayName": "A"},
        as_admin=True,
    ),
    "DEL in email": Case(
        "POST",
        f"{A}/{{tenant}}/users",
        422,
        "validation_failed",
        {"email": "a\u007fb@x.org", "displayName": "A"},
        as_admin=True,
    ),
    "control char in admin email": Case(
        "POST",
        A,
        422,
        "validation_failed",
        {"name": "T", "adminEmail": "boss\u0001@x.org", "adminDisplayName": "B"},
        as_admin=True,
    ),
    # Media types: a JSON route refuses a body that says it is something else; none means JSON.
    "text/plain body": Case(
        "POST",
        "/api/v1/channels",
        415,
        "unsupported_media_type",
        raw=b'{"name": "a"}',
        content_type="text/plain",
    ),
    "form body": Case(
        "PATCH",
        C,
        415,
        "unsupported_media_type",
        raw=b"name=x",
        content_type="application/x-www-form-urlencoded",
    ),
    "not JSON": Case("POST", "/api/v1/channels", 400, "bad_request", raw=b"{name", content_type=None),
    "unknown field": Case("POST", "/api/v1/channels", 400, "bad_request", {"name": "a", "colour": "red"}),
}


async def _call(client: AsyncTestClient[Any], workspace: Workspace, channel: str, case: Case) -> Any:
    path = case.path.replace("{channel}", channel).replace("{tenant}", workspace.tenant_id)
    headers = bearer(ADMIN_TOKEN) if case.as_admin else workspace.owner
    content = (
        case.raw if case.raw is not None else None if case.body is None else json.dumps(case.body).encode()
    )
    if case.content_type is not None and content is not None:
        headers = {**headers, "Content-Type": case.content_type}
    return await client.request(case.method, path, content=content, headers=headers)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_bad_input_gets_a_documented_client_error(
    client: AsyncTestClient[Any], workspace: Workspace, name: str
) -> None:
    case = CASES[name]
    channel = await workspace.channel("general")
    response = await _call(client, workspace, channel, case)
    assert (response.status_code, response.json()["error"]["code"]) == (case.status, case.code), response.text
    assert set(response.json()) == {"error"}
    assert {"code", "message"} <= set(response.json()["error"]) <= {"code", "message", "details"}


@pytest.mark.parametrize(
    ("content_type", "status"),
    [(None, 201), ("application/json; charset=utf-8", 201), ("APPLICATION/JSON", 201)],
)
async def test_json_bodies_without_or_with_a_json_content_type_are_accepted(
    client: AsyncTestClient[Any], workspace: Workspace, content_type: str | None, status: int
) -> None:
    headers = {**workspace.owner, **({"Content-Type": content_type} if content_type else {})}
    response = await client.post("/api/v1/channels", content=b'{"name": "general"}', headers=headers)
    assert response.status_code == status, response.text


async def test_a_token_whose_sub_holds_nul_is_refused(
    client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    token = jwt.encode({"sub": NUL, "tenant_id": workspace.tenant_id, "exp": 2**31}, TEST_JWT_SECRET)
    response = await client.get("/api/v1/users/me", headers=bearer(token))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthenticated")


async def test_the_store_turns_values_postgresql_refuses_into_validation_errors_only(
    stack_urls: StackUrls,
) -> None:
    # Past every validation rule, straight at the adapter: a backstop, precise about what it catches.
    pool = await asyncpg.create_pool(stack_urls.database_url, min_size=1, max_size=2)
    assert pool is not None
    store = PostgresStore(pool)
    try:
        with pytest.raises(ValidationFailed):  # NUL: PostgreSQL's 22021
            async with store.read() as tx:
                await tx.members.state(uuid.uuid4(), NUL)
        with pytest.raises(ValidationFailed):  # beyond int64: asyncpg refuses to encode it
            async with store.read() as tx:
                await tx.messages.page(uuid.uuid4(), before=INT64_MAX + 1, after=None, limit=1, viewer="x")
        with pytest.raises(ValidationFailed):
            async with store.transaction() as tx:
                await tx.users.ensure(User(NUL, "x", None))
        with pytest.raises(asyncpg.DivisionByZeroError):  # a bug in our SQL stays a bug (500)
            async with store.read() as tx:
                await tx.members._c.fetchval("SELECT 1 / 0")
    finally:
        await pool.close()
