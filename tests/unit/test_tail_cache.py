"""The gateway's record of each channel's unpersisted tail: only what is new is read again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from echonats.adapters.nats import message_log
from echonats.adapters.nats.tails import TailCache
from echonats.model import Entry, Message

CHANNEL = (uuid.uuid4(), uuid.uuid4())


def entries(*ids: int) -> list[Entry]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [Message(i, CHANNEL[0], CHANNEL[1], "ann", "Ann", f"m{i}", None, at) for i in ids]


def ids(found: list[Entry]) -> list[int]:
    return [e.id for e in found]


def test_a_channel_never_read_is_read_from_above_the_floor() -> None:
    assert TailCache().known(CHANNEL, floor=10) == ([], 11)


def test_what_was_read_is_kept_above_the_floor_and_reading_goes_on_after_it() -> None:
    cache = TailCache()
    cache.update(CHANNEL, 20, entries(12, 15, 20))
    known, start = cache.known(CHANNEL, floor=12)
    assert (ids(known), start) == ([15, 20], 21)
    known, start = cache.known(CHANNEL, floor=25)  # the floor passed everything read
    assert (ids(known), start) == ([], 26)


def test_a_read_that_got_less_far_does_not_undo_one_that_got_further() -> None:
    cache = TailCache()
    cache.update(CHANNEL, 30, entries(25, 30))
    cache.update(CHANNEL, 27, entries(25))  # a concurrent read that started earlier
    known, start = cache.known(CHANNEL, floor=0)
    assert (ids(known), start) == ([25, 30], 31)


def test_the_least_recently_read_channels_go_first() -> None:
    cache = TailCache(max_channels=10, max_entries=4)
    other = (uuid.uuid4(), uuid.uuid4())
    cache.update(CHANNEL, 3, entries(1, 2, 3))
    cache.update(other, 5, entries(4, 5))  # 5 entries in all: the first channel is dropped
    assert cache.known(CHANNEL, floor=0) == ([], 1)
    assert ids(cache.known(other, floor=0)[0]) == [4, 5]


class _ConsumerInfo:
    def __init__(self, floor: int) -> None:
        self.ack_floor = type("AckFloor", (), {"stream_seq": floor})()


class _FloorsJetStream:
    """consumer_info answers the floors given, one per call."""

    def __init__(self, *floors: int) -> None:
        self.floors = list(floors)

    async def consumer_info(self, *_: object, **__: object) -> _ConsumerInfo:
        return _ConsumerInfo(self.floors.pop(0))


async def test_a_falling_floor_makes_the_log_forget_what_it_read_of_the_tails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(message_log, "FLOOR_REUSE_S", 0.0)
    log = message_log.JetStreamMessageLog.__new__(message_log.JetStreamMessageLog)
    log._js = _FloorsJetStream(10, 12, 3)
    log._tails = TailCache()
    log._last_floor, log._floor_read_at = None, 0.0
    assert await log.persisted_floor() == 10
    log._tails.update(CHANNEL, 20, entries(15, 20))
    assert await log.persisted_floor() == 12  # a rising floor keeps what was read
    assert ids(log._tails.known(CHANNEL, floor=12)[0]) == [15, 20]
    assert await log.persisted_floor() == 3  # the consumer (and the stream) made anew
    assert log._tails.known(CHANNEL, floor=3) == ([], 4)
