"""``python -m bench``: run a preset against echonats and the nats-server references, report the figures."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.child import raise_fd_limit
from bench.presets import PRESETS, Scenario, add_arguments, apply_overrides
from bench.progress import Progress
from bench.report import compute_ratios, plot, print_tables, write_json
from bench.runner import Runner
from bench.system import System

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# --references names -> result targets: core NATS (PUB + PING/PONG) and JetStream (stored, PubAck).
REFERENCES = {"core": "reference", "js": "reference-js"}


def _references(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in REFERENCES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected core, js, core,js or none; got {text!r}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Latency/throughput bench of echonats against nats-server's own WebSocket listener "
        "(core NATS, and JetStream with file storage).",
    )
    p.add_argument(
        "--preset", choices=sorted(PRESETS), default="quick", help="named scenario set (default: quick)"
    )
    p.add_argument("--receivers", type=int, default=2, help="receiver processes (default 2)")
    p.add_argument("--body-bytes", type=int, default=64, help="message body size (default 64)")
    p.add_argument(
        "--references",
        type=_references,
        default=tuple(REFERENCES),
        help="reference runs next to echonats: core,js (default), core, js or none",
    )
    p.add_argument("--no-reference", action="store_true", help="skip both references (--references none)")
    p.add_argument("--reference-only", action="store_true", help="run only the reference(s), not echonats")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for JSON + PNG")
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on SIGTERM as on Ctrl-C
    args = parser().parse_args(argv)
    try:
        scenarios = apply_overrides(PRESETS[args.preset], args)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if args.receivers < 1 or args.body_bytes < 40:
        print("bench: --receivers must be >= 1 and --body-bytes >= 40", file=sys.stderr)
        return 2
    fd_limit = raise_fd_limit()  # gateways and nats-server inherit it
    needed = max(s.sockets for s in scenarios) + 200
    if fd_limit < needed:
        print(
            f"bench: warning: open-file limit {fd_limit} < {needed} needed by the largest scenario",
            file=sys.stderr,
        )
    if args.no_reference:
        args.references = ()
    if args.reference_only and not args.references:
        print("bench: --reference-only needs a reference (--references)", file=sys.stderr)
        return 2
    targets = [] if args.reference_only else ["echonats"]
    targets += [REFERENCES[name] for name in args.references]
    log_dir = Path(tempfile.mkdtemp(prefix=f"echonats-benchlogs-{os.getpid()}-"))
    progress = Progress()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    system = System(
        gateways=max(s.gateways for s in scenarios), want_reference=bool(args.references), log_dir=log_dir
    )
    results: list[dict[str, Any]] = []
    failure: str | None = None
    try:
        progress.update("starting NATS, PostgreSQL, Valkey, gateway(s), worker", None)
        system.start()
        progress.done(
            f"stack ready in {time.monotonic() - t0:.1f}s (gateways {', '.join(system.gateway_urls)})"
        )
        asyncio.run(_run(system, scenarios, targets, args, progress, results))
    except KeyboardInterrupt:
        failure = "interrupted"
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        progress.update("stopping", None)
        system.stop()
        progress.done(f"stopped everything after {time.monotonic() - t0:.0f}s")
    if failure:
        print(f"bench: {failure} (server logs: {log_dir})", file=sys.stderr)
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    if not results:
        return 1
    ratios = compute_ratios(results)
    print_tables(results, ratios, sys.stdout)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    json_path = args.out / f"{args.preset}-{stamp}.json"
    png_path = json_path.with_suffix(".png")
    write_json(
        json_path, _document(args, scenarios, started, time.monotonic() - t0, results, ratios, failure)
    )
    plot(results, png_path, f"echonats bench, preset {args.preset}, {started:%Y-%m-%d %H:%M} UTC")
    print(f"\nresults: {json_path}\nplot:    {png_path}")
    return 1 if failure or _integrity_failed(results) else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _run(
    system: System,
    scenarios: Sequence[Scenario],
    targets: list[str],
    args: argparse.Namespace,
    progress: Progress,
    results: list[dict[str, Any]],
) -> None:
    runner = Runner(system, args.receivers, args.body_bytes, progress, results)
    for scenario in scenarios:
        await runner.scenario(scenario, targets)


def _integrity_failed(results: Sequence[dict[str, Any]]) -> bool:
    for r in results:
        i = r.get("integrity")
        if i and (i["lost"] or i["duplicates"] or i["out_of_order"] or i["misrouted"]):
            return True
    return False


def _document(
    args: argparse.Namespace,
    scenarios: Sequence[Scenario],
    started: datetime,
    wall_s: float,
    results: list[dict[str, Any]],
    ratios: list[dict[str, Any]],
    failure: str | None,
) -> dict[str, Any]:
    return {
        "preset": args.preset,
        "started_at": started.isoformat(),
        "wall_s": round(wall_s, 1),
        "completed": failure is None,
        "failure": failure,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg(),
        },
        "config": {
            "receiver_processes": args.receivers,
            "body_bytes": args.body_bytes,
            "reference": bool(args.references),
            "references": [REFERENCES[name] for name in args.references],
            "scenarios": [
                {k: getattr(s, k) for k in s.__dataclass_fields__} | {"label": s.label} for s in scenarios
            ],
        },
        "results": results,
        "ratios": ratios,
    }
