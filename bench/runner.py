"""Runs scenarios: provisions, starts the load-generator processes, measures each step, aggregates.

Per scenario: a fresh tenant, users and channels (REST), then one session per target (echonats,
then the core-NATS reference, then the JetStream reference) with K receiver processes and one
sender process that stay connected across the scenario's rate steps. A step resets the receivers,
lets the sender offer ``rate`` messages/s for the duration, waits until every acknowledged message
reached every socket of its channel (or stalls), collects the raw reports and aggregates them in
this process, with each server process's CPU time per acknowledged send and per delivery.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.child import ChildProcess, close_all
from bench.jsref import ensure_stream
from bench.persist import PersistPoller
from bench.presets import Scenario
from bench.progress import Progress
from bench.provision import Provisioner, Tenant
from bench.receiver import ReceiverSpec, SocketSpec
from bench.sender import SenderConnSpec, SenderSpec
from bench.stats import (
    ReceiverReport,
    SenderReport,
    check_integrity,
    merge_latencies,
    merge_receivers,
    span_rate,
    summarize_us,
)
from bench.system import (
    System,
    counter_delta,
    counters,
    cpu_costs,
    machine_busy,
    machine_cpu_pct,
    sample,
    usage,
)
from bench.wire import js_live_subject, js_subject, reference_subject

DRAIN_STALL_S = 3.0
DRAIN_MAX_S = 180.0  # a saturated server is still working off its backlog: wait while it progresses
PERSIST_WAIT_S = 30.0
TARGET_LABELS = {
    "echonats": "echonats",
    "reference": "core NATS over WebSocket",
    "reference-js": "JetStream over WebSocket",
}


@dataclass(slots=True)
class Layout:
    """Who connects where, for one scenario (shared by both targets)."""

    tenant: Tenant
    channels: list[str]
    receiver_users: list[str]
    sender_users: list[str]


class Runner:
    def __init__(
        self,
        system: System,
        receivers: int,
        body_bytes: int,
        progress: Progress,
        results: list[dict[str, Any]],
    ) -> None:
        self.system = system
        self.results = results  # every finished step lands here at once: an aborted run keeps them
        self.receivers = receivers
        self.body_bytes = body_bytes
        self.progress = progress
        self.provisioner = Provisioner(system.gateway_urls[0], system.admin_token, system.jwt_secret)
        self._step = 0

    async def scenario(self, sc: Scenario, targets: Sequence[str]) -> None:
        self.progress.update(f"{sc.name}: provisioning", None, "tenant, users, channels")
        tenant = await self.provisioner.tenant(f"bench {sc.name} {int(time.time())}")
        channels = await self.provisioner.channels(tenant, sc.rooms, sc.name)
        n_users = math.ceil(sc.sockets / sc.sockets_per_user)
        layout = Layout(
            tenant=tenant,
            channels=channels,
            receiver_users=await self.provisioner.users(tenant, n_users, f"{sc.name}-recv"),
            sender_users=await self.provisioner.users(tenant, sc.senders, f"{sc.name}-send"),
        )
        for target in targets:
            if sc.name == "idle" and target == "reference-js":
                continue  # idle sockets publish nothing: JetStream would change nothing
            await self._session(sc, target, layout)

    # -- one target ---------------------------------------------------------------------------------

    def _socket_url(self, target: str, gateway: int, token: str) -> str:
        if target != "echonats":
            assert self.system.reference_ws_url
            return self.system.reference_ws_url
        base = self.system.gateway_urls[gateway].replace("http://", "ws://", 1)
        return f"{base}/ws?token={token}"

    def _specs(self, sc: Scenario, target: str, layout: Layout) -> tuple[list[ReceiverSpec], SenderSpec]:
        # What a sender publishes to, and what a receiver subscribes to, per channel index.
        if target == "reference":
            targets = listen = [reference_subject(c) for c in layout.channels]
        elif target == "reference-js":
            targets = [js_subject(c) for c in layout.channels]
            listen = [js_live_subject(c) for c in layout.channels]
        else:
            targets = listen = list(layout.channels)
        per_proc: list[list[SocketSpec]] = [[] for _ in range(self.receivers)]
        for j in range(sc.sockets):
            user = layout.receiver_users[j // sc.sockets_per_user]
            channel = j % sc.rooms
            url = self._socket_url(target, j % sc.gateways, layout.tenant.tokens[user])
            per_proc[j % self.receivers].append(SocketSpec(url, channel, listen[channel]))
        senders = []
        for s, user in enumerate(layout.sender_users):
            mine = [c for c in range(sc.rooms) if c % sc.senders == s] or [s % sc.rooms]
            senders.append(
                SenderConnSpec(
                    self._socket_url(target, s % sc.gateways, layout.tenant.tokens[user]), user, mine
                )
            )
        sender = SenderSpec(target, targets, layout.channels, senders, self.body_bytes, sc.mix)
        return [ReceiverSpec(target, socks) for socks in per_proc], sender

    async def _session(self, sc: Scenario, target: str, layout: Layout) -> None:
        receiver_specs, sender_spec = self._specs(sc, target, layout)
        procs = [ChildProcess("receiver", spec, f"receiver-{k}") for k, spec in enumerate(receiver_specs)]
        sender = ChildProcess("sender", sender_spec, "sender")
        poller: PersistPoller | None = None
        try:
            if target == "reference-js":
                assert self.system.reference_nats_url
                await ensure_stream(self.system.reference_nats_url)
            if target == "echonats":
                poller = await PersistPoller(self.system.database_url, layout.tenant.id).__aenter__()
            if sc.name == "idle":
                await self._idle(sc, target, procs)
                return
            await self._connect(sc, target, procs, sc.sockets)
            await sender.call("connect", timeout_s=60)
            for rate in sc.rates:
                self.results.append(await self._measure(sc, target, procs, sender, poller, rate))
        finally:
            await close_all([*procs, sender])
            if poller is not None:
                await poller.__aexit__()

    async def _connect(
        self, sc: Scenario, target: str, procs: list[ChildProcess], upto: int, *, tolerate: bool = False
    ) -> dict[str, Any]:
        """Connect and subscribe sockets up to ``upto`` (in total, over all receiver processes)."""
        started = time.monotonic()
        shares = [len(range(k, upto, len(procs))) for k in range(len(procs))]
        calls = [
            asyncio.ensure_future(p.call("connect", n, timeout_s=600))
            for p, n in zip(procs, shares, strict=True)
        ]
        while not all(c.done() for c in calls):
            self.system.check_alive()
            await asyncio.wait(calls, timeout=0.2)
            done = sum(p.counter.value for p in procs)
            self.progress.update(f"{sc.name} {target}: connecting", done / upto, f"{done}/{upto} sockets")
        replies = [c.result() for c in calls]
        failed = sum(r[2] for r in replies)
        errors = [e for r in replies for e in r[3]][:3]
        if failed and not tolerate:
            raise RuntimeError(f"{failed} of {upto} sockets failed to connect/subscribe: {errors}")
        return {
            "connect_s": round(time.monotonic() - started, 2),
            "connected": sum(p.counter.value for p in procs),
            "connect_failures": failed,
            "connect_errors": errors,
        }

    async def _measure(
        self,
        sc: Scenario,
        target: str,
        procs: list[ChildProcess],
        sender: ChildProcess,
        poller: PersistPoller | None,
        rate: float,
    ) -> dict[str, Any]:
        self._step += 1
        step = self._step
        label = f"{sc.name} {target} {rate:g} msg/s"
        servers = self.system.servers(target, sc.gateways)
        await asyncio.gather(*(p.call("start", step) for p in procs))
        if poller is not None:
            poller.start_step(step)
        before, machine0, t0 = sample(servers), machine_busy(), time.monotonic()
        metrics0 = counters(self.system) if target == "echonats" else {}
        run = asyncio.ensure_future(
            sender.call("run", step, rate, sc.duration_s, timeout_s=sc.duration_s + 300)
        )
        while not run.done():
            self.system.check_alive()
            await asyncio.wait([run], timeout=0.2)
            delivered = sum(p.counter.value for p in procs)
            self.progress.update(
                label,
                (time.monotonic() - t0) / sc.duration_s,
                f"sent {sender.counter.value}  delivered {delivered}",
            )
        sent: SenderReport = run.result()
        per_channel = [len(range(c, sc.sockets, sc.rooms)) for c in range(sc.rooms)]
        expected = sum(bitmap.count(1) * per_channel[key[1]] for key, bitmap in sent.acked.items())
        drain_started = time.monotonic()
        drain = await self._drain(label, procs, expected)
        drain_s = round(time.monotonic() - drain_started, 2)
        after, machine1 = sample(servers), machine_busy()
        reports: list[ReceiverReport] = list(await asyncio.gather(*(p.call("stop") for p in procs)))
        acked = sum(b.count(1) for b in sent.acked.values())
        rows = acked if sent.acked_sends < 0 else sent.acked_sends  # a mix's edits and reactions add none
        persist: dict[str, Any] | None = None
        if poller is not None:
            self.progress.update(label, 1.0, f"waiting for {rows} rows in PostgreSQL")
            await poller.wait_for(rows, PERSIST_WAIT_S)
            persist = {
                "expected": rows,
                "stored": await poller.stored(step),
                "lag_ms": summarize_us(poller.lags_us),
            }
        result = aggregate(sc, target, rate, sent, reports, per_channel)
        result.update(
            step=step,
            drain={"outcome": drain, "s": drain_s},
            # e.g. gaps repaired from the stream, slow-consumer closes: why a step was slow
            server_counters=counter_delta(metrics0, counters(self.system)) if target == "echonats" else {},
            persist=persist,
            servers=usage(before, after),
            machine_cpu_pct=machine_cpu_pct(machine0, machine1),
        )
        result["server_cpu_pct"] = round(sum(u["cpu_pct"] for u in result["servers"].values()), 1)
        result.update(cpu_costs(result["servers"], acked, result["integrity"]["delivered"]))
        self.progress.done(_one_line(result))
        return result

    async def _drain(self, label: str, procs: list[ChildProcess], expected: int) -> str:
        """Until every expected delivery arrived ("complete"), deliveries stopped for a while
        ("stalled": what is missing is lost) or a hard cap ("cut": what is missing may be late)."""
        started = last_change = time.monotonic()
        last = -1
        while time.monotonic() - started < DRAIN_MAX_S:
            delivered = sum(p.counter.value for p in procs)
            if delivered >= expected:
                await asyncio.sleep(0.2)  # the counters lag a little behind; let stragglers (dups) land
                return "complete"
            if delivered != last:
                last, last_change = delivered, time.monotonic()
            elif time.monotonic() - last_change > DRAIN_STALL_S:
                return "stalled"
            self.progress.update(label, 1.0, f"draining {delivered}/{expected}")
            await asyncio.sleep(0.05)
        return "cut"

    async def _idle(self, sc: Scenario, target: str, procs: list[ChildProcess]) -> None:
        """Ramp to each level of idle sockets; RSS growth per connection and idle CPU at each."""
        servers = self.system.servers(target, sc.gateways)
        baseline = sample(servers)
        previous = 0
        for level in sc.idle_levels:
            connect = await self._connect(sc, target, procs, level, tolerate=True)
            await asyncio.sleep(1.0)  # let the handshakes' garbage go before measuring memory
            self.progress.update(f"idle {target} {level} sockets", None, f"holding {sc.idle_hold_s:g}s")
            before, machine0 = sample(servers), machine_busy()
            await asyncio.sleep(sc.idle_hold_s)
            after, machine1 = sample(servers), machine_busy()
            open_now = max(int(connect["connected"]), 1)
            rss_per_conn = {
                name: round((after[name].rss_kb - baseline[name].rss_kb) / open_now, 2)
                for name in after
                if name in baseline
            }
            # The processes that hold the sockets; PostgreSQL grows by shared buffers touched while
            # sockets authenticate, which is not per-connection state (it is in the breakdown).
            holders = ("nats",) if target != "echonats" else ("gateway",)
            result = {
                "scenario": sc.name,
                "label": sc.label,
                "target": target,
                "sockets": level,
                "gateways": sc.gateways,
                **connect,
                "connections_per_s": round((level - previous) / max(connect["connect_s"], 1e-9), 1),
                "servers": usage(before, after),
                "rss_kb_per_connection": rss_per_conn,
                "rss_kb_per_connection_socket_holders": round(
                    sum(v for k, v in rss_per_conn.items() if k.startswith(holders)), 2
                ),
                "machine_cpu_pct": machine_cpu_pct(machine0, machine1),
            }
            result["server_cpu_pct"] = round(sum(u["cpu_pct"] for u in result["servers"].values()), 1)
            kb = result["rss_kb_per_connection_socket_holders"]
            failures = f", {connect['connect_failures']} FAILED {connect['connect_errors']}" * bool(
                connect["connect_failures"]
            )
            self.progress.done(
                f"idle     {target:9} {connect['connected']:>6} sockets: {kb:.1f} KB/conn, "
                f"idle CPU {result['server_cpu_pct']}%, connect {connect['connect_s']}s{failures}"
            )
            self.results.append(result)
            previous = level


def aggregate(
    sc: Scenario,
    target: str,
    rate: float,
    sent: SenderReport,
    reports: Sequence[ReceiverReport],
    per_channel: Sequence[int],
) -> dict[str, Any]:
    """One step's figures from the raw sender and receiver reports."""
    integrity = check_integrity(reports, sent.acked)
    latencies, first_recv, last_recv = merge_receivers(reports)
    acked = sum(b.count(1) for b in sent.acked.values())
    return {
        "scenario": sc.name,
        "label": sc.label,
        "target": target,
        "target_label": TARGET_LABELS[target],
        "offered_msgs_per_s": rate,
        "duration_s": sc.duration_s,
        "sockets": sc.sockets,
        "rooms": sc.rooms,
        "senders": sc.senders,
        "gateways": sc.gateways,
        "receiver_processes": len(reports),
        "sent": sent.sent,
        "acked": acked,
        # Acknowledged messages over first send -> last ack: below the offered rate once the server
        # cannot keep up (the backlog is worked off after the sender stopped).
        "achieved_msgs_per_s": round(span_rate(acked, sent.first_send_ns, sent.last_ack_ns), 1),
        "send_errors": sent.errors,
        "generator_max_behind_ms": round(sent.max_behind_ms, 2),
        # Last send -> last delivery: about one latency when keeping up, the backlog when saturated.
        "backlog_s": round((last_recv - sent.last_send_ns) / 1e9, 3) if last_recv else None,
        "offered_deliveries_per_s": round(rate * sum(per_channel) / len(per_channel), 1),
        "achieved_deliveries_per_s": round(span_rate(integrity.delivered, first_recv, last_recv), 1),
        "integrity": integrity.as_dict(),
        "latency_ms": summarize_us(latencies),
        "ack_ms": summarize_us(merge_latencies([sent.ack_latencies_us])),
        "load_generator": {
            "receivers_cpu_pct": [round(r.cpu_s / max(r.wall_s, 1e-9) * 100, 1) for r in reports],
            "sender_cpu_pct": round(sent.cpu_s / max(sent.wall_s, 1e-9) * 100, 1),
            "other_frames": sum(r.other_frames for r in reports),
        },
    }


def _one_line(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    i = r["integrity"]
    p = (lambda k: f"{lat[k]:.1f}") if lat.get("count") else (lambda k: "-")
    return (
        f"{r['scenario']:8} {r['target']:12} {r['offered_msgs_per_s']:>6g} msg/s: "
        f"{r['achieved_deliveries_per_s']:>9,.0f} deliveries/s  p50 {p('p50')} p99 {p('p99')} ms  "
        f"lost {i['lost']} dup {i['duplicates']} ooo {i['out_of_order']}  server CPU {r['server_cpu_pct']}%"
        f" ({_f1(r['server_cpu_us_per_send'])} us/send)"
    )


def _f1(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
