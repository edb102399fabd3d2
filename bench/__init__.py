"""Latency/throughput bench of echonats against nats-server's own WebSocket listener (issue #5)."""
