"""The JetStream reference's stream: created over the reference nats-server before its sessions.

Like echonats' messages stream: file storage, limits retention, a 10-minute duplicate window for
``Nats-Msg-Id`` (echonats dedupes by nonce the same way) and a republish of every stored message
to a live subject, so a receiver gets a message only once it is stored. What echonats adds on top
(authorisation, rate limits, the chat model, the gateway's fanout, PostgreSQL, Redis) is not here.
"""

from __future__ import annotations

import nats
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from bench.wire import JS_REPUBLISH_DEST, JS_STREAM, JS_SUBJECTS

DUPLICATE_WINDOW_S = 600.0
MAX_AGE_S = 7 * 24 * 3600.0


def stream_config() -> js_api.StreamConfig:
    return js_api.StreamConfig(
        name=JS_STREAM,
        description="echonats bench: JetStream reference (no chat logic)",
        subjects=[JS_SUBJECTS],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_age=MAX_AGE_S,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=1,
        allow_direct=True,
        republish=js_api.RePublish(src=JS_SUBJECTS, dest=JS_REPUBLISH_DEST),
    )


async def ensure_stream(nats_url: str) -> None:
    """Create the stream if it is not there yet (it is kept for the run, as echonats' stream is)."""
    nc = await nats.connect(nats_url, connect_timeout=10, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(JS_STREAM)
        except NotFoundError:
            await js.add_stream(stream_config())
    finally:
        await nc.close()
