"""Client frames are strict: bounds are the decoder's, so bad input never reaches a use case."""

from __future__ import annotations

import msgspec
import pytest

from echonats.gateway import protocol as p
from echonats.model import MAX_MESSAGE_ID

CHANNEL = "6a1c1d1e-0000-4000-8000-000000000001"


def test_since_up_to_the_largest_message_id_is_accepted() -> None:
    frame = p.client_frame_decoder.decode(
        f'{{"type":"subscribe","channelId":"{CHANNEL}","since":{MAX_MESSAGE_ID}}}'
    )
    assert isinstance(frame, p.Subscribe)
    assert frame.since == MAX_MESSAGE_ID


@pytest.mark.parametrize("since", [MAX_MESSAGE_ID + 1, 2**64, -1])
def test_since_outside_message_ids_is_refused(since: int) -> None:
    """A message id is a PostgreSQL bigint, as REST cursors are: beyond it there is nothing to replay."""
    with pytest.raises(msgspec.ValidationError):
        p.client_frame_decoder.decode(f'{{"type":"subscribe","channelId":"{CHANNEL}","since":{since}}}')
