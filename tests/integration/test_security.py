"""Security: the REST API fuzzed against its own OpenAPI schema, tenant isolation on the WebSocket,
and one flooding client that must not starve the others.

Schema fuzzing: schemathesis (v4 Python API) against a real uvicorn gateway over HTTP, schema-valid
and schema-violating requests for every operation; checks ``not_a_server_error`` (no 5xx),
``status_code_conformance`` and ``response_schema_conformance``, plus ours for invalid credentials.
Hypothesis runs derandomized, bounded examples per operation, no shrinking (failures show the raw
example and a curl command).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.settings import Settings
from tests.integration.api import Workspace, bearer, create_workspace
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import Client, serve_gateway, ws_client

VALID_EXAMPLES = 25  # per operation, with a valid token (positive and negative data)
INVALID_EXAMPLES = 12  # per operation, with one of the invalid credentials


def status_documented_except_413(ctx: Any, response: Any, case: Any) -> bool | None:
    """``status_code_conformance`` (413 is documented on every route with a body)."""
    return status_code_conformance(ctx, response, case)


CHECKS = [not_a_server_error, status_documented_except_413, response_schema_conformance]


def _text(max_size: int, min_size: int = 1) -> st.SearchStrategy[str]:
    """Any letters, digits, punctuation, symbols and spaces (no control characters)."""
    chars = st.characters(categories=("L", "N", "P", "S", "Zs"))
    return st.text(chars, min_size=min_size, max_size=max_size).filter(lambda t: len(t.strip()) >= min_size)


# Bodies the server accepts (the schema's bounds are looser than the domain rules), so created
# resources and their 201 bodies get checked too, not only refusals.
_dict, _limit, _email, _name = st.fixed_dictionaries, st.integers(1000, 10**6), st.emails(), _text(100)
_A, _C, _body = "/api/v1/admin/tenants", "/api/v1/channels", _text(4000) | st.just("a\r\nb")
ACCEPTABLE_BODIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    f"POST {_A}": _dict({"name": _name, "adminEmail": _email, "adminDisplayName": _name}),
    f"POST {_A}/{{tenant_id}}/users": _dict({"email": _email, "displayName": _name}),
    f"PATCH {_A}/{{tenant_id}}": _dict({}, optional={"maxChannels": _limit, "maxMessagesPerSecond": _limit}),
    f"POST {_C}": _dict({"name": _text(80), "isPrivate": st.booleans()}, optional={"topic": _text(250, 0)}),
    f"PATCH {_C}/{{channel_id}}": _dict({}, optional={"topic": _text(250, 0)}),
    f"POST {_C}/{{channel_id}}/messages": _dict({"body": _body}, optional={"nonce": _text(64)}),
    f"POST {_C}/{{channel_id}}/members": st.just({"userId": "bob"}),
    "PATCH /api/v1/members/{user_id}": _dict({"role": st.sampled_from(["member", "admin"])}),
}


@pytest.fixture
async def http_base(gateway_settings: Settings) -> AsyncIterator[str]:
    async with serve_gateway(gateway_settings) as ws_base:
        yield ws_base.replace("ws://", "http://", 1)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _invalid_credentials(workspace: Workspace) -> dict[str, dict[str, str]]:
    auth, now = workspace.settings.auth, int(time.time())
    claims = {"sub": "mallory", "tenant_id": workspace.tenant_id, "iat": now, "exp": now + 600}
    expired = mint_dev_token(auth, tenant_id=workspace.tenant_id, user_id="mallory", ttl_s=-120)
    return {
        "no header": {},
        "garbage": bearer("garbage"),
        "basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "wrong secret": bearer(jwt.encode(claims, "x" * 40, algorithm="HS256")),
        "alg none": bearer(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."),
        "tampered": bearer(workspace.token("mallory")[:-4] + "AAAA"),
        "expired": bearer(expired),
        "admin token prefix": bearer(ADMIN_TOKEN[:-1]),
        "unknown tenant": bearer(mint_dev_token(auth, tenant_id=str(uuid.uuid4()), user_id="m")),  # 403
    }


def _operations(http_base: str) -> list[Any]:
    """Every operation of the gateway's OpenAPI document, DELETEs last (keeping known ids alive)."""
    schema = schemathesis.openapi.from_url(f"{http_base}/schema/openapi.json", timeout=15)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    return sorted(operations, key=lambda op: op.method.upper() == "DELETE")


def _with_body(op: Any, path_parameters: dict[str, str]) -> Callable[[Any], Any]:
    return lambda body: op.Case(path_parameters=path_parameters, body=body, media_type="application/json")


Headers = Callable[[str], dict[str, str]]
Check = Callable[[Any, Any, str], None]
HYPOTHESIS: dict[str, Any] = {"derandomize": True, "database": None, "deadline": None}
HYPOTHESIS["suppress_health_check"] = list(HealthCheck)


def _fuzz_operation(
    cases: Any, headers_for: Headers, base_url: str, examples: int, check: Check
) -> str | None:
    """Send ``examples`` generated requests of one operation; the first failure as text, or None."""

    @settings(max_examples=examples, phases=[Phase.explicit, Phase.generate], **HYPOTHESIS)
    @given(drawn=cases)
    def run(drawn: tuple[Any, str]) -> None:
        case, credential = drawn
        headers = headers_for(credential)
        response = case.call(base_url=base_url, headers=headers, timeout=15)
        case.validate_response(response, checks=CHECKS, headers=headers)
        check(case, response, credential)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises a BaseExceptionGroup
        return f"{type(exc).__name__}: {exc}"[:1500]
    return None


# Read before signing in: how the web client signs in (says nothing about any tenant).
PUBLIC_API_ROUTES = {"/api/v1/web-config"}


# Hypothesis draws in a worker thread while the event loop runs on; uvicorn's keepalive pings use the
# global `random`, which hypothesis would mistake for a strategy using it. Generation stays seeded.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_rest_api_conforms_to_its_schema_with_valid_and_invalid_tokens(
    http_base: str, workspace: Workspace, client: AsyncTestClient[Any]
) -> None:
    # Something real behind the ids a third of the requests use, so 2xx bodies get checked too.
    channel = await workspace.channel("general")
    await workspace.send(channel, "hello")
    await client.get("/api/v1/users/me", headers=workspace.as_user("bob"))
    known = {
        "channel_id": channel,
        "user_id": "bob",
        "tenant_id": workspace.tenant_id,
        "server_id": workspace.tenant_id,  # the EchoPulse routes' name for it
        "channel_uuid": channel,
    }
    invalid = _invalid_credentials(workspace)
    statuses: dict[str, list[int]] = {"valid": [], "invalid": []}

    def valid_headers(kind: str) -> dict[str, str]:
        # The workspace owner: a member with every tenant permission; the admin token for /admin.
        return bearer(ADMIN_TOKEN) if kind == "admin" else workspace.owner

    def record(case: Any, response: Any, credential: str) -> None:
        statuses["valid"].append(response.status_code)

    def refused(case: Any, response: Any, credential: str) -> None:
        statuses["invalid"].append(response.status_code)
        path: str = case.operation.path
        if not path.startswith("/api/") or path in PUBLIC_API_ROUTES:  # /health, /ready, /metrics too
            assert response.status_code == 200, (path, response.status_code)
            return
        # A 2xx, 404 or 5xx never. Litestar validates a body before the auth dependency runs, so a
        # malformed body gets its 400 first (revealing nothing the public schema does not).
        expected = 403 if credential == "unknown tenant" else 401
        assert response.status_code in (400, expected), (credential, path, response.text)
        assert response.json()["error"]["code"] in ("bad_request", "unauthenticated", "forbidden")

    def work() -> tuple[list[str], int]:
        operations = _operations(http_base)
        failures: list[str] = []
        for op in operations:
            kind = "admin" if op.path.startswith("/api/v1/admin") else "member"
            fixed = {name: value for name, value in known.items() if f"{{{name}}}" in op.path}
            generated = [op.as_strategy(), op.as_strategy(generation_mode=GenerationMode.NEGATIVE)]
            if fixed:
                generated.append(op.as_strategy(path_parameters=fixed))
            if op.label in ACCEPTABLE_BODIES:
                generated.append(ACCEPTABLE_BODIES[op.label].map(_with_body(op, fixed)))
            valid = st.tuples(st.one_of(generated), st.just(kind))
            bad = st.tuples(op.as_strategy(), st.sampled_from(sorted(invalid)))
            for failure in (
                _fuzz_operation(valid, valid_headers, http_base, VALID_EXAMPLES, record),
                _fuzz_operation(bad, invalid.get, http_base, INVALID_EXAMPLES, refused),  # type: ignore[arg-type]
            ):
                failures += [f"{op.label}: {failure}"] if failure else []
        return failures, len(operations)

    failures, operations = await asyncio.to_thread(work)
    assert not failures, "\n\n".join(failures)
    assert operations >= 26
    # The run reached past authentication and routing: successes and refusals of both kinds.
    assert {200, 201, 204} <= set(statuses["valid"]), sorted(set(statuses["valid"]))
    assert {400, 404, 409, 422} <= set(statuses["valid"]), sorted(set(statuses["valid"]))
    assert {401, 403} <= set(statuses["invalid"]), sorted(set(statuses["invalid"]))
    assert len(statuses["valid"]) >= operations * VALID_EXAMPLES // 2


async def test_oversized_bodies_get_a_documented_status(http_base: str, workspace: Workspace) -> None:
    ids = {
        "channel_id": str(uuid.uuid4()),
        "user_id": "bob",
        "tenant_id": workspace.tenant_id,
        "server_id": workspace.tenant_id,
        "channel_uuid": str(uuid.uuid4()),
        "message_id": 1,
    }

    def work() -> dict[str, tuple[int, tuple[str, ...]]]:
        answers = {}
        for op in _operations(http_base):
            if len(op.body):
                headers = bearer(ADMIN_TOKEN) if op.path.startswith("/api/v1/admin") else workspace.owner
                fixed = {name: value for name, value in ids.items() if f"{{{name}}}" in op.path}
                case = _with_body(op, fixed)({"name": "x" * 70_000})
                response = case.call(base_url=http_base, headers=headers, timeout=15)
                answers[op.label] = (response.status_code, op.responses.status_codes)
        return answers

    answers = await asyncio.to_thread(work)
    if len(answers) < 8 or {status for status, _ in answers.values()} != {413}:
        pytest.fail(f"every operation with a body should answer 413: {answers}")  # not the known bug
    assert [label for label, (status, documented) in answers.items() if str(status) not in documented] == []


async def test_deeply_nested_json_bodies_are_a_client_error(
    client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    channel = await workspace.channel("general")
    json_header = {"Content-Type": "application/json"}
    for url in ("/api/v1/channels", f"/api/v1/channels/{channel}/messages", "/api/v1/admin/tenants"):
        for headers in ({**workspace.owner, **json_header}, json_header):
            response = await client.post(url, content="[" * 5000 + "]" * 5000, headers=headers)
            assert response.status_code in (400, 401), (url, response.status_code, response.text)


async def _barrier(ws: Client) -> None:
    """Everything the gateway queued for ``ws`` before this point has arrived."""
    pongs = len(ws.of_type("pong"))
    await ws.send(type="ping")
    await ws.wait_for_type("pong", count=pongs + 1)


async def test_websocket_frames_cannot_reach_another_tenant(
    gateway_settings: Settings, client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    other = await create_workspace(client, gateway_settings, ADMIN_TOKEN, name="Other Corp")
    public = await other.channel("their-public")
    private = await other.channel("their-private", private=True)
    for user in ("bob-b", "carol-b"):
        await client.get("/api/v1/users/me", headers=other.as_user(user))
        added = await client.post(
            f"/api/v1/channels/{private}/members", json={"userId": user}, headers=other.owner
        )
        assert added.status_code == 204, added.text
    nowhere = str(uuid.uuid4())
    # The attacker is a member of A whose user id is B's owner's; tenant hints in the URL are ignored.
    attacker_token = workspace.token(other.owner_id, "Impostor") + f"&tenantId={other.tenant_id}"
    async with serve_gateway(gateway_settings) as base, ws_client(base, attacker_token) as attacker:
        await _barrier(attacker)
        async with ws_client(base, other.token("bob-b", "Bob B")) as bob, \
                ws_client(base, other.token("carol-b", "Carol B")) as carol:  # fmt: skip
            for channel in (public, private):
                await bob.send(type="subscribe", channelId=channel)
            await bob.wait_for_type("subscribed", count=2)
            await bob.wait(lambda: any(f.get("userId") == "carol-b" for f in bob.of_type("presence")))

            # Every frame type with B's ids answers exactly as for an id that exists nowhere.
            templates: list[dict[str, Any]] = [{"type": "subscribe"}, {"type": "subscribe", "since": 0}]
            templates += [
                {"type": "typing"},
                {"type": "send", "body": "A's", "nonce": "n"},
                {"type": "unsubscribe"},
            ]
            probes = [(t, c) for c in (public, private, nowhere) for t in templates]

            def answered() -> list[dict[str, Any]]:
                return [f for f in attacker.frames if f["type"] not in ("presence", "pong")]

            for group in range(3):  # one channel at a time: sends are answered asynchronously
                for template, channel in probes[group * len(templates) : (group + 1) * len(templates)]:
                    await attacker.send(**template, channelId=channel)
                await attacker.wait(
                    lambda g=group: len(answered()) == (g + 1) * len(templates), 10, "answers"
                )
            # No raw-subject API: NATS subjects, verbs and tenant fields are unknown and refused.
            b, live = f"echo.{other.tenant_id}", f"echo.{other.tenant_id}.ch.{public}.live"
            raw = [json.dumps(frame) for frame in (
                {"type": "subscribe", "subject": f"{b}.>"},
                {"type": "subscribe", "subject": live},
                {"type": "subscribe", "channelId": public, "tenantId": other.tenant_id},
                {"type": "subscribe", "channelId": live},
                {"type": "subscribe", "channelId": ">"},
                {"type": "sub", "subject": f"{b}.>"},
                {"type": "send", "channelId": public, "body": "x", "tenantId": other.tenant_id},
                {"type": "send", "channelId": public, "body": "x", "subject": f"{b}.ch.{public}.msg"},
                {"type": "typing", "channelId": public, "tenant": other.tenant_id},
            )] + [f"SUB {b}.> 1\r\n", f"PUB {b}.ch.{public}.msg 4\r\nhi!!\r\n"]  # fmt: skip
            for frame in raw:
                await attacker.send_raw(frame)
            await _barrier(attacker)
            answers = answered()
            assert len(answers) == len(probes) + len(raw), answers
            n = len(templates)
            # B's ids (and only them) replaced by a placeholder: the answers are identical.
            texts = [json.dumps(f).replace(public, "<id>").replace(private, "<id>") for f in answers]
            as_nowhere = sorted(a.replace(nowhere, "<id>") for a in texts[2 * n : 3 * n])
            assert sorted(texts[:n]) == sorted(texts[n : 2 * n]) == as_nowhere
            expected = [("error", "not_found")] * 4 + [("unsubscribed", None)]
            kinds = [(f["type"], f.get("code")) for f in answers[2 * n : 3 * n]]
            assert sorted(kinds, key=str) == sorted(expected, key=str)
            assert {(f["type"], f["code"]) for f in answers[3 * n :]} == {("error", "bad_request")}

            # B goes on: its own traffic arrives, the attacker's does not, and none of it reaches A.
            await other.send(public, "B public words")
            await other.send(private, "B private words")
            for channel in (public, private):
                await carol.send(type="typing", channelId=channel)
            await bob.wait_for_type("message", count=2)
            await bob.wait_for_type("typing_indicator", count=2)
            await _barrier(bob)
            await _barrier(attacker)

        assert [m["body"] for m in bob.of_type("message")] == ["B public words", "B private words"]
        assert {t["userId"] for t in bob.of_type("typing_indicator")} == {"carol-b"}
        assert len(bob.of_type("typing_indicator")) == 2
        assert {p["userId"] for p in bob.of_type("presence")} <= {"bob-b", "carol-b"}
        seen_by_attacker = json.dumps(attacker.frames)
        assert {f["type"] for f in attacker.frames} <= {"error", "unsubscribed", "presence", "pong"}
        for leak in ("bob-b", "carol-b", "B public words", "B private words", "their-", other.tenant_id):
            assert leak not in seen_by_attacker
    for channel, body in ((public, "B public words"), (private, "B private words")):
        history = await client.get(f"/api/v1/channels/{channel}/messages", headers=other.owner)
        assert [m["body"] for m in history.json()["items"]] == [body]


async def test_a_flooding_client_is_rate_limited_and_starves_nobody(
    gateway_settings: Settings, client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    rate, burst = 20, 20
    realtime = dataclasses.replace(
        gateway_settings.realtime, rate_user_per_second=rate, rate_user_burst=burst
    )
    limited = dataclasses.replace(gateway_settings, realtime=realtime)
    await workspace.set_limits(ADMIN_TOKEN, maxMessagesPerSecond=100_000)  # only the user limit bites
    channel = await workspace.channel("general")
    flood, steady_count = 400, 15  # the steady user stays within its own burst whatever the timing
    loop = asyncio.get_running_loop()
    async with serve_gateway(limited) as base, \
            ws_client(base, workspace.token("flooder")) as flooder, \
            ws_client(base, workspace.token("steady")) as steady, \
            ws_client(base, workspace.token("watcher")) as watcher:  # fmt: skip
        await watcher.send(type="subscribe", channelId=channel)
        await watcher.wait_for_type("subscribed")

        def answered() -> int:
            return len(flooder.of_type("ack")) + len(flooder.of_type("error"))

        async def flood_as_fast_as_possible() -> None:
            for i in range(flood):
                await flooder.send(type="send", channelId=channel, body=f"flood {i}", nonce=f"f{i}")

        async def send_steadily() -> None:
            for i in range(steady_count):
                # Spread over the flood: the next message once the flooder got more answers.
                await flooder.wait(lambda i=i: answered() >= i * flood // (steady_count + 5))
                await steady.send(type="send", channelId=channel, body=f"steady {i}", nonce=f"s{i}")
                await steady.wait(lambda i=i: len(steady.of_type("ack")) + len(steady.of_type("error")) > i)

        started = loop.time()
        await asyncio.gather(flood_as_fast_as_possible(), send_steadily())
        await flooder.wait(lambda: answered() >= flood, timeout_s=30)
        elapsed = loop.time() - started
        flood_acks, refusals = flooder.of_type("ack"), flooder.of_type("error")
        steady_acks = steady.of_type("ack")
        assert steady.of_type("error") == []
        assert [a["nonce"] for a in steady_acks] == [f"s{i}" for i in range(steady_count)]
        await watcher.wait_for_type("message", count=len(flood_acks) + steady_count)
        await _barrier(watcher)

    # The flooder: refused beyond its bucket, every refusal says so, and nothing refused is stored.
    assert len(flood_acks) + len(refusals) == flood
    assert burst <= len(flood_acks) <= burst + rate * elapsed + 2, (len(flood_acks), elapsed)
    assert refusals, "a flood of 400 frames must hit the limit"
    assert {(e["code"], e["retryAfterMs"] > 0) for e in refusals} == {("rate_limited", True)}
    assert {e["ref"] for e in refusals}.isdisjoint(a["nonce"] for a in flood_acks)
    # The steady sender: every message acknowledged and delivered to the watcher, in order.
    delivered = watcher.of_type("message")
    from_steady = [(m["payload"]["messageId"], m["body"]) for m in delivered if m["userId"] == "steady"]
    assert from_steady == [(a["messageId"], f"steady {i}") for i, a in enumerate(steady_acks)]
    ids = [m["payload"]["messageId"] for m in delivered]
    assert ids == sorted(ids)
    assert len(delivered) == len(flood_acks) + steady_count
    url = f"/api/v1/channels/{channel}/messages?limit=100"
    page = (await client.get(url, headers=workspace.owner)).json()
    assert not page["hasMore"]
    assert [m["id"] for m in page["items"][::-1]] == ids
    flood_nonces = sorted(a["nonce"] for a in flood_acks)
    assert sorted(m["nonce"] for m in page["items"] if m["senderId"] == "flooder") == flood_nonces
