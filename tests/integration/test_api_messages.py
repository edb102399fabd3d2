from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from echonats.settings import Settings
from tests.integration.api import Workspace, running_persist_worker, wait_for


async def _history(
    client: AsyncTestClient[Any], ws: Workspace, channel: str, query: str = ""
) -> dict[str, Any]:
    response = await client.get(f"/api/v1/channels/{channel}/messages{query}", headers=ws.owner)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _all_ids_backwards(
    client: AsyncTestClient[Any], ws: Workspace, channel: str, limit: int
) -> list[int]:
    ids: list[int] = []
    page = await _history(client, ws, channel, f"?limit={limit}")
    ids.extend(m["id"] for m in page["items"])
    while page["hasMore"]:
        page = await _history(client, ws, channel, f"?limit={limit}&before={page['nextCursor']}")
        ids.extend(m["id"] for m in page["items"])
    return ids


async def _db_ids(settings: Settings, channel: str) -> list[int]:
    assert settings.postgres.url
    conn = await asyncpg.connect(settings.postgres.url)
    try:
        rows = await conn.fetch("SELECT id FROM messages WHERE channel_id = $1 ORDER BY id", channel)
    finally:
        await conn.close()
    return [r["id"] for r in rows]


async def test_send_returns_the_contract(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    response = await client.post(
        f"/api/v1/channels/{channel}/messages",
        json={"body": "  hi there \n", "nonce": "n-1"},
        headers=workspace.owner,
    )
    assert response.status_code == 201
    message = response.json()
    assert set(message) == {
        "id",
        "channelId",
        "senderId",
        "senderDisplayName",
        "body",
        "createdAt",
        "nonce",
        # the message's latest state (docs/decisions.md D46)
        "threadId",
        "alsoToChannel",
        "editedAt",
        "deleted",
        "replyCount",
        "lastReplyAt",
        "reactions",
        "pinned",
    }
    assert message["body"] == "hi there"
    assert message["channelId"] == channel
    assert message["senderId"] == workspace.owner_id
    assert message["senderDisplayName"] == "Owner"
    assert message["nonce"] == "n-1"
    assert isinstance(message["id"], int)


async def test_body_rules(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    url = f"/api/v1/channels/{channel}/messages"
    for body, status in (
        ("", 422),
        ("   \n ", 422),
        ("x" * 4001, 422),
        ("bell\x07", 422),
        ("x" * 4000, 201),
        ("multi\nline", 201),
    ):
        response = await client.post(url, json={"body": body}, headers=workspace.owner)
        assert response.status_code == status, (body[:20], response.text)
    assert (await client.post(url, json={"text": "wrong field"}, headers=workspace.owner)).status_code == 400
    assert (await client.post(url, json={"body": 42}, headers=workspace.owner)).status_code == 400
    ids = [m["body"][:5] for m in (await _history(client, workspace, channel))["items"]]
    assert ids == ["multi", "xxxxx"]  # nothing rejected was stored


async def test_nonce_dedupes_repeated_sends(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    ids = [await workspace.send(channel, "only once", nonce="retry-me") for _ in range(3)]
    assert len(set(ids)) == 1
    other = await workspace.send(channel, "only once", nonce="another")
    assert other != ids[0]
    history = await _history(client, workspace, channel)
    assert [m["id"] for m in history["items"]] == [other, ids[0]]


async def test_history_pages_without_gaps_or_duplicates_while_messages_arrive(
    client: AsyncTestClient[Any], workspace: Workspace, gateway_settings: Settings
) -> None:
    channel = await workspace.channel("busy")
    first = [await workspace.send(channel, f"m{i}") for i in range(25)]
    async with running_persist_worker(gateway_settings):
        await wait_for(lambda: _db_persisted(gateway_settings, channel, 25), what="first 25 persisted")
        # Page backwards while new messages keep arriving at the head.
        seen: list[int] = []
        page = await _history(client, workspace, channel, "?limit=7")
        seen.extend(m["id"] for m in page["items"])
        later: list[int] = []
        while page["hasMore"]:
            later.append(await workspace.send(channel, "late"))
            page = await _history(client, workspace, channel, f"?limit=7&before={page['nextCursor']}")
            seen.extend(m["id"] for m in page["items"])
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen))
    assert sorted(seen) == first  # every message that existed when paging began, once
    assert min(later) > max(first)


async def _db_persisted(settings: Settings, channel: str, count: int) -> bool:
    return len(await _db_ids(settings, channel)) >= count


async def test_after_cursor_pages_forward(client: AsyncTestClient[Any], workspace: Workspace) -> None:
    channel = await workspace.channel("forward")
    ids = [await workspace.send(channel, f"m{i}") for i in range(10)]
    page = await _history(client, workspace, channel, f"?after={ids[2]}&limit=4")
    assert [m["id"] for m in page["items"]] == [ids[6], ids[5], ids[4], ids[3]]  # newest first
    assert page["hasMore"] is True
    page = await _history(client, workspace, channel, f"?after={page['nextCursor']}&limit=4")
    assert [m["id"] for m in page["items"]] == [ids[9], ids[8], ids[7]]
    assert page["hasMore"] is False
    between = await _history(client, workspace, channel, f"?after={ids[1]}&before={ids[5]}")
    assert [m["id"] for m in between["items"]] == [ids[4], ids[3], ids[2]]
    for bad in ("?limit=0", "?limit=101", "?before=-1", "?after=abc"):
        response = await client.get(f"/api/v1/channels/{channel}/messages{bad}", headers=workspace.owner)
        assert response.status_code == 400, bad


async def test_read_your_writes_with_the_persist_worker_stopped(
    client: AsyncTestClient[Any], workspace: Workspace, gateway_settings: Settings
) -> None:
    channel = await workspace.channel("ryw")
    persisted = [await workspace.send(channel, f"old {i}") for i in range(5)]
    async with running_persist_worker(gateway_settings):
        await wait_for(lambda: _db_persisted(gateway_settings, channel, 5), what="persisted")
    # The worker is stopped now: these exist only in JetStream.
    fresh = [await workspace.send(channel, f"new {i}") for i in range(5)]
    assert await _db_ids(gateway_settings, channel) == persisted
    assert await _all_ids_backwards(client, workspace, channel, limit=3) == sorted(
        persisted + fresh, reverse=True
    )
    newest = await _history(client, workspace, channel, "?limit=1")
    assert newest["items"][0]["body"] == "new 4"
    assert newest["items"][0]["senderDisplayName"] == "Owner"


async def test_persist_worker_stores_every_message_exactly_once(
    client: AsyncTestClient[Any], workspace: Workspace, gateway_settings: Settings
) -> None:
    channel = await workspace.channel("durable")
    sent = await asyncio.gather(*(workspace.send(channel, f"m{i}") for i in range(60)))
    async with running_persist_worker(gateway_settings), running_persist_worker(gateway_settings):
        await wait_for(lambda: _db_persisted(gateway_settings, channel, 60), what="all 60 persisted")
    assert await _db_ids(gateway_settings, channel) == sorted(sent)
    # A second pass over the same stream (a replay) changes nothing.
    async with running_persist_worker(gateway_settings):
        more = await workspace.send(channel, "one more")
        await wait_for(lambda: _db_persisted(gateway_settings, channel, 61), what="the extra one")
    assert await _db_ids(gateway_settings, channel) == [*sorted(sent), more]


async def test_private_channel_is_closed_to_outsiders(
    client: AsyncTestClient[Any], workspace: Workspace
) -> None:
    secret = await workspace.channel("secret", private=True)
    await workspace.send(secret, "classified")
    url = f"/api/v1/channels/{secret}/messages"
    assert (
        await client.post(url, json={"body": "let me in"}, headers=workspace.as_user("eve"))
    ).status_code == 404
    read = await client.get(url, headers=workspace.as_user("eve"))
    assert read.status_code == 404
    assert "classified" not in read.text
    public = await workspace.channel("public")
    assert (
        await client.post(
            f"/api/v1/channels/{public}/messages", json={"body": "hello"}, headers=workspace.as_user("eve")
        )
    ).status_code == 201
