"""Pure helpers of the Redis real-time adapters and the presence wire format."""

from __future__ import annotations

import json
import uuid

import pytest

from echonats.adapters.nats.records import PresenceRecord, presence_decoder
from echonats.adapters.nats.records import message_encoder as presence_encoder
from echonats.adapters.redis.realtime import (
    DUE_KEY,
    due_member,
    group_beats,
    parse_due_member,
    presence_keys,
)
from echonats.core.ports import ConnectionBeat
from echonats.model import PresenceChange, PresenceStatus

TENANT = uuid.UUID("6f1c2a8e-0000-4000-8000-000000000001")


@pytest.mark.parametrize("user", ["alice", "a|b|c", "x:y", "name with spaces", ""])
def test_due_member_round_trips_any_user_id(user: str) -> None:
    assert parse_due_member(due_member(TENANT, user)) == (TENANT, user)


def test_due_member_format() -> None:
    assert due_member(TENANT, "a|b") == f"{TENANT}|a|b"


def test_presence_keys_are_per_tenant_and_user_and_share_the_schedule() -> None:
    keys = presence_keys(TENANT, "alice")
    assert keys == [f"pr:c:{TENANT}:alice", f"pr:a:{TENANT}:alice", f"pr:s:{TENANT}:alice", DUE_KEY]
    other_tenant = presence_keys(uuid.uuid4(), "alice")
    assert set(keys[:3]).isdisjoint(other_tenant[:3])
    assert other_tenant[3] == DUE_KEY


def test_group_beats_by_user_in_first_seen_order() -> None:
    other = uuid.uuid4()
    beats = [
        ConnectionBeat(TENANT, "bob", "b1", 1.0),
        ConnectionBeat(TENANT, "alice", "a1", 2.0),
        ConnectionBeat(other, "bob", "b2", 3.0),
        ConnectionBeat(TENANT, "bob", "b3", 4.0),
    ]
    grouped = group_beats(beats)
    assert list(grouped) == [(TENANT, "bob"), (TENANT, "alice"), (other, "bob")]
    assert [b.connection_id for b in grouped[(TENANT, "bob")]] == ["b1", "b3"]
    assert group_beats([]) == {}


def test_presence_record_wire_format_is_camel_case() -> None:
    change = PresenceChange(TENANT, "alice", PresenceStatus.IDLE)
    payload = presence_encoder.encode(PresenceRecord.of(change))
    assert json.loads(payload) == {"tenantId": str(TENANT), "userId": "alice", "status": "idle"}
    assert presence_decoder.decode(payload).to_change() == change
