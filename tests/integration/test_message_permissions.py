"""Who may change a message, through every route and frame: the author, a moderator, a member, a
non-member of a private channel, another tenant. Refusals have codes and leak nothing; STOMP
subscribers (EchoPulse) see messages only."""

from __future__ import annotations

import urllib.parse
import uuid
from typing import Any

from litestar.testing import AsyncTestClient

from echonats.settings import Settings
from tests.integration.api import Workspace, bearer, create_workspace
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import serve_gateway, ws_client
from tests.integration.test_stomp import stomp_py

THUMBS = urllib.parse.quote("👍")


async def _call(ws: Workspace, method: str, url: str, user: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    response = await ws.client.request(method, url, headers=ws.as_user(user), **kw)
    return response.status_code, response.json() if response.content else {}


def _routes(channel: str, message: int) -> list[tuple[str, str, dict[str, Any]]]:
    base = f"/api/v1/channels/{channel}/messages/{message}"
    return [
        ("GET", base, {}),
        ("PATCH", base, {"json": {"body": "x"}}),
        ("DELETE", base, {}),
        ("PUT", f"{base}/reactions/{THUMBS}", {}),
        ("DELETE", f"{base}/reactions/{THUMBS}", {}),
        ("PUT", f"{base}/pin", {}),
        ("DELETE", f"{base}/pin", {}),
        ("GET", f"{base}/thread", {}),
        ("GET", f"/api/v1/channels/{channel}/pins", {}),
    ]


async def _setup(ws: Workspace) -> tuple[str, str, int, int, int]:
    for user in ("ann", "bob", "carol"):
        await ws.client.get("/api/v1/users/me", headers=ws.as_user(user))  # provisioned
    general = await ws.channel("general")
    secret = await ws.channel("secret", private=True, by="ann")  # ann owns it
    added = await ws.client.post(
        f"/api/v1/channels/{secret}/members", json={"userId": "carol"}, headers=ws.as_user("ann")
    )
    assert added.status_code in (200, 201, 204), added.text
    by_ann = await ws.send(general, "ann's", by="ann")
    by_bob = await ws.send(general, "bob's", by="bob")
    in_secret = await ws.send(secret, "psst", by="ann")
    return general, secret, by_ann, by_bob, in_secret


async def test_the_author_edits_moderators_delete_members_react_and_pin(workspace: Workspace) -> None:
    general, secret, by_ann, by_bob, in_secret = await _setup(workspace)
    base = f"/api/v1/channels/{general}/messages"
    for user, expected in (("bob", 403), (workspace.owner_id, 403), ("ann", 200)):  # the author only
        status, body = await _call(workspace, "PATCH", f"{base}/{by_ann}", user, json={"body": "edited"})
        assert status == expected, (user, body)
    status, body = await _call(workspace, "DELETE", f"{base}/{by_bob}", "ann")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    for method, url, kw in _routes(general, by_bob)[3:]:  # reactions, pins, thread, pins list
        status, body = await _call(workspace, method, url, "ann", **kw)
        assert status == 200, (method, url, body)
    status, body = await _call(workspace, "DELETE", f"{base}/{by_bob}", workspace.owner_id)  # workspace owner
    assert (status, body["messageId"]) == (200, by_bob)
    assert isinstance(body["eventId"], int)
    status, again = await _call(workspace, "DELETE", f"{base}/{by_bob}", "bob")  # already deleted
    assert (status, again["eventId"]) == (200, None)
    status, body = await _call(workspace, "PUT", f"{base}/{by_bob}/reactions/{THUMBS}", "ann")
    assert (status, body["error"]["code"]) == (409, "message_deleted")
    status, body = await _call(workspace, "PUT", f"{base}/{by_ann}/reactions/nope", "ann")
    assert (status, body["error"]["code"]) == (422, "validation_failed")
    # In ann's private channel: carol (a member) may react but not delete ann's message; ann may.
    secret_base = f"/api/v1/channels/{secret}/messages/{in_secret}"
    assert (await _call(workspace, "PUT", f"{secret_base}/reactions/{THUMBS}", "carol"))[0] == 200
    assert (await _call(workspace, "DELETE", secret_base, "carol"))[0] == 403
    carols = await workspace.send(secret, "carol's", by="carol")
    assert (await _call(workspace, "DELETE", f"/api/v1/channels/{secret}/messages/{carols}", "ann"))[0] == 200


async def test_outsiders_get_the_same_404_as_for_nothing_at_all(
    client: AsyncTestClient[Any], gateway_settings: Settings, workspace: Workspace
) -> None:
    general, secret, by_ann, _, in_secret = await _setup(workspace)
    other = await create_workspace(client, gateway_settings, ADMIN_TOKEN, name="Other")
    nowhere = [
        await _call(workspace, m, u, "bob", **kw) for m, u, kw in _routes(str(uuid.uuid4()), in_secret)
    ]
    assert {status for status, _ in nowhere} == {404}
    for outsider, as_user in ((workspace, "bob"), (other, other.owner_id)):
        answers = [await _call(outsider, m, u, as_user, **kw) for m, u, kw in _routes(secret, in_secret)]
        assert answers == nowhere  # same status, code and message: nothing tells the channel exists
    # Another tenant's owner, on a public channel of this tenant: not found either.
    assert {(await _call(other, m, u, other.owner_id, **kw))[0] for m, u, kw in _routes(general, by_ann)} == {
        404
    }
    # A message id of the private channel through a channel the caller can read: not found.
    status, _ = await _call(workspace, "PUT", f"/api/v1/channels/{general}/messages/{in_secret}/pin", "bob")
    assert status == 404
    listing = await client.get(
        f"/api/v1/channels/{secret}/messages/{in_secret}", headers=workspace.as_user("ann")
    )
    assert listing.json()["reactions"] == []  # bob's attempts left no trace


async def test_change_frames_follow_the_same_rules(gateway_settings: Settings, workspace: Workspace) -> None:
    general, secret, by_ann, by_bob, in_secret = await _setup(workspace)
    async with serve_gateway(gateway_settings) as base, ws_client(base, workspace.token("bob")) as bob:
        frames = [
            {"type": "edit", "channelId": secret, "messageId": in_secret, "body": "x", "nonce": "1"},
            {"type": "delete", "channelId": secret, "messageId": in_secret, "nonce": "2"},
            {"type": "react", "channelId": secret, "messageId": in_secret, "emoji": "👍", "nonce": "3"},
            {"type": "unreact", "channelId": secret, "messageId": in_secret, "emoji": "👍", "nonce": "4"},
            {"type": "edit", "channelId": general, "messageId": by_ann, "body": "x", "nonce": "5"},
            {"type": "delete", "channelId": general, "messageId": by_ann, "nonce": "6"},
            {"type": "react", "channelId": general, "messageId": by_ann, "emoji": "no", "nonce": "7"},
            {"type": "react", "channelId": general, "messageId": by_ann, "emoji": "👍", "nonce": "8"},
            {"type": "react", "channelId": general, "messageId": by_ann, "emoji": "👍", "nonce": "9"},
            {"type": "delete", "channelId": general, "messageId": by_bob, "nonce": "10"},
        ]
        for frame in frames:
            await bob.send(**frame)
        await bob.wait(
            lambda: len(bob.of_type("ack")) + len(bob.of_type("error")) >= len(frames), what="answers"
        )
        answers = [
            (f["ref"], f["code"]) if f["type"] == "error" else (f["nonce"], "ack", f.get("unchanged", False))
            for f in bob.frames
            if f["type"] in ("ack", "error")
        ]
    assert answers == [
        ("1", "not_found"),
        ("2", "not_found"),
        ("3", "not_found"),
        ("4", "not_found"),
        ("5", "forbidden"),
        ("6", "forbidden"),
        ("7", "validation_failed"),
        ("8", "ack", False),
        ("9", "ack", True),  # already reacted: nothing logged
        ("10", "ack", False),
    ]


async def test_stomp_subscribers_get_messages_only(gateway_settings: Settings, workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    async with (
        serve_gateway(gateway_settings) as base,
        stomp_py(base, workspace.token("ann", "Ann")) as (conn, ann),
    ):
        conn.subscribe(f"/channels/{channel}", id="s-1", headers={"receipt": "r-sub"})
        await ann.receipt("r-sub")
        root = await workspace.send(channel, "root", by="ann")
        headers = workspace.as_user("ann")
        url = f"/api/v1/channels/{channel}/messages"
        await workspace.client.patch(f"{url}/{root}", json={"body": "edited"}, headers=headers)
        await workspace.client.put(f"{url}/{root}/reactions/{THUMBS}", headers=headers)
        await workspace.client.put(f"{url}/{root}/pin", headers=headers)
        await workspace.client.post(url, json={"body": "thread only", "threadId": root}, headers=headers)
        await workspace.client.post(
            url, json={"body": "also", "threadId": root, "alsoToChannel": True}, headers=headers
        )
        await workspace.client.delete(f"{url}/{root}", headers=headers)
        last = await workspace.send(channel, "last", by="ann")
        await ann.wait(
            lambda: any(f.headers["message-id"] == str(last) for f in ann.of("message")), "the last"
        )
    bodies = [f.body for f in ann.of("message")]
    assert len(bodies) == 3, bodies  # root, the reply also sent to the channel, last
    assert not ann.of("error")


async def test_changes_spend_the_senders_rate_budget(
    client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    channel = await workspace.channel("general")
    target = await workspace.send(channel, "popular")
    patched = await client.patch(
        f"/api/v1/admin/tenants/{workspace.tenant_id}",
        json={"maxMessagesPerSecond": 3},
        headers=bearer(ADMIN_TOKEN),
    )
    assert patched.status_code == 200
    statuses = []
    for i in range(12):
        response = await client.put(
            f"/api/v1/channels/{channel}/messages/{target}/reactions/:e{i}:", headers=workspace.owner
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "rate_limited"
    assert 200 in statuses
    assert 429 in statuses
