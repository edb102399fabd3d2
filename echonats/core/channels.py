"""Channels and channel membership.

Visibility: public channels are visible to every member of the tenant; private channels only to
their members — to anyone else a private channel does not exist (404, never 403, so ids leak
nothing). Moderation (rename, delete, remove others) needs a channel owner/admin or a workspace
owner/admin.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from echonats import model
from echonats.core.access import ChannelAccess
from echonats.core.caller import Caller
from echonats.core.event_sink import EventSink
from echonats.core.ports import Clock, MessageLog, Store, Transaction
from echonats.model import Channel, ChannelMember, Role
from echonats.model import events as ev
from echonats.model.errors import Conflict, Forbidden, LimitExceeded, NotFound


class ChannelService:
    def __init__(
        self, store: Store, sink: EventSink, clock: Clock, log: MessageLog, access: ChannelAccess
    ) -> None:
        self._store = store
        self._sink = sink
        self._clock = clock
        self._log = log
        self._access = access

    async def create(self, caller: Caller, *, name: str, is_private: bool, topic: str = "") -> Channel:
        now = self._clock.now()
        channel = Channel(
            id=uuid.uuid4(),
            tenant_id=caller.tenant_id,
            name=model.channel_name(name),
            topic=model.channel_topic(topic),
            is_private=is_private,
            created_by=caller.user_id,
            created_at=now,
        )
        async with self._sink.transaction() as (tx, pending):
            tenant = await tx.tenants.get(caller.tenant_id, for_update=True)  # serialises the quota check
            if tenant is None:
                raise NotFound("tenant not found")
            if await tx.channels.count(caller.tenant_id) >= tenant.max_channels:
                raise LimitExceeded(
                    f"this workspace has reached its limit of {tenant.max_channels} channels",
                    details={"maxChannels": tenant.max_channels},
                )
            await tx.channels.add(channel)
            await tx.channels.add_member(caller.tenant_id, channel.id, caller.user_id, Role.OWNER)
            pending.append(
                ev.ChannelCreated(
                    tenant_id=caller.tenant_id,
                    occurred_at=now,
                    actor_id=caller.user_id,
                    payload=ev.ChannelData.of(channel),
                )
            )
        return channel

    async def list_visible(self, caller: Caller) -> list[Channel]:
        async with self._store.read() as tx:
            return await tx.channels.list_visible(caller.tenant_id, caller.user_id)

    async def get(self, caller: Caller, channel_id: uuid.UUID) -> Channel:
        async with self._store.read() as tx:
            return await self._visible(tx, caller, channel_id)

    async def update(
        self, caller: Caller, channel_id: uuid.UUID, *, name: str | None, topic: str | None
    ) -> Channel:
        async with self._sink.transaction() as (tx, pending):
            channel = await self._visible(tx, caller, channel_id)
            _fixed_membership(channel)
            await self._require_moderator(tx, caller, channel, "edit this channel")
            updated = replace(
                channel,
                name=model.channel_name(name) if name is not None else channel.name,
                topic=model.channel_topic(topic) if topic is not None else channel.topic,
            )
            await tx.channels.update(updated)
            pending.append(
                ev.ChannelUpdated(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.ChannelData.of(updated),
                )
            )
        return updated

    async def delete(self, caller: Caller, channel_id: uuid.UUID) -> None:
        async with self._sink.transaction() as (tx, pending):
            channel = await self._visible(tx, caller, channel_id)
            _fixed_membership(channel)
            await self._require_moderator(tx, caller, channel, "delete this channel")
            await tx.channels.delete(caller.tenant_id, channel_id)
            pending.append(
                ev.ChannelDeleted(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.ChannelData.of(channel),
                )
            )
        self._access.forget_channel(channel_id)
        # After commit: the log's copies go too, so replays cannot resurrect the channel.
        await self._log.forget_channel(caller.tenant_id, channel_id)

    async def members(self, caller: Caller, channel_id: uuid.UUID) -> list[ChannelMember]:
        async with self._store.read() as tx:
            await self._visible(tx, caller, channel_id)
            return await tx.channels.members(channel_id)

    async def add_member(self, caller: Caller, channel_id: uuid.UUID, user_id: str) -> None:
        user_id = model.user_id(user_id)  # first: the answer must not depend on the channel
        async with self._sink.transaction() as (tx, pending):
            # Visible means: public, or private with the caller as a member (who may invite).
            channel = await self._visible(tx, caller, channel_id)
            _fixed_membership(channel)
            target = (await tx.members.state(caller.tenant_id, user_id)).member
            if target is None:
                raise NotFound("no member with this id in the workspace")
            if not await tx.channels.add_member(caller.tenant_id, channel_id, user_id, Role.MEMBER):
                raise Conflict("already a member of this channel")
            pending.append(
                ev.ChannelMemberAdded(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.ChannelMemberAddedData(
                        channel_id=channel_id,
                        user_id=user_id,
                        added_by=caller.user_id,
                        channel=ev.ChannelData.of(channel),
                    ),
                )
            )

    async def remove_member(self, caller: Caller, channel_id: uuid.UUID, user_id: str) -> None:
        user_id = model.user_id(user_id)  # first: the answer must not depend on the channel
        async with self._sink.transaction() as (tx, pending):
            channel = await self._visible(tx, caller, channel_id)
            _fixed_membership(channel)
            if user_id != caller.user_id:
                await self._require_moderator(tx, caller, channel, "remove other members")
            if not await tx.channels.remove_member(channel_id, user_id):
                raise NotFound("not a member of this channel")
            pending.append(
                ev.ChannelMemberRemoved(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.ChannelMemberRemovedData(
                        channel_id=channel_id, user_id=user_id, removed_by=caller.user_id
                    ),
                )
            )
        self._access.forget_member(channel_id, user_id)

    async def join(self, caller: Caller, channel_id: uuid.UUID) -> None:
        async with self._sink.transaction() as (tx, pending):
            channel = await self._visible(tx, caller, channel_id)
            if channel.is_private:
                return  # visible means the caller is already a member: nothing to join
            if not await tx.channels.add_member(caller.tenant_id, channel_id, caller.user_id, Role.MEMBER):
                return  # joining twice is a no-op
            pending.append(
                ev.ChannelMemberAdded(
                    tenant_id=caller.tenant_id,
                    occurred_at=self._clock.now(),
                    actor_id=caller.user_id,
                    payload=ev.ChannelMemberAddedData(
                        channel_id=channel_id,
                        user_id=caller.user_id,
                        added_by=caller.user_id,
                        channel=ev.ChannelData.of(channel),
                    ),
                )
            )

    async def leave(self, caller: Caller, channel_id: uuid.UUID) -> None:
        await self.remove_member(caller, channel_id, caller.user_id)

    async def _visible(self, tx: Transaction, caller: Caller, channel_id: uuid.UUID) -> Channel:
        channel = await tx.channels.get(caller.tenant_id, channel_id)
        if channel is None:
            raise NotFound("channel not found")
        if channel.is_private and await tx.channels.member_role(channel_id, caller.user_id) is None:
            raise NotFound("channel not found")
        return channel

    @staticmethod
    async def _require_moderator(tx: Transaction, caller: Caller, channel: Channel, action: str) -> None:
        if caller.role.can_administer:
            return
        role = await tx.channels.member_role(channel.id, caller.user_id)
        if role is None or not role.can_administer:
            raise Forbidden(f"only channel owners/admins or workspace admins may {action}")


def _fixed_membership(channel: Channel) -> None:
    """A DM is exactly its members, for good: no one joins, leaves, renames or deletes it."""
    if channel.is_dm:
        raise Forbidden("a direct message's members, name and existence are fixed")
