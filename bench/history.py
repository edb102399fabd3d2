"""Bench of history pages on a channel of 10M messages with an unpersisted tail.

``make bench-history`` (or ``python -m bench.history``): starts its own stack (as ``make bench``),
creates a tenant, a user and one channel through the REST API, writes ``--messages`` rows of that
channel straight into PostgreSQL (as the persist worker would have), moves the messages stream
past them (a purge up to the next id: new messages get ids above the rows, as on a restored
installation), pauses the persist worker (SIGSTOP) and sends ``--tail`` messages through the API:
they are in JetStream only, above the persist floor, and every page read folds them in. Then it
times ``GET /api/v1/channels/{id}/messages?limit=50`` over one kept-alive HTTP connection, one
request at a time:

- ``newest``: no cursor (the newest page; with a tail of 50 or more, all of it from JetStream);
- ``straddling``: ``before`` a point 25 messages into the tail (half tail, half PostgreSQL);
- ``older``: ``before`` a random id among the rows (pages back in time);
- ``forward``: ``after`` a random id among the rows (pages forward).

Prints p50/p95/p99/max per kind and writes them to ``bench/results/history-*.json``. The figures
are measured, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import tempfile
import time
import urllib.parse
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import nats

from bench.provision import Provisioner
from bench.stats import summarize_us
from bench.system import System
from echonats.adapters.nats import subjects

PAGE = 50
CHUNK = 1_000_000  # rows per INSERT: progress shows, and one statement's memory stays bounded

_MESSAGES = """
INSERT INTO messages (id, tenant_id, channel_id, sender_id, sender_display_name, body, created_at)
SELECT g, $1, $2, $3, 'bench', 'message ' || g, now() - make_interval(secs => ($5::bigint - g) / 100.0)
FROM generate_series($4::bigint, $5::bigint) AS g
"""


async def _seed(system: System, messages: int, tail: int) -> tuple[str, str, list[int]]:
    provision = Provisioner(system.gateway_urls[0], system.admin_token, system.jwt_secret)
    tenant = await provision.tenant("history")
    user = str(uuid.uuid4())
    token = provision.token(tenant.id, user)
    async with httpx.AsyncClient(base_url=system.gateway_urls[0], timeout=60) as http:
        assert (await http.get("/api/v1/users/me", headers=_bearer(token))).status_code == 200
        made = await http.post(
            "/api/v1/channels", json={"name": "history", "isPrivate": False}, headers=_bearer(token)
        )
        assert made.status_code == 201, made.text
        channel = made.json()["id"]
    conn = await asyncpg.connect(system.database_url)
    try:
        started = time.monotonic()
        for first in range(1, messages + 1, CHUNK):
            last = min(messages, first + CHUNK - 1)
            await conn.execute(_MESSAGES, uuid.UUID(tenant.id), uuid.UUID(channel), user, first, last)
            print(f"  {last:,} rows ({time.monotonic() - started:.0f}s)", flush=True)
        await conn.execute("VACUUM ANALYZE messages")
        # The rows' WAL written out now, not by a checkpoint in the middle of the measurement.
        await conn.execute("CHECKPOINT")
        print(f"seeded {messages:,} messages in {time.monotonic() - started:.1f}s", flush=True)
    finally:
        await conn.close()
    nc = await nats.connect(system.nats_url)
    try:
        # An empty stream purged up to a sequence starts there: the tail's ids follow the rows.
        await nc.jetstream().purge_stream(subjects.MESSAGES_STREAM, seq=messages + 1)
    finally:
        await nc.close()
    worker = next(p for p in system.processes if p.name == "worker")
    os.kill(worker.pid, signal.SIGSTOP)  # the tail stays unpersisted (resumed before stopping)
    tail_ids: list[int] = []
    async with httpx.AsyncClient(base_url=system.gateway_urls[0], timeout=60) as http:
        for i in range(tail):
            sent = await http.post(
                f"/api/v1/channels/{channel}/messages", json={"body": f"tail {i}"}, headers=_bearer(token)
            )
            assert sent.status_code == 201, sent.text
            tail_ids.append(sent.json()["id"])
    assert not tail_ids or tail_ids[0] > messages, f"the tail starts at {tail_ids[0]}, inside the rows"
    return token, channel, tail_ids


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class _KeepAlive:
    """GET over one kept-alive HTTP/1.1 connection with as little client work as possible: httpx
    costs ~1 ms of this process's CPU per request, which on 2 cores shows in the latency."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self._reader, self._writer, self._head = reader, writer, head

    @classmethod
    async def open(cls, base: str, token: str) -> _KeepAlive:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = f"Host: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        return cls(reader, writer, head)

    async def get(self, target: str) -> tuple[int, bytes]:
        self._writer.write(f"GET {target} HTTP/1.1\r\n".encode() + self._head)
        header = await self._reader.readuntil(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = 0
        for line in header.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def _measure(
    base: str, token: str, channel: str, messages: int, tail_ids: list[int], requests: int
) -> dict[str, dict[str, float]]:
    rng = random.Random(7)
    straddle = tail_ids[min(25, len(tail_ids) - 1)] if tail_ids else messages
    kinds: dict[str, object] = {
        "newest": lambda: {},
        "straddling": lambda: {"before": straddle},
        "older": lambda: {"before": rng.randint(PAGE + 1, messages)},
        "forward": lambda: {"after": rng.randint(1, messages - PAGE)},
    }
    results: dict[str, dict[str, float]] = {}
    url = f"/api/v1/channels/{channel}/messages"
    http = await _KeepAlive.open(base, token)
    try:
        for kind, params in kinds.items():
            latencies: list[int] = []
            tail_seen = 0
            for i in range(requests + 20):
                target = f"{url}?{urllib.parse.urlencode({'limit': PAGE, **params()})}"  # type: ignore[operator]
                started = time.perf_counter_ns()
                status, body = await http.get(target)
                elapsed = time.perf_counter_ns() - started
                assert status == 200, body
                items = json.loads(body)["items"]
                assert len(items) == PAGE, f"{kind}: {len(items)} messages"
                if i >= 20:  # the first ones warm the pool and the caches
                    latencies.append(elapsed // 1000)
                    tail_seen += sum(1 for m in items if m["id"] > messages)
            results[kind] = summarize_us(latencies) | {"tail_messages_per_page": tail_seen / requests}
    finally:
        await http.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--tail", type=int, default=200, help="unpersisted messages above the rows")
    parser.add_argument("--requests", type=int, default=500, help="per kind of page")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    system = System(gateways=1, want_reference=False, log_dir=Path(tempfile.mkdtemp(prefix="bench-history-")))
    try:
        system.start()
        token, channel, tail_ids = asyncio.run(_seed(system, args.messages, args.tail))
        results = asyncio.run(
            _measure(system.gateway_urls[0], token, channel, args.messages, tail_ids, args.requests)
        )
    finally:
        with contextlib.suppress(StopIteration, ProcessLookupError):
            os.kill(next(p for p in system.processes if p.name == "worker").pid, signal.SIGCONT)
        system.stop()
    print(f"GET history, limit {PAGE}, {args.messages:,} messages + {args.tail} unpersisted in JetStream:")
    for kind, summary in results.items():
        print(
            f"  {kind:<11} p50 {summary['p50']:.2f} ms  p95 {summary['p95']:.2f} ms"
            f"  p99 {summary['p99']:.2f} ms  max {summary['max']:.2f} ms"
            f"  ({summary['tail_messages_per_page']:.0f} of {PAGE} from the tail)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"history-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    record = {"config": vars(args) | {"out": str(args.out)}, "latency_ms": results}
    out.write_text(json.dumps(record, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
