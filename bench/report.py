"""Summary tables (stdout), echonats/reference ratios, JSON and the PNG plot."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bench.costs import print_cpu_costs
from bench.stats import ratio

LEGEND = """\
  targets: reference = core NATS over nats-server's WebSocket; reference-js = JetStream over it (stored
    on disk, republished to the receivers), the cost of durability with no chat logic.
  lost/dup/ooo: acknowledged messages missing / duplicated / out of order, over all sockets (must be 0).
  ack: send -> ack (echonats: stored in JetStream; reference: PUB followed by PING -> PONG;
    reference-js: HPUB -> JetStream's PubAck).
  persist: send -> row visible in PostgreSQL (polled every 20 ms: an upper bound by at most that).
  srv CPU%: echonats = gateways + worker + nats + postgres + redis; references = nats-server (100 = one core).
  gen CPU%: each receiver process / + the sender process (the load generator's own load)."""

REFERENCE_TARGETS = ("reference", "reference-js")

LAT_KEYS = (("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("p99.9", "p999"), ("max", "max"))


def _f(value: Any, fmt: str = ".1f") -> str:
    if value is None or value == "":
        return "-"
    return format(value, fmt) if isinstance(value, int | float) else str(value)


def _ms(value: Any) -> str:
    """Milliseconds with one decimal below a second, whole above (keeps columns apart)."""
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def rate_steps(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r["scenario"] != "idle"]


def compute_ratios(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """echonats / reference for each figure of each step that ran on both, for each reference."""
    ref = {
        (r["target"], r["label"], r["offered_msgs_per_s"]): r
        for r in rate_steps(results)
        if r["target"] in REFERENCE_TARGETS
    }
    out = []
    for ours in rate_steps(results):
        for target in REFERENCE_TARGETS:
            theirs = ref.get((target, ours["label"], ours["offered_msgs_per_s"]))
            if ours["target"] == "echonats" and theirs is not None:
                out.append(_ratio_row(ours, theirs))
    out.extend(_idle_ratios(results))
    return out


def _ratio_row(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "scenario": ours["scenario"],
        "label": ours["label"],
        "offered_msgs_per_s": ours["offered_msgs_per_s"],
        "reference": theirs["target"],
    }
    for name, key in LAT_KEYS:
        row[f"latency_{name}"] = ratio(ours["latency_ms"].get(key), theirs["latency_ms"].get(key))
    row["ack_p50"] = ratio(ours["ack_ms"].get("p50"), theirs["ack_ms"].get("p50"))
    row["achieved_deliveries_per_s"] = ratio(
        ours["achieved_deliveries_per_s"], theirs["achieved_deliveries_per_s"]
    )
    row["server_cpu_pct"] = ratio(ours["server_cpu_pct"], theirs["server_cpu_pct"])
    for key in ("server_cpu_us_per_send", "server_cpu_us_per_delivery"):
        row[key] = ratio(ours.get(key), theirs.get(key))
    return row


def _idle_ratios(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    ref_idle = {
        (r["label"], r["sockets"]): r
        for r in results
        if r["scenario"] == "idle" and r["target"] == "reference"
    }
    for ours in results:
        if ours["scenario"] != "idle" or ours["target"] != "echonats":
            continue
        theirs = ref_idle.get((ours["label"], ours["sockets"]))
        if theirs is not None:
            out.append(
                {
                    "scenario": "idle",
                    "label": ours["label"],
                    "sockets": ours["sockets"],
                    "reference": "reference",
                    "rss_kb_per_connection": ratio(
                        ours["rss_kb_per_connection_socket_holders"],
                        theirs["rss_kb_per_connection_socket_holders"],
                    ),
                    "idle_server_cpu_pct": ratio(ours["server_cpu_pct"], theirs["server_cpu_pct"]),
                }
            )
    return out


def print_tables(results: Sequence[dict[str, Any]], ratios: Sequence[dict[str, Any]], out: TextIO) -> None:
    steps = rate_steps(results)
    if steps:
        head = (
            f"{'scenario':<9}{'target':<13}{'msg/s':>7}{'deliv/s':>9}{'achieved':>9}"
            f"{'p50':>8}{'p95':>8}{'p99':>8}{'p99.9':>8}{'max':>8}  {'lost/dup/ooo':<13}"
            f"{'ack p50/p99':>13}{'persist p50/p99':>17}{'srv CPU%':>9}{'gen CPU%':>14}"
        )
        print("\nLatency send -> delivery (ms), deliveries/s offered vs achieved", file=out)
        print(head, file=out)
        print("-" * len(head), file=out)
        for r in steps:
            lat, ack, i = r["latency_ms"], r["ack_ms"], r["integrity"]
            persist = r.get("persist") or {}
            plag = persist.get("lag_ms", {})
            gen = r["load_generator"]
            gen_txt = "/".join(f"{x:.0f}" for x in gen["receivers_cpu_pct"]) + f"+{gen['sender_cpu_pct']:.0f}"
            integrity = f"{i['lost']}/{i['duplicates']}/{i['out_of_order']}"
            print(
                f"{r['scenario']:<9}{r['target']:<13}{r['offered_msgs_per_s']:>7g}"
                f"{r['offered_deliveries_per_s']:>9,.0f}{r['achieved_deliveries_per_s']:>9,.0f}"
                + "".join(f" {_ms(lat.get(k)):>7}" for _, k in LAT_KEYS)
                + f"  {integrity:<13}"
                f" {_ms(ack.get('p50')) + '/' + _ms(ack.get('p99')):>13}"
                f" {(_ms(plag.get('p50')) + '/' + _ms(plag.get('p99'))) if plag else '-':>16}"
                f"{r['server_cpu_pct']:>9.0f}{gen_txt:>14}",
                file=out,
            )
        print(LEGEND, file=out)
        _problems(steps, out)
        print("\nServer processes during each step: CPU% (100 = one core) / RSS MB at the end", file=out)
        for r in steps:
            procs = "  ".join(
                f"{name} {u['cpu_pct']:.0f}%/{u['rss_mb']:.0f}" for name, u in r["servers"].items()
            )
            print(
                f"  {r['scenario']:<9}{r['target']:<13}{r['offered_msgs_per_s']:>6g} msg/s: {procs}"
                f"  (machine {r['machine_cpu_pct']:.0f}% of {100 * (os.cpu_count() or 1)})",
                file=out,
            )
        print_cpu_costs(steps, out)
    idle = [r for r in results if r["scenario"] == "idle"]
    if idle:
        print("\nIdle connections", file=out)
        print(
            f"{'target':<10}{'sockets':>8}{'KB/conn*':>9}{'idle CPU%':>10}{'connect s':>10}"
            "  per process KB/conn",
            file=out,
        )
        for r in idle:
            per = ", ".join(f"{k} {v:.1f}" for k, v in r["rss_kb_per_connection"].items() if abs(v) >= 0.05)
            print(
                f"{r['target']:<10}{r['sockets']:>8}{r['rss_kb_per_connection_socket_holders']:>9.1f}"
                f"{r['server_cpu_pct']:>10.1f}{r['connect_s']:>10.1f}  {per}",
                file=out,
            )
        print(
            "  KB/conn*: RSS growth of the processes holding the sockets (gateways; reference: nats-server)\n"
            "  per connection since before the first socket; the breakdown lists every server process.",
            file=out,
        )
    if ratios:
        print(
            "\nechonats / reference (lower is better; 1.0 = as fast / as cheap as nats-server's own "
            "WebSocket:\n  vs core = core NATS, vs JS = JetStream with file storage, PubAck awaited)",
            file=out,
        )
        for row in ratios:
            if row["scenario"] == "idle":
                print(
                    f"  idle {row['sockets']:>6} sockets: "
                    f"RSS/conn x{_f(row['rss_kb_per_connection'], '.2f')}, "
                    f"idle CPU x{_f(row['idle_server_cpu_pct'], '.2f')}",
                    file=out,
                )
                continue
            lat = "  ".join(f"{name} x{_f(row[f'latency_{name}'], '.2f')}" for name, _ in LAT_KEYS)
            vs = "vs JS  " if row.get("reference") == "reference-js" else "vs core"
            print(
                f"  {row['scenario']:<9}{row['offered_msgs_per_s']:>6g} msg/s {vs}: {lat}"
                f"  ack p50 x{_f(row['ack_p50'], '.2f')}"
                f"  deliveries/s x{_f(row['achieved_deliveries_per_s'], '.2f')}"
                f"  server CPU x{_f(row['server_cpu_pct'], '.2f')}"
                f"  CPU us/send x{_f(row.get('server_cpu_us_per_send'), '.1f')}",
                file=out,
            )


def _problems(steps: Sequence[dict[str, Any]], out: TextIO) -> None:
    for r in steps:
        i = r["integrity"]
        notes = []
        if i["lost"] or i["duplicates"] or i["out_of_order"] or i["misrouted"]:
            notes.append(f"INTEGRITY: {i}")
        if (r.get("drain") or {}).get("outcome") == "cut":
            notes.append(
                f"still delivering when the wait was cut after {r['drain']['s']:.0f} s: lost includes late"
            )
        if (r.get("backlog_s") or 0) > 1.0:
            notes.append(f"saturated: deliveries ended {r['backlog_s']:.1f} s after the last send")
        watched = {
            k: v
            for proc in (r.get("server_counters") or {}).values()
            for k, v in proc.items()
            if k in ("echonats_fanout_gaps_repaired_total", "echonats_ws_slow_consumer_closes_total")
        }
        if watched:
            notes.append(f"server counters {watched}")
        if r["send_errors"]:
            notes.append(f"send errors {r['send_errors']}")
        if i["disconnects"]:
            notes.append(f"{i['disconnects']} sockets disconnected")
        persist = r.get("persist")
        if persist and persist["stored"] != persist["expected"]:
            notes.append(f"persisted {persist['stored']} of {persist['expected']} acknowledged")
        if r["generator_max_behind_ms"] > 50:
            notes.append(f"sender fell {r['generator_max_behind_ms']:.0f} ms behind schedule")
        busy = max(r["load_generator"]["receivers_cpu_pct"], default=0)
        if busy > 80:
            notes.append(f"a receiver process was {busy:.0f}% busy: the load generator may limit this step")
        if notes:
            print(
                f"  ! {r['scenario']} {r['target']} {r['offered_msgs_per_s']:g} msg/s: " + "; ".join(notes),
                file=out,
            )


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def plot(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = rate_steps(results)
    labels = list(dict.fromkeys(r["label"] for r in steps))
    idle = [r for r in results if r["scenario"] == "idle"]
    panels = len(labels) + (1 if idle else 0)
    if panels == 0:
        return
    cols = min(panels, 3)
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.6 * rows), squeeze=False)
    colors = {"p50": "tab:blue", "p95": "tab:green", "p99": "tab:orange", "p99.9": "tab:red"}
    for ax, label in zip(axes.flat, labels, strict=False):
        for target, style in (("echonats", "-"), ("reference", "--"), ("reference-js", ":")):
            pts = sorted(
                (r for r in steps if r["label"] == label and r["target"] == target),
                key=lambda r: r["offered_msgs_per_s"],
            )
            if not pts:
                continue
            xs = [r["offered_deliveries_per_s"] for r in pts]
            for name, key in LAT_KEYS[:4]:
                ys = [r["latency_ms"].get(key, float("nan")) for r in pts]
                ax.plot(
                    xs,
                    ys,
                    style,
                    marker={"echonats": "o", "reference": "s"}.get(target, "^"),
                    color=colors[name],
                    label=f"{target} {name}",
                )
        ax.set_yscale("log")
        ax.set_xlabel("offered deliveries/s")
        ax.set_ylabel("send -> delivery latency (ms)")
        ax.set_title(label, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    if idle:
        ax = axes.flat[len(labels)]
        names = [f"{r['target']}\n{r['sockets'] // 1000}k" for r in idle]
        ax.bar(
            names,
            [r["rss_kb_per_connection_socket_holders"] for r in idle],
            color=["tab:blue" if r["target"] == "echonats" else "tab:gray" for r in idle],
        )
        ax.set_ylabel("server RSS per idle connection (KB)")
        ax.set_title("idle connections", fontsize=10)
    for ax in list(axes.flat)[panels:]:
        ax.set_visible(False)
    fig.suptitle(
        title + "\nsolid: echonats; nats-server's own WebSocket:\ndashed core NATS, dotted JetStream",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
