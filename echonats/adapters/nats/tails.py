"""What a gateway has read of each channel's unpersisted tail, so a history read fetches only
what the stream got since the last one.

Every history page folds the channel's entries above the persist floor onto the stored rows.
Reading all of them from JetStream per page cost ~50 µs of the gateway's CPU per entry (a
direct-get record, its headers, its decoding): with a 200-entry tail, most of the page's time.
Entries are immutable and the stream is append-only, so the entries read last time are still
right: the next read asks only for ids above what was read, and drops what the floor passed.
Bounded (channels and entries, least recently read first out); an entry removed from the stream
(a purged channel, an aged-out message) is below the floor long before, or its channel is gone
and no longer readable. A stream created anew (ids may be given again) shows as a falling persist
floor: the message log then forgets every tail.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from echonats.model import Entry

MAX_CHANNELS = 2_000
MAX_ENTRIES = 100_000

_Key = tuple[uuid.UUID, uuid.UUID]


@dataclass(slots=True)
class _Tail:
    read_to: int  # every entry of the channel up to this id has been read
    entries: list[Entry]  # the read ones above the floor of that read, oldest first


class TailCache:
    def __init__(self, *, max_channels: int = MAX_CHANNELS, max_entries: int = MAX_ENTRIES) -> None:
        self._tails: dict[_Key, _Tail] = {}
        self._entries = 0
        self._max_channels = max_channels
        self._max_entries = max_entries

    def known(self, key: _Key, floor: int) -> tuple[list[Entry], int]:
        """The entries above ``floor`` read before, and the first id still to read."""
        tail = self._tails.get(key)
        if tail is None or tail.read_to <= floor:
            return [], floor + 1
        kept = tail.entries if not tail.entries or tail.entries[0].id > floor else _above(tail.entries, floor)
        return kept, tail.read_to + 1

    def update(self, key: _Key, read_to: int, entries: list[Entry]) -> None:
        """Everything up to ``read_to`` is read; ``entries`` are the tail as of that read."""
        current = self._tails.pop(key, None)
        if current is not None:
            self._entries -= len(current.entries)
            if current.read_to > read_to:  # a concurrent read got further: keep it
                entries, read_to = current.entries, current.read_to
        self._tails[key] = _Tail(read_to, entries)  # last in: the most recently read
        self._entries += len(entries)
        while self._tails and (len(self._tails) > self._max_channels or self._entries > self._max_entries):
            oldest = next(iter(self._tails))
            self._entries -= len(self._tails.pop(oldest).entries)

    def clear(self) -> None:
        self._tails.clear()
        self._entries = 0


def _above(entries: list[Entry], floor: int) -> list[Entry]:
    return [e for e in entries if e.id > floor]
