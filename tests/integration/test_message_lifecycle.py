"""Edits, deletions, reactions, replies and pins on the real stack: live on two gateways in one
order, replayed with ``since`` to the same state, and the same state in history with the persist
worker stopped and after it ran (each change applied once)."""

from __future__ import annotations

import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from echonats.settings import Settings
from tests.integration.api import running_persist_worker, wait_for
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import Client, HttpTenant, serve_gateway, tenant_gateway, ws_client

CHANGE_FRAMES = {
    "message",
    "message_updated",
    "message_deleted",
    "reaction_added",
    "reaction_removed",
    "pin_added",
    "pin_removed",
    "thread_updated",
}


@dataclass
class Folded:
    """A message's state as a client folds it from frames (the README's rules)."""

    body: str
    thread_id: int | None
    deleted: bool = False
    edited: bool = False
    pinned: bool = False
    replies: int = 0
    reactions: dict[str, set[str]] = field(default_factory=dict)

    def view(self) -> tuple[Any, ...]:
        counts = {e: len(users) for e, users in sorted(self.reactions.items()) if users}
        return (self.body, self.deleted, self.edited, self.pinned, self.replies, counts, self.thread_id)


def fold(frames: list[dict[str, Any]], state: dict[int, Folded] | None = None) -> dict[int, Folded]:
    state = {} if state is None else state
    for f in frames:
        kind = f["type"]
        if kind == "message":
            state[f["payload"]["messageId"]] = Folded(f["body"], f["payload"].get("threadId"))
        elif kind == "thread_updated":
            if f["threadId"] in state:
                state[f["threadId"]].replies += f["replyCountDelta"]
        elif kind in CHANGE_FRAMES:
            target = state.get(f["messageId"])
            if target is None:
                continue
            if kind == "message_updated":
                target.body, target.edited = f["body"], True
            elif kind == "message_deleted":
                target.deleted, target.body, target.edited, target.pinned = True, "", False, False
                target.reactions = {}
            elif kind == "reaction_added":
                target.reactions.setdefault(f["emoji"], set()).add(f["userId"])
            elif kind == "reaction_removed":
                target.reactions.get(f["emoji"], set()).discard(f["userId"])
            elif kind in ("pin_added", "pin_removed"):
                target.pinned = kind == "pin_added"
    return state


def timeline(client: Client) -> list[dict[str, Any]]:
    return [f for f in client.frames if f["type"] in CHANGE_FRAMES]


def position(frame: dict[str, Any]) -> int:
    return int(frame["payload"]["messageId"] if frame["type"] == "message" else frame["id"])


async def rest(http: httpx.AsyncClient, method: str, url: str, user: HttpTenant, who: str, **kw: Any) -> Any:
    response = await http.request(method, url, headers=user.auth(who), **kw)
    assert response.status_code in (200, 201), f"{method} {url}: {response.status_code} {response.text}"
    return response.json()


async def history_state(tenant: HttpTenant, channel: str, viewer: str) -> dict[int, tuple[Any, ...]]:
    """Every message's state as REST shows it: the channel's listing and every thread."""
    out: dict[int, tuple[Any, ...]] = {}

    def view(m: dict[str, Any]) -> tuple[Any, ...]:
        counts = {r["emoji"]: r["count"] for r in m["reactions"]}
        edited = m["editedAt"] is not None
        return (m["body"], m["deleted"], edited, m["pinned"], m["replyCount"], counts, m["threadId"])

    page = await tenant.page(f"/api/v1/channels/{channel}/messages?limit=100")
    for m in page["items"]:
        out[m["id"]] = view(m)
        if m["threadId"] is None:
            thread = await tenant.page(f"/api/v1/channels/{channel}/messages/{m['id']}/thread?limit=100")
            assert view(thread["root"]) == out[m["id"]]
            for reply in thread["items"]:
                out[reply["id"]] = view(reply)
    return out


async def _mix(tenant: HttpTenant, channel: str, ws: Client) -> None:
    """Every kind of change, over REST and over the WebSocket, by two users."""
    http, base = tenant.http, f"/api/v1/channels/{channel}/messages"
    root = (await rest(http, "POST", base, tenant, "ann", json={"body": "root"}))["id"]
    plain = (await rest(http, "POST", base, tenant, "bob", json={"body": "plain"}))["id"]
    reply = (await rest(http, "POST", base, tenant, "bob", json={"body": "r1", "threadId": root}))["id"]
    await rest(
        http, "POST", base, tenant, "ann", json={"body": "r2", "threadId": root, "alsoToChannel": True}
    )
    await rest(http, "PATCH", f"{base}/{root}", tenant, "ann", json={"body": "root, edited"})
    thumbs = urllib.parse.quote("👍")
    await rest(http, "PUT", f"{base}/{root}/reactions/{thumbs}", tenant, "bob")
    await rest(http, "PUT", f"{base}/{plain}/reactions/:tada:", tenant, "ann")
    await rest(http, "PUT", f"{base}/{plain}/pin", tenant, "ann")
    await rest(http, "PUT", f"{base}/{root}/pin", tenant, "bob")
    await rest(http, "DELETE", f"{base}/{root}/pin", tenant, "bob")
    await rest(http, "DELETE", f"{base}/{reply}", tenant, "bob")  # a reply: its root counts one less
    acks = len(ws.of_type("ack"))
    await ws.send(type="react", channelId=channel, messageId=plain, emoji="🎉", nonce="w1")
    await ws.send(type="unreact", channelId=channel, messageId=plain, emoji=":tada:", nonce="w2")
    await ws.send(type="edit", channelId=channel, messageId=root, body="root, edited again", nonce="w3")
    await ws.send(type="send", channelId=channel, body="late", nonce="w4")
    await ws.wait(lambda: len(ws.of_type("ack")) + len(ws.of_type("error")) >= acks + 4, what="four answers")
    assert not ws.of_type("error"), ws.of_type("error")
    late = ws.of_type("ack")[-1]["messageId"]
    await ws.send(type="delete", channelId=channel, messageId=late, nonce="w5")
    await ws.wait(lambda: len(ws.of_type("ack")) >= acks + 5, what="the delete's ack")
    assert not ws.of_type("error"), ws.of_type("error")


async def test_changes_arrive_live_in_one_order_and_resume_to_the_same_state(
    gateway_settings: Settings, stack_urls: Any
) -> None:
    async with (
        tenant_gateway(gateway_settings, ADMIN_TOKEN) as (base_a, tenant, channel),
        serve_gateway(gateway_settings) as base_b,
    ):
        for user in ("ann", "bob", "carol"):
            join = await tenant.http.post(f"/api/v1/channels/{channel}/join", headers=tenant.auth(user))
            assert join.status_code in (200, 201, 204), join.text
        first = (
            await rest(
                tenant.http,
                "POST",
                f"/api/v1/channels/{channel}/messages",
                tenant,
                "ann",
                json={"body": "before"},
            )
        )["id"]
        async with (
            ws_client(base_a, tenant.token("ann")) as on_a,
            ws_client(base_b, tenant.token("bob")) as on_b,
            ws_client(base_b, tenant.token("carol")) as leaver,
        ):
            for client in (on_a, on_b, leaver):
                await client.send(type="subscribe", channelId=channel, since=first - 1)
                await client.wait(lambda c=client: bool(timeline(c)), what="the first message")
            await leaver.close()  # misses everything below
            await _mix(tenant, channel, on_a)
            expected_count = 19  # frames of _mix: 5 messages, 11 changes, 3 thread updates
            for client in (on_a, on_b):
                await client.wait(
                    lambda c=client: len(timeline(c)) >= expected_count + 1, what="the whole mix"
                )
            assert [(f["type"], position(f)) for f in timeline(on_a)] == [
                (f["type"], position(f)) for f in timeline(on_b)
            ]  # one order for every subscriber, on both gateways
            positions = [position(f) for f in timeline(on_a)]
            assert positions == sorted(positions)
            missed_from = position(timeline(leaver)[-1])
            async with ws_client(base_a, tenant.token("carol")) as back:
                await back.send(type="subscribe", channelId=channel, since=missed_from)
                await back.wait(lambda: len(timeline(back)) >= expected_count, what="the replay")
                replayed = timeline(back)
                assert [(f["type"], position(f)) for f in timeline(leaver) + replayed] == [
                    (f["type"], position(f)) for f in timeline(on_a)
                ]  # nothing missed, nothing twice
                resumed = fold(replayed, fold(timeline(leaver)))
            live = fold(timeline(on_a))
            assert {i: s.view() for i, s in resumed.items()} == {i: s.view() for i, s in live.items()}

        # History shows the same state with no persist worker running (everything in the log's tail)...
        expected = {i: s.view() for i, s in live.items()}
        assert await history_state(tenant, channel, "ann") == expected
        assert stack_urls.database_url
        db = await asyncpg.connect(stack_urls.database_url)
        try:
            assert (
                await db.fetchval("SELECT count(*) FROM messages WHERE channel_id = $1", uuid.UUID(channel))
                == 0
            )
            # ... and after the worker wrote it all, once.
            async with running_persist_worker(gateway_settings):

                async def all_stored() -> bool:
                    query = "SELECT count(*) FROM messages WHERE channel_id = $1"
                    return await db.fetchval(query, uuid.UUID(channel)) == len(expected)

                await wait_for(all_stored, timeout_s=30, what="every message in PostgreSQL")

                assert await history_state(tenant, channel, "ann") == expected  # part store, part tail
            row = await db.fetchrow(
                "SELECT count(*) AS n, count(DISTINCT id) AS d, sum(reply_count) AS replies FROM messages"
            )
            assert row is not None
            assert row["n"] == row["d"] == len(expected)
            assert row["replies"] == sum(s.replies for s in live.values())
            reactions = await db.fetchval("SELECT count(*) FROM message_reactions WHERE added")
            assert reactions == sum(len(u) for s in live.values() for u in s.reactions.values())
        finally:
            await db.close()
        assert await history_state(tenant, channel, "bob") == expected  # also once the tail is empty
