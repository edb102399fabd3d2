"""Folding a channel's log onto what the store has: a message's latest state, read-your-writes.

The store holds every entry up to the persist worker's ack floor and maybe some above it; the log's
tail holds everything above. Folding the tail onto the stored rows gives each message's latest
state, the same the store will hold once the worker caught up. Each step is idempotent: a change
the store already applied (its id at or below the row's mark, or the message already deleted) and
a reply the store already counted (a persisted reply) are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never

from echonats.core.ports import ReactionKey, ReactionMark, StoredMessage
from echonats.model import (
    Entry,
    Message,
    MessageDeleted,
    MessageEdited,
    PinChanged,
    Reaction,
    ReactionChanged,
)


@dataclass(slots=True)
class _State:
    message: Message
    edit_mark: int
    pin_mark: int
    body: str
    edited_at: datetime | None
    deleted: bool
    reply_count: int
    last_reply_at: datetime | None
    pinned: bool
    # emoji -> [count, me]; listed in emoji order (code points): an order that does not depend on
    # which reactions the store applied first, so the tail's fold and the store always agree
    reactions: dict[str, list[int | bool]] = field(default_factory=dict)

    @classmethod
    def of(cls, stored: StoredMessage) -> _State:
        m = stored.message
        return cls(
            m,
            stored.edit_mark,
            stored.pin_mark,
            m.body,
            m.edited_at,
            m.deleted,
            m.reply_count,
            m.last_reply_at,
            m.pinned,
            {r.emoji: [r.count, r.me] for r in m.reactions},
        )

    def result(self) -> Message:
        return dataclasses.replace(
            self.message,
            body=self.body,
            edited_at=self.edited_at,
            deleted=self.deleted,
            reply_count=self.reply_count,
            last_reply_at=self.last_reply_at,
            pinned=self.pinned,
            reactions=tuple(Reaction(e, int(c), bool(me)) for e, (c, me) in sorted(self.reactions.items())),
        )


def tail_targets(tail: Iterable[Entry]) -> list[int]:
    """The ids the fold needs the store's state of: the tail's messages (the store may have some),
    their thread roots, and every message a change of the tail targets."""
    ids: set[int] = set()
    for entry in tail:
        ids.add(entry.id if isinstance(entry, Message) else entry.message_id)
        if isinstance(entry, Message) and entry.thread_id is not None:
            ids.add(entry.thread_id)
    return sorted(ids)


def reaction_keys(tail: Iterable[Entry]) -> list[ReactionKey]:
    return sorted({(e.message_id, e.emoji, e.actor_id) for e in tail if isinstance(e, ReactionChanged)})


def fold(
    stored: Mapping[int, StoredMessage],
    tail: Sequence[Entry],
    *,
    marks: Mapping[ReactionKey, ReactionMark],
    viewer: str,
    persisted: Set[int] | None = None,
    choose: Callable[[list[Message]], Iterable[Message]] | None = None,
) -> dict[int, Message]:
    """The latest state of every message in ``stored`` or among the tail's messages.

    ``stored``: the store's rows (at least those of ``tail_targets``); ``persisted``: ids of tail
    messages the store has (default: the keys of ``stored``); ``marks``: the store's state of the
    tail's reactions (``reaction_keys``). ``choose``: given the messages as first stored (their
    id, channel and thread never change), which ones to return: a page builds only its own."""
    known = set(stored) if persisted is None else persisted
    base = dict(stored)
    # Most messages are left as stored: a message gets a mutable state only when a change of the
    # tail reaches it, and only those are rebuilt at the end.
    states: dict[int, _State] = {}

    def state_of(message_id: int | None) -> _State | None:
        if message_id is None:
            return None
        state = states.get(message_id)
        if state is None:
            row = base.get(message_id)
            if row is None:
                return None
            state = states[message_id] = _State.of(row)
        return state

    reactions = dict(marks)
    for entry in tail:
        match entry:
            case Message():
                if entry.id in known or entry.id in base:
                    continue
                base[entry.id] = StoredMessage(entry)
                root = state_of(entry.thread_id)
                if root is not None:
                    root.reply_count += 1
                    if root.last_reply_at is None or entry.created_at > root.last_reply_at:
                        root.last_reply_at = entry.created_at
            case MessageEdited():
                state = state_of(entry.message_id)
                if state is not None and not state.deleted and entry.id > state.edit_mark:
                    state.body, state.edited_at, state.edit_mark = entry.body, entry.at, entry.id
            case MessageDeleted():
                state = state_of(entry.message_id)
                if state is None or state.deleted:
                    continue
                # A tombstone shows no trace of its edits either: that way the state does not depend
                # on whether an edit was applied before the deletion or found it deleted (two workers).
                state.deleted, state.body, state.edited_at, state.pinned, state.reactions = (
                    True,
                    "",
                    None,
                    False,
                    {},
                )
                root = state_of(state.message.thread_id)
                if root is not None:
                    root.reply_count = max(0, root.reply_count - 1)
            case ReactionChanged():
                key = (entry.message_id, entry.emoji, entry.actor_id)
                mark = reactions.get(key)
                if entry.message_id not in base or (mark is not None and entry.id <= mark.change_id):
                    continue
                state = state_of(entry.message_id)
                if state is None or state.deleted:
                    continue
                reactions[key] = ReactionMark(entry.added, entry.id)
                if entry.added != (mark is not None and mark.added):
                    _count(state, entry.emoji, +1 if entry.added else -1, entry.actor_id == viewer)
            case PinChanged():
                state = state_of(entry.message_id)
                if state is not None and not state.deleted and entry.id > state.pin_mark:
                    state.pinned, state.pin_mark = entry.pinned, entry.id
            case _:
                assert_never(entry)

    def latest(message_id: int) -> Message:
        state = states.get(message_id)
        return base[message_id].message if state is None else state.result()

    if choose is not None:
        return {m.id: latest(m.id) for m in choose([row.message for row in base.values()])}
    return {i: latest(i) for i in base}


def pin_order(stored: Mapping[int, StoredMessage], tail: Sequence[Entry]) -> dict[int, int]:
    """Message id -> the id of the change that pinned it last (pins list newest first)."""
    order = {i: s.pin_mark for i, s in stored.items()}
    for entry in tail:
        if isinstance(entry, PinChanged) and entry.id > order.get(entry.message_id, 0):
            order[entry.message_id] = entry.id
    return order


def _count(state: _State, emoji: str, delta: int, mine: bool) -> None:
    current = state.reactions.get(emoji)
    if current is None:
        if delta < 0:
            return
        current = state.reactions[emoji] = [0, False]
    current[0] = int(current[0]) + delta
    if mine:
        current[1] = delta > 0
    if int(current[0]) <= 0:
        del state.reactions[emoji]
