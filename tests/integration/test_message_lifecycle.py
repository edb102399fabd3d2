"""Edits, deletions, reactions, replies and pins on the real stack: live on two gateways in one
order, replayed with ``since`` to the same state, and the same state in history with the persist
worker stopped and after it ran (each change applied once)."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from echonats.adapters.nats.message_log import JetStreamMessageLog
from echonats.adapters.postgres.persist_sink import PostgresPersistSink
from echonats.bootstrap.resources import open_resources
from echonats.model.errors import TargetMissing
from echonats.settings import Settings
from tests.integration.api import Workspace, running_persist_worker, wait_for
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import Client, HttpTenant, serve_gateway, tenant_gateway, ws_client
from tests.integration.test_processes import (
    _sigkill,
    create_tenant,
    gateways,
    wait_worker_started,
    worker_process,
)

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

                async def all_stored() -> bool:  # every message, and the last entry (a deletion)
                    query = "SELECT count(*), count(deleted_at) FROM messages WHERE channel_id = $1"
                    row = await db.fetchrow(query, uuid.UUID(channel))
                    deleted = sum(1 for s in live.values() if s.deleted)
                    return row is not None and (row[0], row[1]) == (len(expected), deleted)

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


async def test_a_worker_killed_mid_batch_applies_every_change_once(
    env: dict[str, str], stack_urls: Any
) -> None:
    """Reply counts are increments and reactions are upserts: a batch applied twice (the killed
    worker's unacked batch comes back to the next one) must still count each change once."""
    reactors, messages, replies, deleted_replies = 16, 30, 60, 10
    assert stack_urls.nats_url
    assert stack_urls.database_url
    db = await asyncpg.connect(stack_urls.database_url)
    try:
        async with gateways(env, 1) as [(_, base)], httpx.AsyncClient(base_url=base, timeout=30) as http:
            tenant = await create_tenant(http, env)
            channel = await tenant.channel("busy")
            url = f"/api/v1/channels/{channel}/messages"
            with worker_process(env) as first:
                await wait_worker_started(first, stack_urls.nats_url)
                ids = [await tenant.send(channel, f"m{i}") for i in range(messages)]
                root = ids[0]

                async def call(method: str, path: str, user: str | None = None, **kw: Any) -> Any:
                    response = await http.request(method, path, headers=tenant.as_user(user), **kw)
                    assert response.status_code in (200, 201), response.text
                    return response.json()

                async def react_all(user: str) -> None:
                    for message in ids:
                        await call("PUT", f"{url}/{message}/reactions/{urllib.parse.quote('👍')}", user)

                async def reply_all(user: str, count: int) -> list[int]:
                    return [
                        (await call("POST", url, user, json={"body": f"{user} {i}", "threadId": root}))["id"]
                        for i in range(count)
                    ]

                work = asyncio.gather(
                    *(react_all(f"r{u}") for u in range(reactors)),
                    reply_all("alice", replies // 2),
                    reply_all("bob", replies // 2),
                    *(call("PATCH", f"{url}/{m}", json={"body": f"edited {m}"}) for m in ids),
                    *(call("PUT", f"{url}/{m}/pin") for m in ids[:10]),
                )
                try:

                    async def a_third_applied() -> bool:
                        if work.done():
                            work.result()
                        rows = await db.fetchval("SELECT count(*) FROM message_reactions")
                        return rows >= reactors * messages // 6

                    await wait_for(
                        a_third_applied, timeout_s=60, what="a third of the reactions in PostgreSQL"
                    )
                    _sigkill(first)
                    at_kill = await db.fetchval("SELECT count(*) FROM message_reactions")
                    assert at_kill < reactors * messages, "every reaction was stored before the kill"
                    with worker_process(env) as second:
                        results = await work
                        alices, bobs = results[reactors], results[reactors + 1]
                        for reply in (alices + bobs)[:deleted_replies]:
                            await call("DELETE", f"{url}/{reply}")

                        async def all_applied() -> bool:
                            assert second.poll() is None, f"worker exited with {second.returncode}"
                            count = await db.fetchval("SELECT reply_count FROM messages WHERE id = $1", root)
                            deleted = await db.fetchval(
                                "SELECT count(*) FROM messages WHERE deleted_at IS NOT NULL"
                            )
                            reactions = await db.fetchval(
                                "SELECT count(*) FROM message_reactions WHERE added"
                            )
                            return (count, deleted, reactions) == (
                                replies - deleted_replies,
                                deleted_replies,
                                reactors * messages,
                            )

                        # A batch the killed worker fetched but never acked comes back after ack_wait.
                        await wait_for(all_applied, timeout_s=60, what="every change in PostgreSQL")
                finally:
                    work.cancel()
                    await asyncio.gather(work, return_exceptions=True)
        rows = await db.fetch(
            "SELECT id, body, pinned_at IS NOT NULL AS pinned FROM messages WHERE thread_id IS NULL"
        )
        assert {r["id"]: r["body"] for r in rows} == {m: f"edited {m}" for m in ids}
        assert {r["id"] for r in rows if r["pinned"]} == set(ids[:10])
        per_message = await db.fetch(
            "SELECT message_id, count(*) AS n FROM message_reactions WHERE added GROUP BY message_id"
        )
        assert {r["message_id"]: r["n"] for r in per_message} == dict.fromkeys(ids, reactors)
        assert await db.fetchval("SELECT count(*) FROM messages WHERE thread_id = $1", root) == replies
    finally:
        await db.close()


async def _snapshot(db: asyncpg.Connection[asyncpg.Record]) -> tuple[list[Any], list[Any]]:
    rows = await db.fetch(
        # What readers see (the marks are bookkeeping: a tombstone's differ by the order applied).
        "SELECT id, body, thread_id, edited_at, deleted_at, reply_count, last_reply_at, pinned_at"
        " FROM messages ORDER BY id"
    )
    reactions = await db.fetch("SELECT * FROM message_reactions ORDER BY message_id, emoji, user_id")
    return [tuple(r) for r in rows], [tuple(r) for r in reactions]


async def test_the_sink_applies_a_replayed_or_reordered_batch_to_the_same_state(
    gateway_settings: Settings, workspace: Workspace, stack_urls: Any
) -> None:
    """What a SIGKILL between commit and ack does (the batch comes again), and what two workers
    applying neighbouring batches do (later changes first), made deterministic: the same entries
    written twice, and written in reverse chunks, give the state of one in-order write."""
    channel = await workspace.channel("general")
    url, thumbs = f"/api/v1/channels/{channel}/messages", urllib.parse.quote("👍")
    ann = workspace.as_user("ann")
    root = await workspace.send(channel, "root", by="ann")
    replies = [
        (await workspace.client.post(url, json={"body": f"r{i}", "threadId": root}, headers=ann)).json()["id"]
        for i in range(4)
    ]
    steps = [
        ("PATCH", f"{url}/{root}", {"json": {"body": "edited"}}),
        ("PUT", f"{url}/{root}/reactions/{thumbs}", {}),
        ("PUT", f"{url}/{root}/pin", {}),
        ("DELETE", f"{url}/{root}/reactions/{thumbs}", {}),
        ("PUT", f"{url}/{replies[0]}/reactions/:x:", {}),
        ("DELETE", f"{url}/{replies[1]}", {}),
        ("PATCH", f"{url}/{replies[2]}", {"json": {"body": "r2 edited"}}),
        ("DELETE", f"{url}/{replies[2]}", {}),
        ("PUT", f"{url}/{root}/reactions/{thumbs}", {}),
    ]
    for method, path, kw in steps:
        response = await workspace.client.request(method, path, headers=ann, **kw)
        assert response.status_code == 200, response.text
    async with open_resources(gateway_settings, name="sink-test") as resources:
        log = JetStreamMessageLog(resources.nats)
        entries, more = await log.read_channel(
            uuid.UUID(workspace.tenant_id), uuid.UUID(channel), start=1, limit=1000
        )
        assert not more
        sink = PostgresPersistSink(resources.pg)
        assert stack_urls.database_url
        db = await asyncpg.connect(stack_urls.database_url)
        try:
            await sink.write(entries)
            in_order = await _snapshot(db)
            assert in_order[0][0][5] == 2  # the root: four replies, two deleted
            await sink.write(entries)  # the same batch again
            assert await _snapshot(db) == in_order
            await db.execute("TRUNCATE messages, message_reactions")
            chunks = [entries[i : i + 3] for i in range(0, len(entries), 3)][::-1]
            while chunks:  # later chunks first; one whose messages are missing waits, as the worker does
                pending = []
                for chunk in chunks:
                    try:
                        await sink.write(chunk)
                    except TargetMissing:
                        pending.append(chunk)
                assert len(pending) < len(chunks), "no chunk could be applied"
                chunks = pending
            reordered = await _snapshot(db)
            assert reordered[1] == in_order[1]
            for got, want in zip(reordered[0], in_order[0], strict=True):
                assert got == want
        finally:
            await db.close()
