"""Server CPU per acknowledged send (and per delivery) of every process, as tables.

The figures come from ``bench.system.cpu_costs``: CPU seconds a process spent during the step
(``/proc/<pid>/stat``, PostgreSQL with its backends) x 1e6 / acknowledged sends (a mix: writes).
Unlike CPU%, they hardly move when something else loads the machine, so they compare across runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

# Columns in this order when present; other processes (more gateways) follow in order of appearance.
ORDER = ("gateway-A", "gateway-B", "worker", "nats", "postgres", "redis", "nats-reference")


def process_columns(steps: Sequence[dict[str, Any]]) -> list[str]:
    seen = list(dict.fromkeys(name for r in steps for name in r["servers"]))
    return [n for n in ORDER if n in seen] + [n for n in seen if n not in ORDER]


def cost_rows(steps: Sequence[dict[str, Any]], per: str) -> list[list[str]]:
    """One row per step: scenario, target, msg/s, count, total, then each process's figure."""
    columns = process_columns(steps)
    key = f"cpu_us_per_{per}"
    rows = []
    for r in steps:
        count = r["acked"] if per == "send" else r["integrity"]["delivered"]
        cells = [r["scenario"], r["target"], f"{r['offered_msgs_per_s']:g}", f"{count:,}"]
        cells.append(_us(r.get(f"server_{key}")))
        cells += [_us(r["servers"][name].get(key)) if name in r["servers"] else "-" for name in columns]
        rows.append(cells)
    return rows


def print_cpu_costs(steps: Sequence[dict[str, Any]], out: TextIO) -> None:
    steps = [r for r in steps if "server_cpu_us_per_send" in r]  # older results have none
    if not steps:
        return
    columns = process_columns(steps)
    tick = max((r.get("tick_us_per_send") or 0.0) for r in steps)
    fanout = any(r["integrity"]["delivered"] != r["acked"] for r in steps)
    for per, title in (("send", "acknowledged send"), ("delivery", "delivery")):
        if per == "delivery" and not fanout:
            break  # one socket per room: a delivery per send, the same figures
        print(
            f"\nServer CPU per {title}, us (CPU time from /proc during the step / "
            f"{'acknowledged sends' if per == 'send' else 'deliveries'})",
            file=out,
        )
        head = ["scenario", "target", "msg/s", "acked" if per == "send" else "deliv", "total", *columns]
        widths = [9, 13, 7, 10, 9, *(max(len(c) + 2, 9) for c in columns)]
        print(_line(head, widths), file=out)
        print("-" * sum(widths), file=out)
        for cells in cost_rows(steps, per):
            print(_line(cells, widths), file=out)
    print(
        "  total: every process of the target (echonats: gateways + worker + nats + postgres with its\n"
        "  backends + redis; references: their nats-server). /proc counts 10 ms ticks: a figure is good\n"
        f"  to about {tick:.1f} us per send and process at the fewest sends of these steps.",
        file=out,
    )


def _us(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.1f}" if value < 10_000 else f"{value:,.0f}"


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    text = f"{cells[0]:<{widths[0]}}{cells[1]:<{widths[1]}}"
    return text + "".join(f"{c:>{w}}" for c, w in zip(cells[2:], widths[2:], strict=True))
