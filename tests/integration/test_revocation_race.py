"""A removal from a private channel that races with a subscribe: once the removal has answered,
nothing of the channel reaches the removed user, on any gateway (issue #11, item 1)."""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack
from typing import Any

from echonats.settings import Settings
from tests.integration.api import Workspace
from tests.integration.realtime import Client, serve_gateway, ws_client

TRIES = 120
GATEWAYS = 2


def _answered(client: Client, seen: int, channel: str) -> str | None:
    """How the subscribe sent after frame ``seen`` ended: 'refused', 'unsubscribed' or None (yet)."""
    for frame in client.frames[seen:]:
        if frame["type"] == "error" and frame.get("ref") == channel:
            assert frame["code"] == "not_found", frame
            return "refused"
        if frame["type"] == "unsubscribed" and frame["channelId"] == channel:
            return "unsubscribed"
    return None


def _message_ids(client: Client, seen: int, channel: str) -> list[int]:
    return [
        f["payload"]["messageId"]
        for f in client.frames[seen:]
        if f["type"] == "message" and f["channelId"] == channel
    ]


async def test_a_removal_racing_a_subscribe_never_leaks_later_messages(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    rest = workspace.client
    secret = await workspace.channel("secret", private=True)
    barrier = await workspace.channel("barrier")
    assert (await rest.get("/api/v1/users/me", headers=workspace.as_user("bob"))).status_code == 200
    rng = random.Random(11)
    outcomes: dict[str, int] = {}
    async with AsyncExitStack() as stack:
        bobs: list[Client] = []
        for _ in range(GATEWAYS):
            base = await stack.enter_async_context(serve_gateway(gateway_settings))
            bob = await stack.enter_async_context(ws_client(base, workspace.token("bob")))
            await bob.send(type="subscribe", channelId=barrier)
            await bob.wait_for_type("subscribed")
            bobs.append(bob)
        for attempt in range(TRIES):
            outcome = await _one_try(
                workspace, bobs[attempt % GATEWAYS], secret, barrier, rng.uniform(0, 0.005)
            )
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # Both orders happened, so the race was really run (not only one side of it).
    assert set(outcomes) == {"refused", "unsubscribed"}, outcomes


async def _one_try(workspace: Workspace, bob: Client, secret: str, barrier: str, jitter_s: float) -> str:
    """Bob (a member again) subscribes while the owner removes him; returns how the subscribe ended."""
    rest, members = workspace.client, f"/api/v1/channels/{secret}/members"
    added = await rest.post(members, json={"userId": "bob"}, headers=workspace.owner)
    assert added.status_code in (200, 201, 204), added.text
    seen = len(bob.frames)
    await bob.send(type="subscribe", channelId=secret)
    await asyncio.sleep(jitter_s)  # jitter, not synchronisation: the removal lands anywhere in the subscribe
    removed = await rest.delete(f"{members}/bob", headers=workspace.owner)
    assert removed.status_code == 204, removed.text
    after = await _post(rest, workspace, secret, "after the removal")
    marker = await _post(rest, workspace, barrier, "marker")
    # Bob's gateway handles the later message before the marker (one NATS connection, in order).
    await bob.wait(lambda: marker in _message_ids(bob, seen, barrier), what="the marker message")
    # The subscribe must end refused or unsubscribed; "subscribed" alone is the leak.
    await bob.wait(lambda: _answered(bob, seen, secret) is not None, what="the end of the subscribe")
    outcome = _answered(bob, seen, secret)
    assert outcome is not None
    await _ping(bob)  # whatever was queued for bob before now has arrived
    assert after not in _message_ids(bob, seen, secret), "a message posted after the removal leaked"
    return outcome


async def _post(rest: Any, workspace: Workspace, channel: str, body: str) -> int:
    sent = await rest.post(
        f"/api/v1/channels/{channel}/messages", json={"body": body}, headers=workspace.owner
    )
    assert sent.status_code == 201, sent.text
    return int(sent.json()["id"])


async def _ping(client: Client) -> None:
    pongs = len(client.of_type("pong"))
    await client.send(type="ping")
    await client.wait_for_type("pong", count=pongs + 1)
