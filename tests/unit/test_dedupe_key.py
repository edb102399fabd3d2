"""A message's dedupe key tells apart every (sender, nonce) pair, whatever separators they contain."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

from echonats.model import NewMessage

CHANNEL = uuid.UUID("00000000-0000-0000-0000-000000000001")


def _message(sender: str, nonce: str | None, channel: uuid.UUID = CHANNEL) -> NewMessage:
    return NewMessage(
        tenant_id=uuid.uuid4(),
        channel_id=channel,
        sender_id=sender,
        sender_display_name="x",
        body="b",
        nonce=nonce,
        created_at=datetime.now(UTC),
    )


def test_the_reported_collision_is_gone() -> None:
    assert _message("carol:x", "y").dedupe_key != _message("carol", "x:y").dedupe_key


def test_every_split_of_the_same_characters_gets_its_own_key() -> None:
    parts = ["a", ":", "1", ".", "b", "", "2:"]
    pairs = {
        (s, n) for s, n in itertools.product(("".join(p) for p in itertools.permutations(parts, 3)), repeat=2)
    }
    keys = {_message(sender, nonce).dedupe_key for sender, nonce in pairs}
    assert len(keys) == len(pairs)


def test_the_key_is_stable_ascii_and_depends_on_the_channel() -> None:
    key = _message("f:google:ada", "n\u00e9 1").dedupe_key
    assert key == _message("f:google:ada", "n\u00e9 1").dedupe_key
    assert key is not None
    assert key.isascii()
    assert " " not in key
    assert key != _message("f:google:ada", "n\u00e9 1", uuid.uuid4()).dedupe_key
    assert _message("ada", None).dedupe_key is None
