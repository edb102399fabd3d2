"""Every server frame has a rendering in every socket protocol (see Connection.__init_subclass__)."""

from __future__ import annotations

import uuid

import pytest

from echonats.gateway.connection import Connection, SharedFrames
from echonats.gateway.stomp_connection import StompConnection
from echonats.model import Entry


def test_every_send_hook_of_the_json_connection_is_rendered_by_the_stomp_connection() -> None:
    hooks = {name for name in vars(Connection) if name.startswith("send_")}
    assert hooks  # the convention the check relies on: the hub calls conn.send_*
    assert hooks <= set(vars(StompConnection))


def test_a_connection_that_would_inherit_the_json_rendering_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match="send_resync_required"):

        class HalfDone(Connection):  # every hook but one
            def send_entry(self, message: Entry, shared: SharedFrames) -> None: ...
            def send_typing(
                self, channel_id: uuid.UUID, user_id: str, name: str, shared: SharedFrames
            ) -> None: ...
            def send_presence(self, user_id: str, status: str, shared: SharedFrames) -> None: ...
            def send_subscribed(self, channel_id: uuid.UUID) -> None: ...
            def send_unsubscribed(self, channel_id: uuid.UUID) -> None: ...
