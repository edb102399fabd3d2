"""Bench of ``GET /api/v1/unreads``: one user in 200 channels of a tenant holding 1M messages.

``make bench-unreads`` (or ``python -m bench.unreads``): starts its own stack (as ``make bench``),
creates the tenant, the user's 200 channels and a second user through the REST API, writes the
messages straight into PostgreSQL (as the persist worker would have: ids, replies, deletions,
mentions), sets read positions like a real user's (most channels read to the end, some behind,
some far behind: capped), then times the route over HTTP and prints p50/p95/p99/max. The figures
are measured, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench.provision import Provisioner
from bench.stats import summarize_us
from bench.system import System

_MESSAGES = """
INSERT INTO messages (id, tenant_id, channel_id, sender_id, sender_display_name, body, created_at,
                      thread_id, deleted_at)
SELECT g, $1, ($2::uuid[])[1 + (g - 1) % $3], CASE WHEN g % 7 = 0 THEN $4 ELSE $5 END, 'bench',
       CASE WHEN g % 97 = 0 THEN '' ELSE 'message ' || g END, now(),
       CASE WHEN g % 50 = 0 AND g > $3 THEN g - $3 ELSE NULL END,
       CASE WHEN g % 97 = 0 THEN now() ELSE NULL END
FROM generate_series(1, $6) AS g
"""
# 1% of the messages by the other user mention the measured one.
_MENTIONS = """
INSERT INTO message_mentions (user_id, channel_id, message_id, tenant_id, sender_id)
SELECT $1, m.channel_id, m.id, m.tenant_id, m.sender_id FROM messages m
WHERE m.tenant_id = $2 AND m.id % 100 = 3 AND m.sender_id <> $1 AND m.deleted_at IS NULL
"""


def _read_position(rng: random.Random, per_channel: int) -> int:
    """How far behind a channel's end the user is, in messages: like a real user's list."""
    roll = rng.random()
    if roll < 0.7:
        return rng.randrange(0, 20)  # read to (nearly) the end
    if roll < 0.9:
        return rng.randrange(20, 500)
    return rng.randrange(1500, per_channel)  # far behind: the count is capped at 1000


async def _seed(system: System, channels: int, messages: int) -> tuple[str, str]:
    provision = Provisioner(system.gateway_urls[0], system.admin_token, system.jwt_secret)
    tenant = await provision.tenant("unreads")
    user, other = str(uuid.uuid4()), str(uuid.uuid4())
    token, other_token = provision.token(tenant.id, user), provision.token(tenant.id, other)
    async with httpx.AsyncClient(base_url=system.gateway_urls[0], timeout=60) as http:
        for who in (token, other_token):
            assert (await http.get("/api/v1/users/me", headers=_bearer(who))).status_code == 200
        ids: list[str] = []
        for i in range(channels):
            made = await http.post(
                "/api/v1/channels", json={"name": f"room-{i}", "isPrivate": False}, headers=_bearer(token)
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
            assert (
                await http.post(f"/api/v1/channels/{ids[-1]}/join", headers=_bearer(other_token))
            ).is_success
    conn = await asyncpg.connect(system.database_url)
    try:
        started = time.monotonic()
        channel_ids = [uuid.UUID(c) for c in ids]
        await conn.execute(_MESSAGES, uuid.UUID(tenant.id), channel_ids, channels, user, other, messages)
        await conn.execute(_MENTIONS, user, uuid.UUID(tenant.id))
        rng = random.Random(7)
        per_channel = messages // channels
        for index, channel in enumerate(channel_ids):
            last_id = index + 1 + (per_channel - 1) * channels  # the channel's highest id
            behind = _read_position(rng, per_channel)
            await conn.execute(
                "UPDATE channel_members SET last_read_id = $3 WHERE channel_id = $1 AND user_id = $2",
                channel,
                user,
                max(0, last_id - behind * channels),
            )
        await conn.execute("VACUUM ANALYZE messages")
        await conn.execute("VACUUM ANALYZE message_mentions")
        print(f"seeded {messages:,} messages in {channels} channels in {time.monotonic() - started:.1f}s")
    finally:
        await conn.close()
    return token, system.gateway_urls[0]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _measure(base: str, token: str, requests: int) -> tuple[list[int], dict[str, int]]:
    latencies: list[int] = []
    shape: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for i in range(requests + 20):
            started = time.perf_counter_ns()
            response = await http.get("/api/v1/unreads", headers=_bearer(token))
            elapsed = time.perf_counter_ns() - started
            assert response.status_code == 200, response.text
            if i >= 20:  # the first ones warm the pool and the caches
                latencies.append(elapsed // 1000)
            items = response.json()["items"]
            shape = {
                "channels": len(items),
                "capped": sum(1 for u in items if u["capped"]),
                "unread_total": sum(u["unread"] for u in items),
                "mentions_total": sum(u["mentions"] for u in items),
            }
    return latencies, shape


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.unreads", description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    system = System(gateways=1, want_reference=False, log_dir=Path(tempfile.mkdtemp(prefix="bench-unreads-")))
    try:
        system.start()
        token, base = asyncio.run(_seed(system, args.channels, args.messages))
        latencies, shape = asyncio.run(_measure(base, token, args.requests))
    finally:
        system.stop()
    summary = summarize_us(latencies)
    print(
        f"GET /api/v1/unreads, {shape['channels']} channels ({shape['capped']} capped at 1000), "
        f"{args.messages:,} messages: p50 {summary['p50']:.1f} ms  p95 {summary['p95']:.1f} ms  "
        f"p99 {summary['p99']:.1f} ms  max {summary['max']:.1f} ms over {len(latencies)} requests"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"unreads-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    record = {"config": vars(args) | {"out": str(args.out)}, "shape": shape, "latency_ms": summary}
    out.write_text(json.dumps(record, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
