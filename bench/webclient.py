"""Bench of the web client's rendering in headless Chromium: time from page load to the first
message on screen, and frame times while scrolling through a channel of 10,000 messages.

``make bench-web`` (or ``python -m bench.webclient``): starts its own stack (as ``make bench``),
creates a tenant, a user and a channel through the REST API, writes the messages straight into
PostgreSQL (as the persist worker would have), then drives the client served by the gateway with
``bench/browser/render.mjs`` (playwright-core from tests/browser, Debian's chromium) and prints the
figures. Measured, never asserted. Headless Chromium renders without a GPU here: frame times are
an upper bound of what a desktop browser shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench.provision import Provisioner
from bench.system import System

ROOT = Path(__file__).resolve().parents[1]
_MESSAGES = """
INSERT INTO messages (id, tenant_id, channel_id, sender_id, sender_display_name, body, created_at)
SELECT g, $1, $2, CASE WHEN g % 3 = 0 THEN $3 ELSE $4 END,
       CASE WHEN g % 3 = 0 THEN 'Ann' ELSE 'Bob' END,
       'message ' || g || CASE WHEN g % 5 = 0
         THEN ': a longer line of text that wraps once the column is narrow enough to need it' ELSE '' END,
       now() - make_interval(secs => $5 - g)
FROM generate_series(1, $5) AS g
"""


async def _seed(system: System, messages: int) -> tuple[str, str]:
    provision = Provisioner(system.gateway_urls[0], system.admin_token, system.jwt_secret)
    tenant = await provision.tenant("webclient")
    user, other = str(uuid.uuid4()), str(uuid.uuid4())
    token = provision.token(tenant.id, user)
    async with httpx.AsyncClient(base_url=system.gateway_urls[0], timeout=60) as http:
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/api/v1/users/me", headers=auth)).status_code == 200
        made = await http.post("/api/v1/channels", json={"name": "history", "isPrivate": False}, headers=auth)
        assert made.status_code == 201, made.text
        channel = uuid.UUID(made.json()["id"])
    conn = await asyncpg.connect(system.database_url)
    try:
        await conn.execute(_MESSAGES, uuid.UUID(tenant.id), channel, user, other, messages)
        await conn.execute("VACUUM ANALYZE messages")
    finally:
        await conn.close()
    return token, tenant.id


def _frames(frames: list[float]) -> dict[str, float]:
    ordered = sorted(frames[1:])  # the first delta is measured from before the first frame
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "frames": len(ordered),
        "p50_ms": round(pick(0.50), 1),
        "p95_ms": round(pick(0.95), 1),
        "p99_ms": round(pick(0.99), 1),
        "max_ms": round(ordered[-1], 1),
        "over_50ms": sum(1 for f in ordered if f > 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webclient", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    system = System(gateways=1, want_reference=False, log_dir=Path(tempfile.mkdtemp(prefix="bench-web-")))
    try:
        system.start()
        token, tenant = asyncio.run(_seed(system, args.messages))
        run = subprocess.run(
            ["node", str(ROOT / "bench/browser/render.mjs"), system.gateway_urls[0], token, tenant,
             str(args.loads)],
            capture_output=True, text=True, timeout=900, env={**os.environ},
        )  # fmt: skip
    finally:
        system.stop()
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"the browser run printed nothing: {run.stderr[-2000:]}")
    raw = json.loads(lines[-1])
    if not raw.get("ok"):
        raise SystemExit(f"the browser run failed: {raw.get('error')}")
    first = raw["firstMessageMs"]
    summary = {
        "first_message_ms": {"median": round(statistics.median(first), 1), "min": round(min(first), 1),
                             "max": round(max(first), 1), "loads": len(first)},
        "scroll_up_loading": {**_frames(raw["up"]["frames"]), "seconds": round(raw["up"]["seconds"], 1),
                              "messages_loaded": raw["up"]["messages"]},
        "idle_loaded": _frames(raw["idle"]["frames"]),
        "scroll_down_loaded": {**_frames(raw["down"]["frames"]), "seconds": round(raw["down"]["seconds"], 1),
                               "messages_shown": raw["down"]["shown"],
                               "messages_listed": raw["down"]["listed"],
                               "frames_out_of_order": raw["down"]["outOfOrder"]},
        "dom_messages": raw["down"]["domMessages"],
        "dom_nodes": raw["domNodes"],
        "js_heap_mb": round(raw["heapMB"], 1) if raw.get("heapMB") else None,
    }  # fmt: skip
    f, up, down = summary["first_message_ms"], summary["scroll_up_loading"], summary["scroll_down_loaded"]
    print(
        f"page load -> first message rendered: median {f['median']} ms "
        f"(min {f['min']}, max {f['max']}, {f['loads']} loads)"
    )
    idle = summary["idle_loaded"]
    rows = (
        ("idle, all loaded", idle),
        ("scrolling up, loading 100 per page", up),
        ("scrolling down, all loaded", down),
    )
    for name, s in rows:
        print(
            f"{name}: {s['frames']} frames, p50 {s['p50_ms']} ms  p95 {s['p95_ms']} ms  "
            f"p99 {s['p99_ms']} ms  "
            f"max {s['max_ms']} ms, {s['over_50ms']} frames over 50 ms"
        )
    print(
        f"{up['messages_loaded']:,} messages loaded; scrolling down showed {down['messages_shown']:,} of "
        f"{down['messages_listed']:,} ({down['frames_out_of_order']} list states out of order); "
        f"{summary['dom_messages']} messages in the DOM at the end ({summary['dom_nodes']:,} elements, "
        f"heap {summary['js_heap_mb']} MB)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"webclient-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"config": vars(args) | {"out": str(args.out)}, "summary": summary}, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
