"""DMs, read state, unread and mention counts, and the per-user live feed, on the real stack with
two gateways and a persist worker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from echonats.settings import Settings
from tests.integration.api import running_persist_worker, wait_for
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import Client, HttpTenant, serve_gateway, tenant_gateway, ws_client


async def _call(tenant: HttpTenant, method: str, url: str, user: str, **kw: Any) -> tuple[int, Any]:
    response = await tenant.http.request(method, url, headers=tenant.auth(user), **kw)
    return response.status_code, (response.json() if response.content else None)


async def _ok(tenant: HttpTenant, method: str, url: str, user: str, **kw: Any) -> Any:
    status, body = await _call(tenant, method, url, user, **kw)
    assert status in (200, 201, 204), f"{method} {url}: {status} {body}"
    return body


async def _provision(tenant: HttpTenant, *users: str) -> None:
    for user in users:
        await _ok(tenant, "GET", "/api/v1/users/me", user)


async def _barrier(client: Client) -> None:
    """Everything the gateway queued for ``client`` before this point has arrived."""
    pongs = len(client.of_type("pong"))
    await client.send(type="ping")
    await client.wait_for_type("pong", count=pongs + 1)


async def _unreads(tenant: HttpTenant, user: str) -> dict[str, tuple[int, int]]:
    body = await _ok(tenant, "GET", "/api/v1/unreads", user)
    return {u["channelId"]: (u["unread"], u["mentions"]) for u in body["items"]}


async def test_opening_the_same_dm_twenty_times_at_once_on_two_gateways_gives_one(
    gateway_settings: Settings,
) -> None:
    async with (
        tenant_gateway(gateway_settings, ADMIN_TOKEN) as (_, tenant, general),
        serve_gateway(gateway_settings) as base_b,
        httpx.AsyncClient(base_url=base_b.replace("ws://", "http://"), timeout=30) as http_b,
    ):
        await _provision(tenant, "ann", "bob", "carol", "dave")

        async def open_on(http: httpx.AsyncClient, user: str, others: list[str]) -> str:
            response = await http.post("/api/v1/dms", json={"userIds": others}, headers=tenant.auth(user))
            assert response.status_code == 200, response.text
            return str(response.json()["id"])

        opens = [
            open_on(tenant.http if i % 2 else http_b, user, others)
            for i in range(10)
            for user, others in (("ann", ["bob", "carol"]), ("carol", ["ann", "bob", "ann"]))
        ]
        ids = await asyncio.gather(*opens)
        assert len(set(ids)) == 1, ids  # the same set, in any order and from any member: one DM
        dm = ids[0]
        one_to_one = await open_on(tenant.http, "ann", ["bob"])
        assert one_to_one != dm
        listed = await _ok(tenant, "GET", "/api/v1/dms", "bob")
        assert {d["id"] for d in listed["items"]} == {dm, one_to_one}
        assert sorted(next(d for d in listed["items"] if d["id"] == dm)["memberIds"]) == [
            "ann",
            "bob",
            "carol",
        ]
        # Never listed as a channel, to anyone; fixed membership; invisible to dave.
        for user in ("ann", "dave"):
            channels = await _ok(tenant, "GET", "/api/v1/channels", user)
            assert dm not in {c["id"] for c in channels["items"]}
        for method, url in (("POST", f"/api/v1/channels/{dm}/leave"), ("PATCH", f"/api/v1/channels/{dm}")):
            status, body = await _call(
                tenant, method, url, "ann", json={"name": "x"} if method == "PATCH" else None
            )
            assert status == 403, body
        for method, url in (
            ("GET", f"/api/v1/channels/{dm}/messages"),
            ("POST", f"/api/v1/channels/{dm}/join"),
        ):
            status, _ = await _call(tenant, method, url, "dave")
            assert status == 404
        assert (await _call(tenant, "POST", "/api/v1/dms", "ann", json={"userIds": ["nobody"]}))[0] == 404
        ten = [f"u{i}" for i in range(9)]
        await _provision(tenant, *ten)
        assert (await _call(tenant, "POST", "/api/v1/dms", "ann", json={"userIds": ten}))[0] in (400, 422)
        sent = await _ok(tenant, "POST", f"/api/v1/channels/{dm}/messages", "bob", json={"body": "hi both"})
        listed = await _ok(tenant, "GET", "/api/v1/dms", "carol")
        assert next(d for d in listed["items"] if d["id"] == dm)["lastMessage"]["id"] == sent["id"]
        assert general not in {d["id"] for d in listed["items"]}


async def test_unread_and_mention_counts_follow_sends_edits_deletes_and_reads_on_two_devices(
    gateway_settings: Settings,
) -> None:
    async with (
        tenant_gateway(gateway_settings, ADMIN_TOKEN) as (base_a, tenant, channel),
        serve_gateway(gateway_settings) as base_b,
        running_persist_worker(gateway_settings),
    ):
        await _provision(tenant, "ann", "bob", "dave")
        for user in ("ann", "bob", "dave"):
            await _ok(tenant, "POST", f"/api/v1/channels/{channel}/join", user)
        url = f"/api/v1/channels/{channel}/messages"
        async with (
            ws_client(base_a, tenant.token("ann")) as phone,
            ws_client(base_b, tenant.token("ann")) as laptop,
            ws_client(base_b, tenant.token("dave")) as dave,
        ):
            plain = (await _ok(tenant, "POST", url, "bob", json={"body": "hello"}))["id"]
            named = (await _ok(tenant, "POST", url, "bob", json={"body": "<@ann> look"}))["id"]
            everyone = (await _ok(tenant, "POST", url, "bob", json={"body": "@channel lunch"}))["id"]
            await _ok(tenant, "POST", url, "ann", json={"body": "my own: never unread for me"})

            async def counts_are(user: str, expected: tuple[int, int]) -> bool:
                return (await _unreads(tenant, user)).get(channel) == expected

            await wait_for(lambda: counts_are("ann", (3, 2)), what="ann: 3 unread, 2 mentions")
            await wait_for(lambda: counts_are("dave", (4, 1)), what="dave: 4 unread, 1 mention (@channel)")
            await phone.wait(lambda: len(phone.of_type("mention")) >= 2, what="ann's mention frames")
            assert {f["messageId"] for f in phone.of_type("mention")} == {named, everyone}
            await laptop.wait(lambda: len(laptop.of_type("mention")) >= 2, what="on the other device too")

            await _ok(tenant, "DELETE", f"{url}/{named}", "bob")  # a deleted message stops counting
            await _ok(tenant, "PATCH", f"{url}/{plain}", "bob", json={"body": "hello <@ann>"})  # now mentions
            try:
                await wait_for(lambda: counts_are("ann", (2, 2)), what="ann after a delete and an edit")
            except AssertionError:
                raise AssertionError(f"ann has {await _unreads(tenant, 'ann')}") from None

            await phone.send(type="read", channelId=channel, messageId=everyone)  # read on the phone
            await laptop.wait(lambda: bool(laptop.of_type("read_state")), what="read_state on the laptop")
            assert laptop.of_type("read_state")[-1]["lastReadId"] == everyone
            await phone.wait(lambda: bool(phone.of_type("read_state")), what="and on the phone")
            assert await counts_are("ann", (0, 0))
            assert (
                await _ok(
                    tenant, "POST", f"/api/v1/channels/{channel}/read", "ann", json={"messageId": plain}
                )
            )["lastReadId"] == everyone  # forward only
            await _ok(tenant, "POST", f"/api/v1/channels/{channel}/unread", "ann", json={"messageId": plain})
            assert await counts_are("ann", (2, 2))
            mentions = await _ok(tenant, "GET", "/api/v1/mentions?limit=10", "ann")
            assert [m["id"] for m in mentions["items"]] == [everyone, plain]
            await dave.wait(lambda: bool(dave.of_type("mention")), what="dave's @channel mention")
            await _barrier(dave)
            assert not dave.of_type("read_state")  # ann's reads are ann's
            assert {f["messageId"] for f in dave.of_type("mention")} == {everyone}


async def test_the_feed_tells_the_invitee_only_and_a_reconnect_catches_up(gateway_settings: Settings) -> None:
    async with (
        tenant_gateway(gateway_settings, ADMIN_TOKEN) as (base_a, tenant, _),
        serve_gateway(gateway_settings) as base_b,
    ):
        await _provision(tenant, "ann", "carol", "dave")
        secret = (
            await _ok(tenant, "POST", "/api/v1/channels", "ann", json={"name": "secret", "isPrivate": True})
        )["id"]
        async with (
            ws_client(base_b, tenant.token("carol")) as carol,
            ws_client(base_a, tenant.token("dave")) as dave,
        ):
            await _ok(tenant, "POST", f"/api/v1/channels/{secret}/members", "ann", json={"userId": "carol"})
            joined = await carol.wait_for_type("channel_joined")
            assert (joined[0]["channelId"], joined[0]["channel"]["name"], joined[0]["addedBy"]) == (
                secret,
                "secret",
                "ann",
            )
            public = (await _ok(tenant, "POST", "/api/v1/channels", "ann", json={"name": "town"}))["id"]
            await dave.wait(lambda: bool(dave.of_type("channel_created")), what="a public channel announced")
            await carol.wait(lambda: bool(carol.of_type("channel_created")), what="carol sees it too")
            assert dave.of_type("channel_created")[0]["channel"]["id"] == public
            await _barrier(dave)
            assert not dave.of_type("channel_joined")  # not his invitation
            assert secret not in str(dave.frames)  # nothing of the private channel at all
            last_seen = max(f["feedId"] for f in carol.frames if "feedId" in f)
        # carol is offline while things happen to her.
        await _ok(tenant, "DELETE", f"/api/v1/channels/{secret}/members/carol", "ann")
        dm = (await _ok(tenant, "POST", "/api/v1/dms", "ann", json={"userIds": ["carol"]}))["id"]
        async with ws_client(base_a, tenant.token("carol")) as back:
            await back.send(type="feed", since=last_seen)
            await back.wait(lambda: bool(back.of_type("dm_opened")), what="the missed feed")
            kinds = [f["type"] for f in back.frames if "feedId" in f]
            assert kinds == ["channel_left", "dm_opened"]
            assert back.of_type("dm_opened")[0]["channelId"] == dm
            ids = [f["feedId"] for f in back.frames if "feedId" in f]
            assert ids == sorted(ids)
            assert min(ids) > last_seen
            await back.send(type="feed", since=0)  # further back than the replay can go? not here
            await _barrier(back)


async def test_a_status_set_on_one_device_reaches_every_socket_and_the_snapshot(
    gateway_settings: Settings,
) -> None:
    async with (
        tenant_gateway(gateway_settings, ADMIN_TOKEN) as (base_a, tenant, general),
        serve_gateway(gateway_settings) as base_b,
    ):
        await _provision(tenant, "ann", "bob", "eve")
        secret = (
            await _ok(tenant, "POST", "/api/v1/channels", "ann", json={"name": "s", "isPrivate": True})
        )["id"]
        async with (
            ws_client(base_a, tenant.token("ann")) as ann,
            ws_client(base_b, tenant.token("bob")) as bob,
        ):
            for client in (ann, bob):
                await _barrier(client)  # its frames are read: its presence is recorded
            until = "2099-01-01T00:00:00Z"
            body = {"presence": "dnd", "text": "  focus time ", "expiresAt": until}
            set_ = await _ok(tenant, "PUT", "/api/v1/presence/me", "ann", json=body)
            assert (set_["presence"], set_["text"]) == ("dnd", "focus time")
            frame = (await bob.wait_for_type("user_status"))[0]
            assert (frame["userId"], frame["presence"], frame["text"]) == ("ann", "dnd", "focus time")
            await ann.wait_for_type("user_status")  # her own other devices too
            seen = await _ok(tenant, "GET", "/api/v1/presence?userIds=ann,bob,eve", "bob")
            by_user = {p["userId"]: p for p in seen["items"]}
            assert by_user["ann"]["status"] == "online"
            assert by_user["ann"]["own"]["presence"] == "dnd"
            assert "own" not in by_user["eve"]
            assert by_user["eve"]["status"] == "offline"
            await bob.send(type="presence_query")
            snapshot = (await bob.wait_for_type("presence_snapshot"))[0]
            assert {u["userId"]: (u["status"], u.get("presence")) for u in snapshot["users"]} == {
                "ann": ("online", "dnd"),
                "bob": ("online", None),
            }  # eve is offline and set nothing: not listed
            await bob.send(type="presence_query", channelId=secret)  # not bob's to see
            await bob.wait(lambda: bool(bob.of_type("error")), what="the refusal")
            assert (bob.of_type("error")[0]["code"], bob.of_type("error")[0]["ref"]) == ("not_found", secret)
            await ann.send(type="presence_query", channelId=secret)
            mine = (await ann.wait_for_type("presence_snapshot"))[0]
            assert [u["userId"] for u in mine["users"]] == ["ann"]
            await _ok(tenant, "PUT", "/api/v1/presence/me", "ann", json={})  # cleared
            await bob.wait(lambda: len(bob.of_type("user_status")) >= 2, what="the clearing")
            assert bob.of_type("user_status")[-1]["presence"] is None
            past = {"presence": "away", "expiresAt": "2001-01-01T00:00:00Z"}
            assert (await _call(tenant, "PUT", "/api/v1/presence/me", "ann", json=past))[0] == 422
            assert general
