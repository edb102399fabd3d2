"""JetStream stream provisioning: the messages, events and dead-letter streams.

The messages stream captures ``echo.<t>.ch.<c>.msg`` and republishes every stored message on
``echo.<t>.ch.<c>.live`` with ``Nats-Sequence`` (the message id) and ``Nats-Last-Sequence`` (the
previous id in the same channel), so live subscribers get ids, store order, and gap detection.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from echonats.adapters.nats import subjects
from echonats.adapters.nats.errors import NATS_ERRORS
from echonats.model.errors import Unavailable

log = logging.getLogger(__name__)

# Nonce dedupe window: a client retrying a send with the same nonce within it gets the original.
DUPLICATE_WINDOW = timedelta(minutes=10)
MESSAGES_MAX_AGE = timedelta(days=7)
EVENTS_MAX_AGE = timedelta(days=30)
PUBLISH_TIMEOUT_S = 5.0


def messages_stream_config(replicas: int, first_seq: int | None = None) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=subjects.MESSAGES_STREAM,
        description="echonats chat messages; the sequence is the message id",
        subjects=[subjects.MESSAGE_SUBJECTS],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_age=MESSAGES_MAX_AGE.total_seconds(),
        duplicate_window=DUPLICATE_WINDOW.total_seconds(),
        num_replicas=replicas,
        allow_direct=True,
        first_seq=first_seq,
        republish=js_api.RePublish(
            src=subjects.MESSAGE_SUBJECTS,
            dest=f"{subjects.ROOT}.{{{{wildcard(1)}}}}.ch.{{{{wildcard(2)}}}}.live",
        ),
    )


def events_stream_config(replicas: int) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=subjects.EVENTS_STREAM,
        description="echonats domain events per tenant",
        subjects=[subjects.EVENT_SUBJECTS],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_age=EVENTS_MAX_AGE.total_seconds(),
        duplicate_window=DUPLICATE_WINDOW.total_seconds(),
        num_replicas=replicas,
        allow_direct=True,
        # Gateways follow a tenant's events with their stream sequence (the live feed's ids).
        republish=js_api.RePublish(
            src=subjects.EVENT_SUBJECTS, dest=f"{subjects.ROOT}.{{{{wildcard(1)}}}}.feed.>"
        ),
    )


def dead_letter_stream_config(replicas: int) -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=subjects.DEAD_LETTER_STREAM,
        description="echonats messages the persist worker could not store, with the reason in headers",
        subjects=[f"{subjects.DEAD_LETTER_PREFIX}.>"],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_age=EVENTS_MAX_AGE.total_seconds(),
        num_replicas=replicas,
    )


async def ensure_streams(js: JetStreamContext, *, replicas: int, next_message_id: int) -> None:
    """Create or update both streams. A messages stream created anew starts at ``next_message_id``
    (one above the highest persisted id) so message ids never repeat, even after losing the stream.
    Also the events stream and the dead-letter stream."""
    try:
        try:
            await js.stream_info(subjects.MESSAGES_STREAM)
            await js.update_stream(messages_stream_config(replicas))
        except NotFoundError:
            await js.add_stream(messages_stream_config(replicas, first_seq=max(1, next_message_id)))
            log.info("created stream %s starting at %d", subjects.MESSAGES_STREAM, next_message_id)
        for config in (events_stream_config(replicas), dead_letter_stream_config(replicas)):
            try:
                await js.stream_info(config.name or "")
                await js.update_stream(config)
            except NotFoundError:
                await js.add_stream(config)
    except NATS_ERRORS as exc:
        raise Unavailable(f"JetStream: cannot provision streams: {exc!r}") from exc
