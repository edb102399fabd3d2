"""The bench's mix frames: a reaction's shortcode is a valid emoji and carries the bench fields back."""

from __future__ import annotations

import json
import uuid

from bench.wire import EDIT_FRAME_PREFIX, body_of_frame, body_of_reaction, parse_body, reaction_emoji
from echonats import model
from echonats.gateway import protocol as p
from echonats.model import MessageEdited, ReactionChanged
from tests.unit.fakes import EPOCH

EPOCH_ID = uuid.UUID(int=7)


def test_a_reaction_shortcode_round_trips_the_bench_fields_through_a_real_frame() -> None:
    emoji = reaction_emoji(12, 3, 7, 123_456, 1_796_312_838_249_921_379)
    assert model.emoji(emoji) == emoji  # under 64 characters, allowed characters only
    change = ReactionChanged(9, EPOCH_ID, EPOCH_ID, 1, "u", EPOCH, emoji, True)
    frame = p.encode_bytes(p.entry_frame(change))
    fields = parse_body(body_of_reaction(frame) or b"")
    assert fields is not None
    assert (fields.step, fields.sender, fields.channel, fields.seq, fields.sent_ns) == (
        12,
        3,
        7,
        123_456,
        1_796_312_838_249_921_379,
    )


def test_an_edit_frame_is_recognised_and_its_body_found() -> None:
    edit = MessageEdited(9, EPOCH_ID, EPOCH_ID, 1, "u", EPOCH, "B|1|0|0|5|99|xx")
    frame = p.encode_bytes(p.entry_frame(edit))
    assert frame.startswith(EDIT_FRAME_PREFIX)
    assert body_of_frame(frame) == b"B|1|0|0|5|99|xx"
    assert json.loads(frame)["type"] == "message_updated"
