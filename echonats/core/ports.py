"""Ports: the small interfaces the use cases depend on. Adapters implement them; tests fake them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from echonats.model import (
    Change,
    Channel,
    ChannelMember,
    DomainEvent,
    Entry,
    Member,
    Message,
    NewMessage,
    PresenceChange,
    PresenceStatus,
    Principal,
    Role,
    Tenant,
    Unread,
    User,
    UserStatus,
)
from echonats.model.errors import RateLimited


class DependencyProbe(Protocol):
    """A reachability check for one external dependency, used by ``/ready``."""

    name: str

    async def check(self) -> None:
        """Return when the dependency answers; raise ``Unavailable`` otherwise."""
        ...


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal:
        """Return the caller; raise ``Unauthenticated`` for any token that is not valid."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class TenantLimits:
    max_channels: int | None = None
    max_messages_per_second: int | None = None


class TenantRepo(Protocol):
    async def add(self, tenant: Tenant) -> None: ...
    async def get(self, tenant_id: uuid.UUID, *, for_update: bool = False) -> Tenant | None: ...
    async def list(self, *, limit: int, after: uuid.UUID | None) -> list[Tenant]: ...
    async def update_limits(self, tenant_id: uuid.UUID, limits: TenantLimits) -> Tenant | None: ...


class UserRepo(Protocol):
    async def ensure(self, user: User) -> None:
        """Insert the identity if it is new; an existing one is left unchanged (the profile a
        tenant shows is its member row's, see ``MemberRepo.add``)."""
        ...


@dataclass(frozen=True, slots=True)
class MembershipState:
    member: Member | None
    removed: bool


class MemberRepo(Protocol):
    async def state(self, tenant_id: uuid.UUID, user_id: str) -> MembershipState: ...
    async def add(self, tenant_id: uuid.UUID, user: User, role: Role) -> Member:
        """Add a member showing ``user``'s display name and email in this tenant only; raises
        Conflict if the user has a member row here already (active or removed)."""
        ...

    async def reinstate(self, tenant_id: uuid.UUID, user_id: str, role: Role) -> Member | None:
        """Undo a removal (profile kept, joined again now); None if the user is not removed."""
        ...

    async def list(self, tenant_id: uuid.UUID, *, limit: int, after: str | None) -> list[Member]: ...
    async def set_role(self, tenant_id: uuid.UUID, user_id: str, role: Role) -> Member | None: ...
    async def count_owners(self, tenant_id: uuid.UUID) -> int: ...
    async def remove(self, tenant_id: uuid.UUID, user_id: str, *, ban: bool) -> bool: ...
    async def set_status(self, tenant_id: uuid.UUID, user_id: str, status: UserStatus | None) -> bool:
        """Set (None: clear) an active member's own status; False if not an active member."""
        ...

    async def statuses(self, tenant_id: uuid.UUID, user_ids: Sequence[str]) -> dict[str, UserStatus]:
        """The statuses set (expired ones included) of those of ``user_ids`` that have one."""
        ...

    async def active_ids(self, tenant_id: uuid.UUID, *, limit: int) -> Sequence[str]:
        """Active members' ids, in id order, at most ``limit``."""
        ...


class ChannelRepo(Protocol):
    async def add(self, channel: Channel) -> None: ...
    async def count(self, tenant_id: uuid.UUID) -> int: ...
    async def get(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> Channel | None: ...
    async def list_visible(self, tenant_id: uuid.UUID, user_id: str) -> list[Channel]: ...
    async def update(self, channel: Channel) -> None: ...
    async def delete(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> bool: ...
    async def member_role(self, channel_id: uuid.UUID, user_id: str) -> Role | None: ...
    async def add_member(self, tenant_id: uuid.UUID, channel_id: uuid.UUID, user_id: str, role: Role) -> bool:
        """Return False if the user was a member already."""
        ...

    async def remove_member(self, channel_id: uuid.UUID, user_id: str) -> bool: ...
    async def members(self, channel_id: uuid.UUID) -> list[ChannelMember]: ...
    async def remove_user_everywhere(self, tenant_id: uuid.UUID, user_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message in its latest state as the store has it, with the id of the latest edit and pin
    change applied to it: folding the log's tail onto it skips what the store already applied."""

    message: Message
    edit_mark: int = 0
    pin_mark: int = 0


# (message id, emoji, user id): one user's reaction with one emoji on one message.
ReactionKey = tuple[int, str, str]


@dataclass(frozen=True, slots=True)
class ReactionMark:
    """A reaction's state in the store and the id of the change that set it."""

    added: bool
    change_id: int


class MessageRepo(Protocol):
    """Persisted messages in their latest state; ``viewer`` decides each reaction's ``me``."""

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
        """Strictly between the cursors, newest first (oldest first with ``after`` alone): the
        channel's listing (roots, plain messages, replies sent to the channel too), or with
        ``thread_id`` that thread's replies."""
        ...

    async def by_ids(self, ids: Sequence[int], *, viewer: str) -> dict[int, StoredMessage]:
        """Those of ``ids`` that are persisted."""
        ...

    async def pinned(self, channel_id: uuid.UUID, *, viewer: str) -> list[StoredMessage]:
        """The channel's pinned messages, most recently pinned first."""
        ...

    async def reaction_marks(self, keys: Sequence[ReactionKey]) -> dict[ReactionKey, ReactionMark]: ...


class ConversationRepo(Protocol):
    """DMs, read state, unread and mention counts."""

    async def open_dm(self, channel: Channel, key: str, member_ids: Sequence[str]) -> tuple[Channel, bool]:
        """The DM of exactly these members: ``channel`` with its members added if no DM has this
        ``key`` in the tenant, else the existing one (also when another transaction is creating it
        concurrently). True when created."""
        ...

    async def dms_of(self, tenant_id: uuid.UUID, user_id: str) -> list[tuple[Channel, tuple[str, ...]]]:
        """The user's DMs with their member ids, newest first."""
        ...

    async def mark_read(
        self, channel_id: uuid.UUID, user_id: str, message_id: int, *, forward_only: bool
    ) -> int | None:
        """Set the member's last read id (only upwards if ``forward_only``); the id now stored, or
        None if the user is not a member of the channel."""
        ...

    async def unreads(self, tenant_id: uuid.UUID, user_id: str, cap: int) -> list[Unread]: ...

    async def mentions_of(
        self, tenant_id: uuid.UUID, user_id: str, *, before: int | None, limit: int
    ) -> list[int]:
        """Ids of the messages (not deleted) that mention the user, newest first."""
        ...

    async def member_count(self, channel_id: uuid.UUID) -> int: ...


class WorkspaceRepo(Protocol):
    """A user's workspaces across tenants (tokens without a tenant claim), and deleting one."""

    async def memberships_of(self, user_id: str) -> list[tuple[Tenant, Member]]:
        """The user's active memberships, oldest first."""
        ...

    async def tenant_of_channel(self, channel_id: uuid.UUID) -> uuid.UUID | None: ...

    async def delete(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        """Delete the tenant with its members, channels and messages; its channels' ids (none if
        it did not exist)."""
        ...


class Outbox(Protocol):
    async def add(self, event: DomainEvent) -> None: ...


class Transaction(Protocol):
    """Repositories sharing one database transaction (read-only properties: adapters may narrow)."""

    @property
    def tenants(self) -> TenantRepo: ...
    @property
    def users(self) -> UserRepo: ...
    @property
    def members(self) -> MemberRepo: ...
    @property
    def channels(self) -> ChannelRepo: ...
    @property
    def messages(self) -> MessageRepo: ...
    @property
    def conversations(self) -> ConversationRepo: ...
    @property
    def workspaces(self) -> WorkspaceRepo: ...

    @property
    def outbox(self) -> Outbox: ...


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Commit on normal exit, roll back on exception."""
        ...

    def read(self) -> AbstractAsyncContextManager[Transaction]:
        """Read-only access (no transaction needed for single statements)."""
        ...

    def snapshot(self) -> AbstractAsyncContextManager[Transaction]:
        """Read-only access where every statement sees one snapshot, taken at the first one
        (REPEATABLE READ): what the store held at that moment, nothing committed later."""
        ...


class EventPublisher(Protocol):
    async def publish(self, events: Sequence[DomainEvent]) -> None:
        """Publish committed events (dedupe on event id) and forget their outbox rows."""
        ...


@dataclass(frozen=True, slots=True)
class Appended:
    message_id: int
    duplicate: bool


class MessageLog(Protocol):
    """The durable message log (JetStream): append, and read what may not be persisted yet."""

    async def begin_append(self, message: NewMessage) -> asyncio.Future[Appended]:
        """Send ``message`` to the log and return once it has its place in the log's order, without
        waiting for the acknowledgement: the future resolves to it (``Unavailable`` if none comes
        in time). Calls made one after another are stored in that order."""
        ...

    async def begin_change(self, change: Change) -> asyncio.Future[Appended]:
        """Like ``begin_append``, for a change to a message (its ``id`` is ignored: the log gives
        one). A resend with the same actor and nonce resolves to the original (``duplicate``)."""
        ...

    async def get(self, entry_id: int) -> Entry | None: ...

    async def persisted_floor(self) -> int:
        """Every entry id at or below this is in the store (the persist worker's ack floor)."""
        ...

    async def tail(
        self, tenant_id: uuid.UUID, channel_id: uuid.UUID, *, above: int | None = None
    ) -> list[Entry]:
        """Every entry of the channel above the persist worker's ack floor (everything at or below
        it is in the store), or above ``above`` (a floor read before), oldest first. Some of them
        may be in the store too: folding them is idempotent. ``Unavailable`` if the tail is too long
        to read (the worker is far behind)."""
        ...

    async def read_channel(
        self, tenant_id: uuid.UUID, channel_id: uuid.UUID, *, start: int, limit: int
    ) -> tuple[list[Entry], bool]:
        """A channel's entries with id >= ``start``, oldest first, at most ``limit``; and whether
        more exist. ``Unavailable`` if the log cannot be read."""
        ...

    async def first_sequence(self) -> int:
        """The oldest id the log still holds (older ones were aged out)."""
        ...

    async def forget_channel(self, tenant_id: uuid.UUID, channel_id: uuid.UUID) -> None: ...

    async def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        """Purge a deleted tenant's messages and domain events from the streams."""
        ...


class RateLimiter(Protocol):
    async def acquire_many(
        self,
        tenant_id: uuid.UUID,
        user_id: str,
        count: int,
        *,
        tenant_per_second: int,
        resend_keys: Sequence[str | None] = (),
    ) -> tuple[int, RateLimited | None]:
        """Take up to ``count`` consecutive sends from the user's and the tenant's budgets,
        atomically (each from both or neither), in order: return how many were taken (the first
        ones) and, if fewer than ``count``, the refusal for the rest (``RateLimited`` with
        ``retry_after_ms`` and ``limit``).

        ``resend_keys`` are the sends' dedupe keys (None: no nonce). A send whose key this
        limiter took within the log's dedupe window is a resend, answered by the log with the
        original: it is granted and costs nothing (an adapter may forget keys; then it charges)."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectionBeat:
    tenant_id: uuid.UUID
    user_id: str
    connection_id: str
    last_active_at: float  # unix seconds of the connection's last client frame


class PresenceStore(Protocol):
    """Presence per user across all gateways: online while any connection is alive and active,
    idle when all are inactive, offline when none is left (closed, or its heartbeat lapsed)."""

    async def connect(self, beat: ConnectionBeat) -> PresenceChange | None: ...
    async def disconnect(
        self, tenant_id: uuid.UUID, user_id: str, connection_id: str
    ) -> PresenceChange | None: ...
    async def heartbeat(self, beats: Sequence[ConnectionBeat]) -> list[PresenceChange]: ...
    async def sweep(self) -> list[PresenceChange]:
        """Expire lapsed connections and apply idle transitions that are due (run by the worker)."""
        ...

    async def statuses(self, tenant_id: uuid.UUID, user_ids: Sequence[str]) -> dict[str, PresenceStatus]: ...


class TypingThrottle(Protocol):
    async def allow(self, tenant_id: uuid.UUID, channel_id: uuid.UUID, user_id: str) -> bool:
        """True at most once per interval per (channel, user), across all gateways."""
        ...


# -- the live side: what a gateway subscribes to and publishes (core NATS in production) ----------


@dataclass(frozen=True, slots=True)
class TypingNotice:
    user_id: str
    display_name: str


class Interest(Protocol):
    """A registered subscription; ``cancel`` stops its deliveries and never raises."""

    async def cancel(self) -> None: ...


# A stored entry of the channel (a message or a change) and the id of the channel's entry before it
# (0: none), so a subscriber detects a delivery it missed. Undecodable deliveries are dropped (and
# logged) by the feed.
OnEntry = Callable[[Entry, int], Awaitable[None]]
OnTyping = Callable[[TypingNotice], None]
OnPresence = Callable[[PresenceChange], None]
OnEvent = Callable[[DomainEvent], None]
# A tenant's domain event and its position in the event log (the live feed's id).
OnFeed = Callable[[DomainEvent, int], None]


class LiveFeed(Protocol):
    """Deliveries to this process as they happen. Each ``watch_*`` returns once the interest is
    registered at the server: anything published afterwards is delivered. Callbacks of one
    interest run one at a time, in publication order. ``Unavailable`` if it cannot register."""

    async def watch_channel(
        self, tenant_id: uuid.UUID, channel_id: uuid.UUID, on_entry: OnEntry, on_typing: OnTyping
    ) -> Interest: ...

    async def watch_presence(self, tenant_id: uuid.UUID, on_presence: OnPresence) -> Interest: ...

    async def watch_events(
        self, tenant_id: uuid.UUID | None, event_types: Sequence[str], on_event: OnEvent
    ) -> Interest:
        """Domain events of these types, of one tenant or (None) of every tenant."""
        ...

    async def watch_feed(self, tenant_id: uuid.UUID, on_feed: OnFeed) -> Interest:
        """Every domain event of the tenant once stored, with its position in the event log."""
        ...


class FeedLog(Protocol):
    """The durable log of a tenant's domain events, for a socket catching up on its live feed."""

    async def read_feed(
        self, tenant_id: uuid.UUID, *, start: int, limit: int
    ) -> tuple[list[tuple[int, DomainEvent]], bool]:
        """The tenant's events with position >= ``start``, oldest first, at most ``limit``; and
        whether more exist. Undecodable ones are skipped. ``Unavailable`` if it cannot be read."""
        ...

    async def first_feed_position(self) -> int:
        """The oldest position the log still holds."""
        ...


class TypingPublisher(Protocol):
    async def publish_typing(self, tenant_id: uuid.UUID, channel_id: uuid.UUID, notice: TypingNotice) -> None:
        """Best effort and ephemeral; ``Unavailable`` if it cannot be sent."""
        ...


class PresencePublisher(Protocol):
    async def publish_presence(self, change: PresenceChange) -> None:
        """Best effort and ephemeral; ``Unavailable`` if it cannot be sent."""
        ...
