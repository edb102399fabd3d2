"""Presence as a user's devices see it: the connection-based status (online/idle/offline, from
the presence store) next to the status the user sets by hand (away, do not disturb, a custom text
until a time; kept with the membership, announced on every socket of the workspace)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from echonats import model
from echonats.core.access import ChannelAccess
from echonats.core.caller import Caller
from echonats.core.event_sink import EventSink
from echonats.core.ports import Clock, PresenceStore, Store
from echonats.model import ManualPresence, PresenceStatus, UserStatus
from echonats.model import events as ev
from echonats.model.errors import NotFound, ValidationFailed

MAX_SNAPSHOT = 1000  # users in one presence snapshot


@dataclass(frozen=True, slots=True)
class PresenceView:
    user_id: str
    status: PresenceStatus
    own: UserStatus | None  # None: nothing set, or it expired


class StatusService:
    def __init__(self, store: Store, sink: EventSink, clock: Clock, access: ChannelAccess) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._access = access

    async def set_status(
        self, caller: Caller, *, presence: ManualPresence | None, text: str, expires_at: datetime | None
    ) -> UserStatus | None:
        """Set the caller's own status (nothing at all clears it)."""
        cleaned = model.status_text(text)
        now = self._clock.now()
        if expires_at is not None and expires_at <= now:
            raise ValidationFailed("expiresAt must be in the future", details={"field": "expiresAt"})
        status = UserStatus(presence, cleaned, expires_at) if presence is not None or cleaned else None
        async with self._sink.transaction() as (tx, pending):
            if not await tx.members.set_status(caller.tenant_id, caller.user_id, status):
                raise NotFound("not a member of this workspace")
            pending.append(
                ev.MemberStatusChanged(
                    tenant_id=caller.tenant_id,
                    occurred_at=now,
                    actor_id=caller.user_id,
                    payload=ev.StatusData(
                        user_id=caller.user_id,
                        presence=presence.value if presence else None,
                        text=cleaned,
                        expires_at=expires_at,
                    ),
                )
            )
        return status

    async def views(
        self, caller: Caller, presence: PresenceStore, user_ids: Sequence[str]
    ) -> list[PresenceView]:
        """The presence of these users of the caller's workspace, in the order asked."""
        live = await presence.statuses(caller.tenant_id, user_ids)
        async with self._store.read() as tx:
            own = await tx.members.statuses(caller.tenant_id, user_ids)
        now = self._clock.now()
        return [
            PresenceView(
                u, live.get(u, PresenceStatus.OFFLINE), s if (s := own.get(u)) and s.active(now) else None
            )
            for u in user_ids
        ]

    async def snapshot(
        self, caller: Caller, presence: PresenceStore, channel_id: uuid.UUID | None
    ) -> list[PresenceView]:
        """Who is not offline (or has a status set): among a channel's members (one the caller may
        read), or the workspace's first 1000 members."""
        if channel_id is None:
            async with self._store.read() as tx:
                ids = list(await tx.members.active_ids(caller.tenant_id, limit=MAX_SNAPSHOT))
        else:
            await self._access.readable(caller, channel_id)  # NotFound for a channel it cannot see
            async with self._store.read() as tx:
                ids = [m.user_id for m in await tx.channels.members(channel_id)][:MAX_SNAPSHOT]
        views = await self.views(caller, presence, ids)
        return [v for v in views if v.status is not PresenceStatus.OFFLINE or v.own is not None]
