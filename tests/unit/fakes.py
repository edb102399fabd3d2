"""In-memory fakes of the core's ports, for unit tests of the use cases (no network, no services).

The fakes follow the documented semantics of the ports and of the production adapters
(``echonats/adapters/postgres/store.py``, ``echonats/adapters/nats/message_log.py``):

* ``InMemoryStore`` — transactions snapshot the whole state at entry and restore it on any
  exception, so a rollback really undoes every write. Transactions are serialised by a lock;
  ``read()`` takes no snapshot and refuses writes. Integrity violations (duplicate keys, missing
  referenced rows) raise ``Conflict`` as the PostgreSQL store does.
* ``FakeMessageLog`` — the JetStream message log: ids are stream sequences, nonce dedupe, a
  persisted floor moved by ``persist_up_to`` (the persist worker's job).
* ``RecordingPublisher`` — records published events and drops their outbox rows, or fails.
* ``FixedClock`` — a clock that only moves when told to.
* Worker pipelines: ``tests/unit/fake_pipelines.py``; the live feed: ``tests/unit/fake_live.py``.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from echonats.core.caller import Caller
from echonats.core.ports import (
    Appended,
    MembershipState,
    ReactionKey,
    ReactionMark,
    StoredMessage,
    TenantLimits,
)
from echonats.core.services import Services
from echonats.model import (
    PLATFORM_ADMIN_ROLE,
    Change,
    Channel,
    ChannelMember,
    DomainEvent,
    Entry,
    Member,
    Message,
    MessageDeleted,
    MessageEdited,
    NewMessage,
    PinChanged,
    Principal,
    Reaction,
    ReactionChanged,
    Role,
    Tenant,
    User,
    UserStatus,
)
from echonats.model.errors import Conflict, EchonatsError, Unavailable
from echonats.model.timeline import change_dedupe_key

EPOCH = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, at: datetime = EPOCH) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float = 1.0) -> datetime:
        self.at += timedelta(seconds=seconds)
        return self.at


# -- store ------------------------------------------------------------------------------------------


@dataclass
class MemberRow:
    """A ``tenant_members`` row, with the profile this tenant shows (not the ``users`` row's)."""

    role: Role
    joined_at: datetime
    display_name: str
    email: str | None
    removed_at: datetime | None = None


@dataclass
class ChannelMemberRow:
    tenant_id: uuid.UUID
    role: Role
    joined_at: datetime


@dataclass
class State:
    """All tables. Tests may inspect it directly (``store.state``)."""

    tenants: dict[uuid.UUID, Tenant] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    members: dict[tuple[uuid.UUID, str], MemberRow] = field(default_factory=dict)
    channels: dict[uuid.UUID, Channel] = field(default_factory=dict)
    channel_members: dict[tuple[uuid.UUID, str], ChannelMemberRow] = field(default_factory=dict)
    messages: dict[int, Message] = field(default_factory=dict)  # persisted rows (reactions aside)
    marks: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (edit_mark, pin_mark)
    reactions: dict[ReactionKey, ReactionMark] = field(default_factory=dict)  # message_reactions
    dm_keys: dict[tuple[uuid.UUID, str], uuid.UUID] = field(default_factory=dict)  # channels.dm_key
    last_read: dict[tuple[uuid.UUID, str], int] = field(default_factory=dict)  # channel_members.last_read_id
    mentions: set[tuple[str, uuid.UUID, int]] = field(default_factory=set)  # message_mentions
    statuses: dict[tuple[uuid.UUID, str], UserStatus] = field(default_factory=dict)  # tenant_members.status_*
    outbox: dict[uuid.UUID, DomainEvent] = field(default_factory=dict)


class _Repo:
    def __init__(self, store: InMemoryStore, *, writable: bool) -> None:
        self._store = store
        self._writable = writable

    @property
    def _s(self) -> State:
        return self._store.state  # looked up each time: a rollback replaces the state object

    def _read(self, op: str) -> None:
        self._store._maybe_fail(op)

    def _write(self, op: str) -> None:
        if not self._writable:
            raise AssertionError(f"{op}: write through Store.read() (needs Store.transaction())")
        self._store._maybe_fail(op)

    def _now(self) -> datetime:
        return self._store.clock.now()


class InMemoryTenantRepo(_Repo):
    async def add(self, tenant: Tenant) -> None:
        self._write("tenants.add")
        if tenant.id in self._s.tenants:
            raise Conflict("duplicate tenant id")
        self._s.tenants[tenant.id] = tenant

    async def get(self, tenant_id: uuid.UUID, *, for_update: bool = False) -> Tenant | None:
        self._read("tenants.get")
        return self._s.tenants.get(tenant_id)

    async def list(self, *, limit: int, after: uuid.UUID | None) -> list[Tenant]:
        self._read("tenants.list")
        ordered = sorted(self._s.tenants.values(), key=lambda t: t.id)
        return [t for t in ordered if after is None or t.id > after][:limit]

    async def update_limits(self, tenant_id: uuid.UUID, limits: TenantLimits) -> Tenant | None:
        self._write("tenants.update_limits")
        tenant = self._s.tenants.get(tenant_id)
        if tenant is None:
            return None
        updated = replace(
            tenant,
            max_channels=tenant.max_channels if limits.max_channels is None else limits.max_channels,
            max_messages_per_second=tenant.max_messages_per_second
            if limits.max_messages_per_second is None
            else limits.max_messages_per_second,
        )
        self._s.tenants[tenant_id] = updated
        return updated


class InMemoryUserRepo(_Repo):
    async def ensure(self, user: User) -> None:
        self._write("users.ensure")
        self._s.users.setdefault(user.id, user)  # ON CONFLICT DO NOTHING


class InMemoryMemberRepo(_Repo):
    def _member(self, tenant_id: uuid.UUID, user_id: str, row: MemberRow) -> Member:
        return Member(tenant_id, user_id, row.display_name, row.email, row.role, row.joined_at)

    async def set_status(self, tenant_id: uuid.UUID, user_id: str, status: UserStatus | None) -> bool:
        self._write("members.set_status")
        row = self._s.members.get((tenant_id, user_id))
        if row is None or row.removed_at is not None:
            return False
        if status is None:
            self._s.statuses.pop((tenant_id, user_id), None)
        else:
            self._s.statuses[(tenant_id, user_id)] = status
        return True

    async def statuses(self, tenant_id: uuid.UUID, user_ids: Sequence[str]) -> dict[str, UserStatus]:
        self._read("members.statuses")
        return {u: s for u in user_ids if (s := self._s.statuses.get((tenant_id, u))) is not None}

    async def active_ids(self, tenant_id: uuid.UUID, *, limit: int) -> list[str]:
        self._read("members.active_ids")
        ids = [u for (t, u), row in self._s.members.items() if t == tenant_id and row.removed_at is None]
        return sorted(ids)[:limit]

    async def state(self, tenant_id: uuid.UUID, user_id: str) -> MembershipState:
        self._read("members.state")
        row = self._s.members.get((tenant_id, user_id))
        if row is None:
            return MembershipState(None, removed=False)
        if row.removed_at is not None:
            return MembershipState(None, removed=True)
        return MembershipState(self._member(tenant_id, user_id, row), removed=False)

    async def add(self, tenant_id: uuid.UUID, user: User, role: Role) -> Member:
        self._write("members.add")
        if tenant_id not in self._s.tenants or user.id not in self._s.users:
            raise Conflict("conflicting change: ForeignKeyViolationError")
        key = (tenant_id, user.id)
        if key in self._s.members:
            raise Conflict("already a member of this workspace")
        row = MemberRow(role=role, joined_at=self._now(), display_name=user.display_name, email=user.email)
        self._s.members[key] = row
        return self._member(tenant_id, user.id, row)

    async def reinstate(self, tenant_id: uuid.UUID, user_id: str, role: Role) -> Member | None:
        self._write("members.reinstate")
        row = self._s.members.get((tenant_id, user_id))
        if row is None or row.removed_at is None:
            return None
        # Role reset, joined again now, profile kept.
        row.role, row.joined_at, row.removed_at = role, self._now(), None
        return self._member(tenant_id, user_id, row)

    async def list(self, tenant_id: uuid.UUID, *, limit: int, after: str | None) -> list[Member]:
        self._read("members.list")
        found = sorted(
            (user_id, row)
            for (t, user_id), row in self._s.members.items()
            if t == tenant_id and row.removed_at is None and (after is None or user_id > after)
        )
        return [self._member(tenant_id, user_id, row) for user_id, row in found[:limit]]

    async def set_role(self, tenant_id: uuid.UUID, user_id: str, role: Role) -> Member | None:
        self._write("members.set_role")
        row = self._s.members.get((tenant_id, user_id))
        if row is None or row.removed_at is not None:
            return None
        row.role = role
        return self._member(tenant_id, user_id, row)

    async def count_owners(self, tenant_id: uuid.UUID) -> int:
        self._read("members.count_owners")
        return sum(
            1
            for (t, _), row in self._s.members.items()
            if t == tenant_id and row.role is Role.OWNER and row.removed_at is None
        )

    async def remove(self, tenant_id: uuid.UUID, user_id: str, *, ban: bool) -> bool:
        self._write("members.remove")
        key = (tenant_id, user_id)
        row = self._s.members.get(key)
        if row is None or row.removed_at is not None:
            return False
        if ban:
            row.removed_at = self._now()
        else:
            del self._s.members[key]
        return True


class InMemoryChannelRepo(_Repo):
    def _name_taken(self, channel: Channel) -> bool:
        return any(
            c.tenant_id == channel.tenant_id
            and c.id != channel.id
            and c.name.lower() == channel.name.lower()
            and not c.is_dm  # DMs have no name of their own (sql/0006)
            for c in self._s.channels.values()
        )

    async def add(self, channel: Channel) -> None:
        self._write("channels.add")
        if channel.id in self._s.channels:
            raise Conflict("duplicate channel id")
        if channel.tenant_id not in self._s.tenants or (
            channel.created_by is not None and channel.created_by not in self._s.users
        ):
            raise Conflict("conflicting change: ForeignKeyViolationError")
        if self._name_taken(channel):
            raise Conflict(f"a channel named {channel.name!r} already exists")
        self._s.channels[channel.id] = channel

    async def count(self, tenant_id: uuid.UUID) -> int:
        self._read("channels.count")
        return sum(1 for c in self._s.channels.values() if c.tenant_id == tenant_id and not c.is_dm)

    async def get(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> Channel | None:
        self._read("channels.get")
        channel = self._s.channels.get(channel_id)
        return channel if channel is not None and channel.tenant_id == tenant_id else None

    async def list_visible(self, tenant_id: uuid.UUID, user_id: str) -> list[Channel]:
        self._read("channels.list_visible")
        visible = [
            c
            for c in self._s.channels.values()
            if c.tenant_id == tenant_id
            and not c.is_dm
            and (not c.is_private or (c.id, user_id) in self._s.channel_members)
        ]
        return sorted(visible, key=lambda c: c.name.lower())

    async def update(self, channel: Channel) -> None:
        self._write("channels.update")
        old = self._s.channels.get(channel.id)
        if old is None or old.tenant_id != channel.tenant_id:
            return
        if self._name_taken(channel):
            raise Conflict(f"a channel named {channel.name!r} already exists")
        self._s.channels[channel.id] = replace(old, name=channel.name, topic=channel.topic)

    async def delete(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> bool:
        self._write("channels.delete")
        for message_id in [
            m.id for m in self._s.messages.values() if m.tenant_id == tenant_id and m.channel_id == channel_id
        ]:
            del self._s.messages[message_id]
        channel = self._s.channels.get(channel_id)
        if channel is None or channel.tenant_id != tenant_id:
            return False
        del self._s.channels[channel_id]
        for key in [k for k in self._s.channel_members if k[0] == channel_id]:  # ON DELETE CASCADE
            del self._s.channel_members[key]
        return True

    async def member_role(self, channel_id: uuid.UUID, user_id: str) -> Role | None:
        self._read("channels.member_role")
        row = self._s.channel_members.get((channel_id, user_id))
        return row.role if row is not None else None

    async def add_member(self, tenant_id: uuid.UUID, channel_id: uuid.UUID, user_id: str, role: Role) -> bool:
        self._write("channels.add_member")
        if (
            channel_id not in self._s.channels
            or user_id not in self._s.users
            or tenant_id not in self._s.tenants
        ):
            raise Conflict("conflicting change: ForeignKeyViolationError")
        key = (channel_id, user_id)
        if key in self._s.channel_members:
            return False
        self._s.channel_members[key] = ChannelMemberRow(tenant_id, role, self._now())
        return True

    async def remove_member(self, channel_id: uuid.UUID, user_id: str) -> bool:
        self._write("channels.remove_member")
        return self._s.channel_members.pop((channel_id, user_id), None) is not None

    async def members(self, channel_id: uuid.UUID) -> list[ChannelMember]:
        self._read("channels.members")
        found = [
            ChannelMember(
                c, user_id, self._s.members[(row.tenant_id, user_id)].display_name, row.role, row.joined_at
            )
            for (c, user_id), row in self._s.channel_members.items()
            if c == channel_id
        ]
        return sorted(found, key=lambda m: (m.joined_at, m.user_id))

    async def remove_user_everywhere(self, tenant_id: uuid.UUID, user_id: str) -> None:
        self._write("channels.remove_user_everywhere")
        for key in [
            k for k, row in self._s.channel_members.items() if k[1] == user_id and row.tenant_id == tenant_id
        ]:
            del self._s.channel_members[key]


class InMemoryMessageRepo(_Repo):
    def _stored(self, m: Message, viewer: str) -> StoredMessage:
        emoji: dict[str, list[int]] = {}  # emoji -> [count, me, first change id]
        for (message_id, e, user), mark in sorted(self._s.reactions.items(), key=lambda kv: kv[1].change_id):
            if message_id == m.id and mark.added:
                entry = emoji.setdefault(e, [0, 0, mark.change_id])
                entry[0] += 1
                entry[1] |= user == viewer
        reactions = tuple(Reaction(e, c, bool(me)) for e, (c, me, _) in sorted(emoji.items()))
        edit_mark, pin_mark = self._s.marks.get(m.id, (0, 0))
        return StoredMessage(replace(m, reactions=() if m.deleted else reactions), edit_mark, pin_mark)

    async def page(
        self,
        channel_id: uuid.UUID,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        viewer: str,
        thread_id: int | None = None,
    ) -> list[StoredMessage]:
        self._read("messages.page")
        forward = after is not None and before is None  # as the PostgreSQL store: _PAGE_FORWARD
        found = [
            m
            for m in self._s.messages.values()
            if m.channel_id == channel_id
            and (before is None or m.id < before)
            and (after is None or m.id > after)
            and (m.thread_id == thread_id if thread_id is not None else m.listed_in_channel)
        ]
        found.sort(key=lambda m: m.id, reverse=not forward)
        # Rows keep the sender's name as it was at send time (sql/0003), like the log's copy.
        return [self._stored(m, viewer) for m in found[:limit]]

    async def by_ids(self, ids: Sequence[int], *, viewer: str) -> dict[int, StoredMessage]:
        self._read("messages.by_ids")
        return {i: self._stored(self._s.messages[i], viewer) for i in ids if i in self._s.messages}

    async def pinned(self, channel_id: uuid.UUID, *, viewer: str) -> list[StoredMessage]:
        self._read("messages.pinned")
        found = [
            self._stored(m, viewer)
            for m in self._s.messages.values()
            if m.channel_id == channel_id and m.pinned
        ]
        return sorted(found, key=lambda s: s.pin_mark, reverse=True)

    async def reaction_marks(self, keys: Sequence[ReactionKey]) -> dict[ReactionKey, ReactionMark]:
        self._read("messages.reaction_marks")
        return {k: self._s.reactions[k] for k in keys if k in self._s.reactions}


def _mention(
    state: State,
    entry: Message | MessageEdited,
    message_id: int,
    sender: str,
    named: tuple[str, ...],
    everyone: bool,
) -> None:
    for (channel_id, user_id), _ in state.channel_members.items():
        if channel_id == entry.channel_id and user_id != sender and (everyone or user_id in named):
            state.mentions.add((user_id, channel_id, message_id))


def persist_entry(state: State, entry: Entry) -> None:
    """What the persist sink does with one entry (a reference model of sql/0005 and persist_sink)."""
    rows = state.messages
    if isinstance(entry, Message):
        if entry.id in rows:
            return
        rows[entry.id] = entry
        _mention(state, entry, entry.id, entry.sender_id, entry.mentions, entry.mentions_channel)
        root = rows.get(entry.thread_id) if entry.thread_id is not None else None
        if root is not None:
            latest = max(filter(None, (root.last_reply_at, entry.created_at)))
            rows[root.id] = replace(root, reply_count=root.reply_count + 1, last_reply_at=latest)
        return
    target = rows.get(entry.message_id)
    if target is None:
        # The sink raises TargetMissing and the worker retries it later: only the floor's advance
        # over it (persist_up_to, with its message stored first) applies it.
        return
    edit_mark, pin_mark = state.marks.get(target.id, (0, 0))
    match entry:
        case MessageEdited():
            if not target.deleted and entry.id > edit_mark:
                rows[target.id] = replace(target, body=entry.body, edited_at=entry.at)
                state.marks[target.id] = (entry.id, pin_mark)
                state.mentions -= {m for m in state.mentions if m[2] == target.id}
                _mention(state, entry, target.id, entry.actor_id, entry.mentions, entry.mentions_channel)
        case MessageDeleted():
            if target.deleted:
                return
            rows[target.id] = replace(target, body="", edited_at=None, deleted=True, pinned=False)
            state.mentions -= {m for m in state.mentions if m[2] == target.id}
            for key in [k for k in state.reactions if k[0] == target.id]:
                del state.reactions[key]
            root = rows.get(target.thread_id) if target.thread_id is not None else None
            if root is not None:
                rows[root.id] = replace(root, reply_count=max(0, root.reply_count - 1))
        case ReactionChanged():
            key = (target.id, entry.emoji, entry.actor_id)
            mark = state.reactions.get(key)
            if not target.deleted and (mark is None or mark.change_id < entry.id):
                state.reactions[key] = ReactionMark(entry.added, entry.id)
        case PinChanged():
            if not target.deleted and entry.id > pin_mark:
                rows[target.id] = replace(target, pinned=entry.pinned)
                state.marks[target.id] = (edit_mark, entry.id)


class InMemoryWorkspaces(_Repo):
    async def memberships_of(self, user_id: str) -> list[tuple[Tenant, Member]]:
        self._read("workspaces.memberships_of")
        found = [
            (self._s.tenants[t], Member(t, u, row.display_name, row.email, row.role, row.joined_at))
            for (t, u), row in self._s.members.items()
            if u == user_id and row.removed_at is None
        ]
        return sorted(found, key=lambda pair: (pair[1].joined_at, pair[0].id))

    async def tenant_of_channel(self, channel_id: uuid.UUID) -> uuid.UUID | None:
        self._read("workspaces.tenant_of_channel")
        channel = self._s.channels.get(channel_id)
        return channel.tenant_id if channel else None

    async def delete(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        self._write("workspaces.delete")
        if self._s.tenants.pop(tenant_id, None) is None:
            return []
        channel_ids = [c.id for c in self._s.channels.values() if c.tenant_id == tenant_id]
        for channel_id in channel_ids:
            del self._s.channels[channel_id]
        s = self._s
        s.members = {k: v for k, v in s.members.items() if k[0] != tenant_id}
        s.channel_members = {k: v for k, v in s.channel_members.items() if v.tenant_id != tenant_id}
        s.messages = {k: m for k, m in s.messages.items() if m.tenant_id != tenant_id}
        s.reactions = {k: v for k, v in s.reactions.items() if k[0] in s.messages}
        s.mentions = {m for m in s.mentions if m[2] in s.messages}
        return channel_ids


class InMemoryOutbox(_Repo):
    async def add(self, event: DomainEvent) -> None:
        self._write("outbox.add")
        if event.id in self._s.outbox:
            raise Conflict("duplicate outbox event id")
        self._s.outbox[event.id] = event


class InMemoryTransaction:
    def __init__(self, store: InMemoryStore, *, writable: bool) -> None:
        self.tenants = InMemoryTenantRepo(store, writable=writable)
        self.users = InMemoryUserRepo(store, writable=writable)
        self.members = InMemoryMemberRepo(store, writable=writable)
        self.channels = InMemoryChannelRepo(store, writable=writable)
        self.messages = InMemoryMessageRepo(store, writable=writable)
        self.conversations = InMemoryConversations(store, writable=writable)
        self.workspaces = InMemoryWorkspaces(store, writable=writable)
        self.outbox = InMemoryOutbox(store, writable=writable)


class InMemoryStore:
    def __init__(self, clock: FixedClock | None = None) -> None:
        self.clock = clock or FixedClock()
        self.state = State()
        self.commits = 0
        self.rollbacks = 0
        self.operations: collections.Counter[str] = collections.Counter()  # reads and writes by name
        self.reads_take_a_turn = False
        self._in_transaction = False
        self._lock = asyncio.Lock()
        self._failures: dict[str, Exception] = {}
        self.before_next_transaction: Callable[[], Awaitable[None]] | None = None

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def fail_next(self, op: str, exc: Exception | None = None) -> None:
        """Make the next call of ``op`` (e.g. ``"outbox.add"``) raise ``exc`` (default: Unavailable)."""
        self._failures[op] = exc or Unavailable(f"PostgreSQL: injected failure in {op}")

    def _maybe_fail(self, op: str) -> None:
        self.operations[op] += 1
        exc = self._failures.pop(op, None)
        if exc is not None:
            raise exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[InMemoryTransaction]:
        hook, self.before_next_transaction = self.before_next_transaction, None
        if hook is not None:
            await hook()  # e.g. a rival request that commits just before this transaction begins
        async with self._lock:
            snapshot = copy.deepcopy(self.state)
            self._in_transaction = True
            try:
                yield InMemoryTransaction(self, writable=True)
            except BaseException:
                self.state = snapshot
                self.rollbacks += 1
                raise
            finally:
                self._in_transaction = False
            self.commits += 1

    @asynccontextmanager
    async def read(self) -> AsyncIterator[InMemoryTransaction]:
        if self.reads_take_a_turn:
            await asyncio.sleep(0)  # like a real database round trip: other tasks run meanwhile
        yield InMemoryTransaction(self, writable=False)

    def snapshot(self) -> AbstractAsyncContextManager[InMemoryTransaction]:
        return self.read()  # one task's reads see no interleaved write here unless it awaits

    # -- helpers for tests and the other fakes ------------------------------------------------------
    def outbox_events(self) -> list[DomainEvent]:
        return list(self.state.outbox.values())

    def member_row(self, tenant_id: uuid.UUID, user_id: str) -> MemberRow | None:
        return self.state.members.get((tenant_id, user_id))

    def channel_ids_of(self, user_id: str) -> set[uuid.UUID]:
        return {c for c, u in self.state.channel_members if u == user_id}


# -- message log ------------------------------------------------------------------------------------


class FakeMessageLog:
    """The durable message log: ids are stream sequences; the persist worker is ``persist_up_to``."""

    def __init__(self, store: InMemoryStore, *, first_id: int = 1) -> None:
        self._store = store
        self._next_id = first_id
        self.stream: dict[int, Entry] = {}
        self.floor = 0  # every id at or below it is persisted (the persist consumer's ack floor)
        self.forgotten: list[tuple[uuid.UUID, uuid.UUID]] = []
        self.forgotten_tenants: list[uuid.UUID] = []
        self.fail_with: EchonatsError | None = None
        self.read_fails_with: EchonatsError | None = None  # read_channel raises it
        self.reads: list[tuple[int, int]] = []  # read_channel's (start, limit), in call order
        self._dedupe: dict[str, int] = {}

    async def begin_append(self, message: NewMessage) -> asyncio.Future[Appended]:
        return self._begin(message.dedupe_key, message.stored_as)

    async def begin_change(self, change: Change) -> asyncio.Future[Appended]:
        return self._begin(change_dedupe_key(change), lambda i: replace(change, id=i))

    def _begin(self, key: str | None, stored_as: Callable[[int], Entry]) -> asyncio.Future[Appended]:
        acknowledgement: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        if self.fail_with is not None:
            acknowledgement.set_exception(self.fail_with)  # took the write, never acknowledged it
        else:
            acknowledgement.set_result(self._append(key, stored_as))
        return acknowledgement

    def _append(self, key: str | None, stored_as: Callable[[int], Entry]) -> Appended:
        if key is not None and key in self._dedupe:
            return Appended(self._dedupe[key], duplicate=True)
        entry_id = self._next_id
        self._next_id += 1
        self.stream[entry_id] = stored_as(entry_id)
        if key is not None:
            self._dedupe[key] = entry_id
        return Appended(entry_id, duplicate=False)

    async def get(self, entry_id: int) -> Entry | None:
        return self.stream.get(entry_id)

    async def persisted_floor(self) -> int:
        return self.floor

    async def tail(
        self, tenant_id: uuid.UUID, channel_id: uuid.UUID, *, above: int | None = None
    ) -> list[Entry]:
        floor = self.floor if above is None else above
        return [
            e
            for entry_id, e in sorted(self.stream.items())
            if entry_id > floor and e.tenant_id == tenant_id and e.channel_id == channel_id
        ]

    async def read_channel(
        self, tenant_id: uuid.UUID, channel_id: uuid.UUID, *, start: int, limit: int
    ) -> tuple[list[Entry], bool]:
        self.reads.append((start, limit))
        if self.read_fails_with is not None:
            raise self.read_fails_with
        found = [
            e
            for entry_id, e in sorted(self.stream.items())
            if entry_id >= start and e.tenant_id == tenant_id and e.channel_id == channel_id
        ]
        return found[:limit], len(found) > limit

    async def first_sequence(self) -> int:
        return min(self.stream, default=self._next_id)

    async def forget_channel(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> None:
        self.forgotten.append((tenant_id, channel_id))
        for entry_id in [
            i for i, e in self.stream.items() if e.tenant_id == tenant_id and e.channel_id == channel_id
        ]:
            del self.stream[entry_id]

    async def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        self.forgotten_tenants.append(tenant_id)
        for entry_id in [i for i, e in self.stream.items() if e.tenant_id == tenant_id]:
            del self.stream[entry_id]

    # -- the persist worker -------------------------------------------------------------------------
    def persist_up_to(self, message_id: int) -> None:
        """Store every logged message with an id <= ``message_id`` and move the floor there."""
        for i, entry in sorted(self.stream.items()):
            if self.floor < i <= message_id:
                persist_entry(self._store.state, entry)
        self.floor = max(self.floor, min(message_id, self.last_id))  # acks cannot pass the tail

    def persist_above_floor(self, entry_ids: Sequence[int]) -> None:
        """Store these entries without moving the floor (acked, but the floor waits for an earlier
        one): reads then see them in the store and in the tail, and must count them once."""
        for i in sorted(entry_ids):
            persist_entry(self._store.state, self.stream[i])  # a change without its message: not yet

    def persist_all(self) -> None:
        self.persist_up_to(self._next_id - 1)

    @property
    def last_id(self) -> int:
        return self._next_id - 1


from tests.unit.fake_conversations import InMemoryConversations  # noqa: E402 (it uses _Repo above)

# -- events -----------------------------------------------------------------------------------------


class RecordingPublisher:
    """Records published events and, like the real publisher, forgets their outbox rows."""

    def __init__(
        self,
        store: InMemoryStore | None = None,
        *,
        on_publish: Callable[[Sequence[DomainEvent]], None] | None = None,
    ) -> None:
        self._store = store
        self.on_publish = on_publish
        self.published: list[DomainEvent] = []
        self.attempts = 0
        self.during_transaction: list[bool] = []  # per attempt: was a store transaction open?
        self.fail_with: EchonatsError | None = None

    def fail(self, exc: EchonatsError | None = None) -> None:
        self.fail_with = exc or Unavailable("events not published yet: NATS unreachable")

    async def publish(self, events: Sequence[DomainEvent]) -> None:
        self.attempts += 1
        if self._store is not None:
            self.during_transaction.append(self._store.in_transaction)
        if self.on_publish is not None:
            self.on_publish(events)
        if self.fail_with is not None:
            raise self.fail_with
        self.published.extend(events)
        if self._store is not None:
            for event in events:
                self._store.state.outbox.pop(event.id, None)

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.published]

    def clear(self) -> None:
        """Forget what was recorded so far (attempts included)."""
        self.published.clear()
        self.during_transaction.clear()
        self.attempts = 0


# -- a wired-up world -------------------------------------------------------------------------------

PLATFORM_ADMIN = Principal(
    user_id="platform-admin",
    tenant_id=None,
    display_name="Platform admin",
    roles=frozenset({PLATFORM_ADMIN_ROLE}),
)


def principal(user_id: str, tenant_id: uuid.UUID | None, display_name: str | None = None) -> Principal:
    return Principal(
        user_id=user_id,
        tenant_id=tenant_id,
        display_name=display_name or user_id.title(),
        email=f"{user_id}@example.com",
    )


@dataclass
class Harness:
    """The use cases wired to the fakes, with shortcuts for the usual setup."""

    clock: FixedClock
    store: InMemoryStore
    log: FakeMessageLog
    publisher: RecordingPublisher
    services: Services

    @classmethod
    def build(cls, *, first_message_id: int = 1) -> Harness:
        clock = FixedClock()
        store = InMemoryStore(clock)
        log = FakeMessageLog(store, first_id=first_message_id)
        publisher = RecordingPublisher(store)
        services = Services.build(store=store, log=log, publisher=publisher, clock=clock)
        return cls(clock, store, log, publisher, services)

    async def new_tenant(self, name: str = "Acme") -> Caller:
        """A tenant and its owner, as a resolved caller."""
        created = await self.services.membership.create_tenant(
            PLATFORM_ADMIN, name=name, admin_email="owner@example.com", admin_display_name="Owner"
        )
        return await self.services.membership.resolve(
            principal(created.admin.user_id, created.tenant.id, "Owner")
        )

    async def member(self, tenant: Caller, user_id: str, role: Role = Role.MEMBER) -> Caller:
        """A user of ``tenant``'s workspace (provisioned on first resolve), with ``role``."""
        caller = await self.services.membership.resolve(principal(user_id, tenant.tenant_id))
        if role is not Role.MEMBER:
            await self.services.membership.change_role(tenant, user_id, role)
            caller = await self.services.membership.resolve(caller.principal)
        return caller

    async def resolve(self, caller: Caller) -> Caller:
        return await self.services.membership.resolve(caller.principal)
