"""Stored records round-trip every field: a field the encoder drops is lost for the persist
worker and every reader (an edit's mentions once were)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from echonats.adapters.nats.records import (
    CHANGE_HEADER,
    MessageRecord,
    change_record,
    decode_entry,
    message_encoder,
)
from echonats.model import Change, MessageDeleted, MessageEdited, NewMessage, PinChanged, ReactionChanged
from tests.unit.fakes import EPOCH

T, C = uuid.UUID(int=1), uuid.UUID(int=2)
CHANGES: list[Change] = [
    MessageEdited(7, T, C, 3, "bob", EPOCH, "hi <@ann>", "n1", ("ann",), True),
    MessageDeleted(7, T, C, 3, "mod", EPOCH, 2, "n2"),
    ReactionChanged(7, T, C, 3, "bob", EPOCH, "👍", False, "n3"),
    PinChanged(7, T, C, 3, "bob", EPOCH, True, "n4"),
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: type(c).__name__)
def test_every_change_round_trips_through_its_record(change: Change) -> None:
    encoded = message_encoder.encode(change_record(change))
    assert decode_entry(encoded, {CHANGE_HEADER: "1"}, 7) == change
    # every field set to a non-default value above, so a dropped one shows
    assert all(
        getattr(change, f.name) not in (None, (), False) or f.name == "added"
        for f in dataclasses.fields(change)
    )


def test_a_message_round_trips_with_its_thread_and_mentions() -> None:
    new = NewMessage(T, C, "bob", "Bob", "hi", "n", EPOCH, 4, True, ("ann", "cy"), True)
    encoded = message_encoder.encode(MessageRecord.of(new))
    assert decode_entry(encoded, None, 9) == new.stored_as(9)
