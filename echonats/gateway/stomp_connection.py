"""The hub connection of a STOMP socket: messages rendered as MESSAGE frames for its subscription ids."""

from __future__ import annotations

import functools
import uuid

from echonats.gateway import stomp_frames as sf
from echonats.gateway.connection import Connection, SharedFrames
from echonats.gateway.ws_framing import text_frame
from echonats.model import Entry, Message


class StompConnection(Connection):
    """A hub connection that renders messages as STOMP MESSAGE frames for its subscription ids."""

    @functools.cached_property
    def channel_subscriptions(self) -> dict[uuid.UUID, list[str]]:
        """Channel -> escaped subscription ids; one hub subscription per channel serves them all.
        (Cached on first use: after that an attribute like any other, and no constructor to repeat.)"""
        return {}

    def send_entry(self, entry: Entry, shared: SharedFrames) -> None:
        # EchoPulse clients know messages only: changes (edits, reactions, ...) and thread-only
        # replies are not theirs to render; they see what a channel's history lists.
        if not isinstance(entry, Message) or not entry.listed_in_channel:
            return
        message = entry
        # The part after the subscription header is the same for every STOMP socket: render it once.
        tail = shared.get("stomp")
        if tail is None:
            tail = shared["stomp"] = sf.channel_message_tail(message).encode()
        for subscription in self.channel_subscriptions.get(message.channel_id, ()):
            self.offer_frame(text_frame(sf.message_frame_bytes(subscription, tail)))

    # STOMP clients get no typing, presence or subscription-state frames (no destination for them;
    # SUBSCRIBE is confirmed by RECEIPT; no `since`, so no resync), so these hooks do nothing.
    def send_typing(
        self, channel_id: uuid.UUID, user_id: str, display_name: str, shared: SharedFrames
    ) -> None: ...

    def send_presence(self, user_id: str, status: str, shared: SharedFrames) -> None: ...

    def send_subscribed(self, channel_id: uuid.UUID) -> None: ...

    # STOMP has no server-initiated unsubscribe: after a revocation the subscription just stops.
    def send_unsubscribed(self, channel_id: uuid.UUID) -> None: ...

    def send_resync_required(self, channel_id: uuid.UUID) -> None: ...

    def _token_expired(self) -> None:
        # STOMP has no re-authentication: say why before the close (written now if the socket
        # takes data; a socket too backed up to take it still gets close 4001).
        self.offer(sf.error_frame("token has expired", code="unauthenticated"))
        self.write_pending()
        super()._token_expired()
