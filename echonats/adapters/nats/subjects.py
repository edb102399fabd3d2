"""NATS subject map (documented in README). Tenant and channel ids are UUIDs, safe as tokens."""

from __future__ import annotations

import hashlib
import re
import uuid

ROOT = "echo"
MESSAGES_STREAM = "ECHO_MESSAGES"
EVENTS_STREAM = "ECHO_EVENTS"
DEAD_LETTER_STREAM = "ECHO_DEAD_LETTERS"
PERSIST_CONSUMER = "persist"
MESSAGE_SUBJECTS = f"{ROOT}.*.ch.*.msg"
EVENT_SUBJECTS = f"{ROOT}.*.events.>"
DEAD_LETTER_PREFIX = f"dlq.{ROOT}"  # outside echo.* so it cannot overlap the other streams

_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_\-|@:+=~]{1,128}$")


def message_subject(tenant_id: uuid.UUID, channel_id: uuid.UUID) -> str:
    """Where a sender publishes (captured by the messages stream)."""
    return f"{ROOT}.{tenant_id}.ch.{channel_id}.msg"


def tenant_message_subjects(tenant_id: uuid.UUID) -> str:
    """Every channel's stored messages in one tenant (a filter for purging it)."""
    return f"{ROOT}.{tenant_id}.ch.*.msg"


def live_subject(tenant_id: uuid.UUID, channel_id: uuid.UUID | str) -> str:
    """Where the messages stream republishes a message once stored, with its sequence in headers."""
    return f"{ROOT}.{tenant_id}.ch.{channel_id}.live"


def typing_subject(tenant_id: uuid.UUID, channel_id: uuid.UUID) -> str:
    return f"{ROOT}.{tenant_id}.ch.{channel_id}.typing"


def event_subject(tenant_id: uuid.UUID, event_type: str) -> str:
    return event_subjects(tenant_id, event_type)


def user_token(user_id: str) -> str:
    """A subject token for a user id: the id itself when NATS-safe, else a stable hash."""
    if _SAFE_TOKEN.match(user_id):
        return user_id
    return "h" + hashlib.sha256(user_id.encode()).hexdigest()[:32]


def presence_subject(tenant_id: uuid.UUID, user_id: str) -> str:
    return f"{ROOT}.{tenant_id}.presence.{user_token(user_id)}"


def tenant_presence_subjects(tenant_id: uuid.UUID) -> str:
    """Every user's presence announcements in one tenant (a wildcard subscription)."""
    return f"{ROOT}.{tenant_id}.presence.*"


def event_subjects(tenant_id: uuid.UUID | None, event_type: str) -> str:
    """One event type's subject in one tenant, or (None) in every tenant (a wildcard)."""
    return f"{ROOT}.{'*' if tenant_id is None else tenant_id}.events.{event_type}"


def direct_get_subject(stream: str) -> str:
    """JetStream's batched direct-get API of a stream (nats-server >= 2.11)."""
    return f"$JS.API.DIRECT.GET.{stream}"


def feed_subjects(tenant_id: uuid.UUID) -> str:
    """A tenant's domain events as the events stream republishes them, with their sequence."""
    return f"{ROOT}.{tenant_id}.feed.>"


def tenant_event_subjects(tenant_id: uuid.UUID) -> str:
    """A tenant's domain events as stored (a filter for reading the stream)."""
    return f"{ROOT}.{tenant_id}.events.>"
