"""Resending a nonce: the dedupe key is unambiguous, and a resend answers the original for free."""

from __future__ import annotations

import dataclasses
from typing import Any

from echonats.settings import Settings
from tests.integration.api import Workspace, gateway_client
from tests.integration.realtime import serve_gateway, ws_client


def _limited(settings: Settings, *, burst: int) -> Settings:
    # A budget that does not refill during the test: every charge shows.
    realtime = dataclasses.replace(settings.realtime, rate_user_per_second=0.001, rate_user_burst=burst)
    return dataclasses.replace(settings, realtime=realtime)


async def test_ids_and_nonces_with_separators_never_share_a_dedupe_key(
    client: Any, workspace: Workspace
) -> None:
    channel = await workspace.channel("general")
    url = f"/api/v1/channels/{channel}/messages"
    pairs = [("carol:x", "y"), ("carol", "x:y"), ("carol:x:y", "z"), ("carol", "x:y:z"), ("3:carol", "x")]
    answers = []
    for user, nonce in pairs:
        sent = await client.post(
            url, json={"body": f"{user}|{nonce}", "nonce": nonce}, headers=workspace.as_user(user)
        )
        assert sent.status_code == 201, sent.text
        answers.append(sent.json())
    assert [(a["senderId"], a["body"]) for a in answers] == [(u, f"{u}|{n}") for u, n in pairs]
    assert len({a["id"] for a in answers}) == len(pairs)
    again = await client.post(url, json={"body": "other", "nonce": "x:y"}, headers=workspace.as_user("carol"))
    assert again.json()["id"] == answers[1]["id"]  # a real resend still gets its original


async def test_rest_resends_answer_the_original_and_cost_nothing(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    channel = await workspace.channel("general")
    url = f"/api/v1/channels/{channel}/messages"
    async with gateway_client(_limited(gateway_settings, burst=3)) as rest:
        first = await rest.post(url, json={"body": "one", "nonce": "n1"}, headers=workspace.owner)
        assert first.status_code == 201, first.text
        resends = [
            await rest.post(url, json={"body": "one", "nonce": "n1"}, headers=workspace.owner)
            for _ in range(30)
        ]
        assert [r.status_code for r in resends] == [201] * 30
        assert {r.json()["id"] for r in resends} == {first.json()["id"]}
        # The 30 resends took nothing: two more new messages fit the budget of 3, the third does not.
        fresh = [
            await rest.post(url, json={"body": n, "nonce": n}, headers=workspace.owner)
            for n in ("n2", "n3", "n4")
        ]
        assert [r.status_code for r in fresh] == [201, 201, 429]
        # Even with the budget spent, a resend of a stored nonce gets the original, not 429.
        late = await rest.post(url, json={"body": "one", "nonce": "n1"}, headers=workspace.owner)
        assert late.status_code == 201, late.text
        assert late.json() == first.json()


async def test_websocket_resends_in_one_burst_are_acked_with_the_original(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    channel = await workspace.channel("general")
    async with serve_gateway(_limited(gateway_settings, burst=2)) as base, \
            ws_client(base, workspace.token("wsu")) as ws:  # fmt: skip
        await ws.send(type="send", channelId=channel, body="one", nonce="w1")
        await ws.wait_for_type("ack")
        for _ in range(20):  # immediate retries, pipelined: each is checked together with the others
            await ws.send(type="send", channelId=channel, body="one", nonce="w1")
        await ws.send(type="send", channelId=channel, body="two", nonce="w2")
        await ws.send(type="send", channelId=channel, body="three", nonce="w3")
        await ws.wait(lambda: len(ws.of_type("ack")) + len(ws.of_type("error")) == 23, what="23 answers")
    acks = ws.of_type("ack")
    first_id = acks[0]["messageId"]
    assert [a["messageId"] for a in acks[:21]] == [first_id] * 21
    assert [a["nonce"] for a in acks] == ["w1"] * 21 + ["w2"]
    assert [(e["code"], e["ref"]) for e in ws.of_type("error")] == [("rate_limited", "w3")]
