"""The use cases an edge (REST, WebSocket, STOMP) drives, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from echonats.core.access import ChannelAccess, TenantLimitsCache
from echonats.core.changes import MessageChanges
from echonats.core.channels import ChannelService
from echonats.core.conversations import ConversationService
from echonats.core.event_sink import EventSink, UtcClock
from echonats.core.membership import MembershipService
from echonats.core.messaging import MessagingService
from echonats.core.ports import Clock, EventPublisher, MessageLog, RateLimiter, Store
from echonats.core.status import StatusService
from echonats.core.workspaces import WorkspaceService


@dataclass(frozen=True, slots=True)
class Services:
    membership: MembershipService
    channels: ChannelService
    messaging: MessagingService
    changes: MessageChanges
    conversations: ConversationService
    status: StatusService
    workspaces: WorkspaceService
    access: ChannelAccess
    tenant_limits: TenantLimitsCache

    @classmethod
    def build(
        cls,
        *,
        store: Store,
        log: MessageLog,
        publisher: EventPublisher,
        clock: Clock | None = None,
        limiter: RateLimiter | None = None,
        self_service_workspaces: bool = False,
    ) -> Services:
        clock = clock or UtcClock()
        sink = EventSink(store, publisher)
        access = ChannelAccess(store)
        tenant_limits = TenantLimitsCache(store)
        messaging = MessagingService(store, log, access, clock, limiter=limiter, tenants=tenant_limits)
        membership = MembershipService(store, sink, clock, access)
        return cls(
            membership=membership,
            channels=ChannelService(store, sink, clock, log, access),
            messaging=messaging,
            changes=MessageChanges(store, access, messaging.reader, clock),
            conversations=ConversationService(store, sink, clock, access, messaging.reader),
            status=StatusService(store, sink, clock, access),
            workspaces=WorkspaceService(
                store, sink, clock, log, access, membership, self_service=self_service_workspaces
            ),
            access=access,
            tenant_limits=tenant_limits,
        )
