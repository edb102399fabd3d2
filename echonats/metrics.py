"""Prometheus metrics, defined once, each in the registry of the process role that records it: a
gateway's `/metrics` serves GATEWAY, a worker's metrics port WORKER, so neither lists the other's
metrics as zeros. Both also carry the process, platform and GC collectors."""

from __future__ import annotations

import time

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)  # stateless readers of this process: shared by both
    return registry


GATEWAY = _registry()
WORKER = _registry()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

messages_sent = Counter(
    "echonats_messages_sent_total", "Messages acknowledged by JetStream", ["transport"], registry=GATEWAY
)
send_ack_seconds = Histogram(
    "echonats_send_ack_seconds",
    "Send to JetStream acknowledgement",
    buckets=LATENCY_BUCKETS,
    registry=GATEWAY,
)
persisted = Counter(
    "echonats_persisted_messages_total", "Message rows written to PostgreSQL", registry=WORKER
)
persist_batches = Histogram(
    "echonats_persist_batch_size",
    "Messages per persist batch",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000),
    registry=WORKER,
)
persist_lag_seconds = Histogram(
    "echonats_persist_lag_seconds",
    "Message creation to PostgreSQL commit",
    buckets=LATENCY_BUCKETS,
    registry=WORKER,
)
dead_lettered = Counter(
    "echonats_dead_lettered_total", "Messages moved to the dead-letter subject", ["reason"], registry=WORKER
)
outbox_relayed = Counter(
    "echonats_outbox_relayed_total", "Domain events republished by the outbox relay", registry=WORKER
)
http_request_seconds = Histogram(
    "echonats_http_request_duration_seconds",
    "HTTP request duration",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
    registry=GATEWAY,
)
rate_limited = Counter(
    "echonats_rate_limited_total", "Sends refused by rate limits", ["transport"], registry=GATEWAY
)
consumer_pending = Gauge(
    "echonats_jetstream_consumer_pending",
    "Messages not yet delivered to a JetStream consumer",
    ["consumer"],
    registry=WORKER,
)
consumer_ack_pending = Gauge(
    "echonats_jetstream_consumer_ack_pending",
    "Messages delivered but not yet acknowledged",
    ["consumer"],
    registry=WORKER,
)
rate_limit_fail_open = Counter(
    "echonats_rate_limit_fail_open_total",
    "Sends allowed without a rate-limit check because Redis failed",
    registry=GATEWAY,
)

# Fanout (gateway). These four keep the echostream_ names they were first published under (dashboards
# may use them); every other metric is echonats_.
ws_connections = Gauge("echostream_websocket_connections", "Open WebSocket connections", registry=GATEWAY)
broadcast_total = Counter(
    "echostream_websocket_messages_broadcast_total", "Frames offered to local sockets", registry=GATEWAY
)
fanout_processed = Counter(
    "echostream_fanout_messages_processed_total", "Messages fanned out by this gateway", registry=GATEWAY
)
fanout_seconds = Histogram(
    "echostream_fanout_processing_time_seconds",
    "Time to fan one message out to local sockets",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    registry=GATEWAY,
)
dropped_frames = Counter(
    "echonats_ws_dropped_ephemeral_frames_total",
    "Typing/presence frames dropped for slow clients",
    registry=GATEWAY,
)
slow_consumer_closes = Counter(
    "echonats_ws_slow_consumer_closes_total", "Connections closed with 4008", registry=GATEWAY
)
coalesced_writes = Counter(
    "echonats_ws_coalesced_writes_total",
    "Socket writes of frames gathered over one loop iteration (compare with frames broadcast)",
    registry=GATEWAY,
)
gaps_repaired = Counter(
    "echonats_fanout_gaps_repaired_total", "Messages read back from the stream after a gap", registry=GATEWAY
)


message_changes = Counter(
    "echonats_message_changes_total",
    "Changes to messages (edited, deleted, reaction, pin) acknowledged by JetStream",
    ["kind", "transport"],
    registry=GATEWAY,
)


def record_change(kind: str, transport: str) -> None:
    message_changes.labels(kind, transport).inc()


def record_send(transport: str, started: float) -> None:
    """One acknowledged send (REST, WebSocket or STOMP): count it and its send -> ack time."""
    send_ack_seconds.observe(time.perf_counter() - started)
    messages_sent.labels(transport).inc()
