"""Domain events reach JetStream after commit, on documented subjects, inspectable in the stream."""

from __future__ import annotations

import json
from typing import Any

import nats
from litestar.testing import AsyncTestClient

from echonats.adapters.nats import subjects
from echonats.adapters.nats.event_publisher import JetStreamEventPublisher
from echonats.adapters.postgres.outbox import PostgresOutbox
from echonats.bootstrap.resources import open_resources
from echonats.settings import Settings
from echonats.workers.outbox import OutboxRelay
from tests.integration.api import Workspace, wait_for


async def test_events_are_published_on_tenant_subjects(
    client: AsyncTestClient[Any], workspace: Workspace, gateway_settings: Settings
) -> None:
    assert gateway_settings.nats.url
    nc = await nats.connect(gateway_settings.nats.url)
    received: list[tuple[str, dict[str, Any]]] = []

    async def collect(msg: Any) -> None:
        received.append((msg.subject, json.loads(msg.data)))

    try:
        await nc.subscribe(f"echo.{workspace.tenant_id}.events.>", cb=collect)
        await nc.flush()
        channel = await workspace.channel("announcements")
        await client.get("/api/v1/users/me", headers=workspace.as_user("newbie", "New Bie"))
        await client.post("/api/v1/members/me/leave", headers=workspace.as_user("newbie"))
        await client.delete(f"/api/v1/channels/{channel}", headers=workspace.owner)

        expected = ["channel.created", "member.joined", "member.left", "channel.deleted"]

        async def all_arrived() -> bool:
            return len(received) >= len(expected)

        await wait_for(all_arrived, what="four events")
    finally:
        await nc.close()
    assert [s for s, _ in received] == [f"echo.{workspace.tenant_id}.events.{t}" for t in expected]
    created = received[0][1]
    assert created["type"] == "channel.created"
    assert created["tenantId"] == workspace.tenant_id
    assert created["data"]["channelId"] == channel
    assert created["data"]["name"] == "announcements"
    assert received[1][1]["data"] == {"userId": "newbie", "displayName": "New Bie", "role": "member"}
    assert received[2][1]["data"]["reason"] == "left"

    # The same events are in the stream (what `nats stream view ECHO_EVENTS` shows).
    nc = await nats.connect(gateway_settings.nats.url)
    try:
        info = await nc.jetstream().stream_info(subjects.EVENTS_STREAM)
        # +1: the tenant's creation published member.joined for its owner before we subscribed
        assert info.state.messages == len(expected) + 1
    finally:
        await nc.close()


async def test_outbox_relay_publishes_events_whose_fast_path_failed(
    workspace: Workspace, gateway_settings: Settings
) -> None:
    """Simulate a gateway that crashed between commit and publish: rows stay in the outbox."""
    assert gateway_settings.nats.url
    async with open_resources(gateway_settings, name="test") as resources:
        await resources.pg.execute(
            "INSERT INTO event_outbox (id, tenant_id, type, payload, created_at) VALUES ("
            "'6a1c1d1e-0000-4000-8000-000000000001', $1, 'channel.created', $2, now() - interval '1 minute')",
            workspace.tenant_id,
            json.dumps(
                {
                    "id": "6a1c1d1e-0000-4000-8000-000000000001",
                    "tenantId": workspace.tenant_id,
                    "type": "channel.created",
                    "occurredAt": "2026-01-01T00:00:00Z",
                    "data": {},
                }
            ).encode(),
        )
        relay = OutboxRelay(PostgresOutbox(resources.pg), JetStreamEventPublisher(resources.nats))
        assert await relay.relay_once() == 1
        assert await relay.relay_once() == 0
        assert await resources.pg.fetchval("SELECT count(*) FROM event_outbox") == 0
        js = resources.nats.jetstream()
        last = await js.get_last_msg(
            subjects.EVENTS_STREAM, f"echo.{workspace.tenant_id}.events.channel.created"
        )
        assert json.loads(last.data or b"{}")["id"] == "6a1c1d1e-0000-4000-8000-000000000001"
        # Republishing the same event id is deduplicated by JetStream.
        before = (await js.stream_info(subjects.EVENTS_STREAM)).state.messages
        await js.publish(
            f"echo.{workspace.tenant_id}.events.channel.created",
            last.data or b"",
            headers={"Nats-Msg-Id": "6a1c1d1e-0000-4000-8000-000000000001"},
        )
        assert (await js.stream_info(subjects.EVENTS_STREAM)).state.messages == before
