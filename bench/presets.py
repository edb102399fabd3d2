"""Scenarios and named presets.

A scenario is one shape of load (sockets, rooms, senders, gateways) run at one or more offered
rates; each rate is a step measured on echonats and then, with the same clients, on the
reference (nats-server's own WebSocket listener).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str  # fanout | rooms | ingest | idle | gateways | mix
    sockets: int  # receiver sockets
    rooms: int  # channels; sockets are spread evenly over them
    rates: tuple[float, ...]  # offered messages/s (all senders together), one step each
    senders: int = 2
    duration_s: float = 10.0
    gateways: int = 1  # receivers and senders split over gateways (round robin)
    sockets_per_user: int = 10  # presence goes to every socket of a tenant: fewer users, smaller storms
    idle_levels: tuple[int, ...] = ()  # idle: socket counts to ramp to
    idle_hold_s: float = 10.0
    # mix: of every 4 writes a sender offers, 1 is a send, 1 an edit of its latest message and 2 are
    # reactions to it (the rate counts all of them; each is one frame fanned out to every socket).
    mix: bool = False

    @property
    def label(self) -> str:
        if self.name == "idle":
            return f"idle {'/'.join(f'{n // 1000}k' for n in self.idle_levels)} sockets"
        gw = f", {self.gateways} gateways" if self.gateways > 1 else ""
        return f"{self.name}: {self.rooms} room(s) x {self.sockets // max(self.rooms, 1)} sockets{gw}"


FANOUT_QUICK = Scenario("fanout", sockets=200, rooms=1, rates=(20, 50), senders=2, duration_s=10)
MIX = Scenario("mix", sockets=200, rooms=1, rates=(20, 50, 100), senders=2, duration_s=10, mix=True)

FULL: tuple[Scenario, ...] = (
    Scenario("fanout", sockets=1000, rooms=1, rates=(20, 50, 70, 100), senders=2, duration_s=15),
    Scenario("rooms", sockets=1000, rooms=100, rates=(100, 500, 1000), senders=10, duration_s=15),
    Scenario(
        "ingest",
        sockets=10,
        rooms=10,
        rates=(1000, 2500, 5000),
        senders=50,
        duration_s=15,
        sockets_per_user=1,
    ),
    # Up to saturation: the ceiling (deliveries/s) is compared with the reference's.
    Scenario(
        "gateways", sockets=1000, rooms=1, rates=(50, 100, 200, 300), senders=2, duration_s=15, gateways=2
    ),
    MIX,
    # Last: 20k sockets leave the gateway's heap large (CPython keeps freed arenas), and a machine
    # near its open-file limit is no place for the other scenarios.
    Scenario(
        "idle",
        sockets=20_000,
        rooms=1,
        rates=(),
        senders=1,
        idle_levels=(10_000, 20_000),
        sockets_per_user=2000,
    ),
)

PRESETS: dict[str, tuple[Scenario, ...]] = {
    "quick": (FANOUT_QUICK,),
    "full": FULL,
    "fanout": (FULL[0],),
    "rooms": (FULL[1],),
    "ingest": (FULL[2],),
    "gateways": (FULL[3],),
    "idle": (FULL[5],),
    "mix": (MIX,),
}


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def _levels(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scenario overrides (applied to every scenario of the preset)")
    group.add_argument("--sockets", type=int, help="receiver sockets")
    group.add_argument("--rooms", type=int, help="channels the sockets are spread over")
    group.add_argument("--rates", type=_rates, help="offered messages/s per step, e.g. 20,50,100")
    group.add_argument("--senders", type=int, help="sender sockets")
    group.add_argument("--duration", type=float, help="seconds of sending per step")
    group.add_argument("--gateways", type=int, help="gateway processes (receivers split over them)")
    group.add_argument("--sockets-per-user", type=int, help="receiver sockets per user")
    group.add_argument("--idle-levels", type=_levels, help="idle: socket counts to ramp to, e.g. 10000,20000")


def apply_overrides(scenarios: tuple[Scenario, ...], args: argparse.Namespace) -> tuple[Scenario, ...]:
    out = []
    for scenario in scenarios:
        changes: dict[str, object] = {}
        for attr, arg in (
            ("sockets", "sockets"),
            ("rooms", "rooms"),
            ("rates", "rates"),
            ("senders", "senders"),
            ("duration_s", "duration"),
            ("gateways", "gateways"),
            ("sockets_per_user", "sockets_per_user"),
            ("idle_levels", "idle_levels"),
        ):
            value = getattr(args, arg, None)
            if value is not None:
                changes[attr] = value
        updated = replace(scenario, **changes)  # type: ignore[arg-type]
        if updated.name == "idle" and "sockets" not in changes:
            updated = replace(updated, sockets=max(updated.idle_levels, default=updated.sockets))
        validate(updated)
        out.append(updated)
    return tuple(out)


def validate(s: Scenario) -> None:
    if s.sockets < 1 or s.rooms < 1 or s.senders < 1 or s.gateways < 1 or s.sockets_per_user < 1:
        raise ValueError(f"{s.name}: sockets, rooms, senders, gateways and sockets-per-user must be >= 1")
    if s.rooms > s.sockets:
        raise ValueError(f"{s.name}: more rooms ({s.rooms}) than sockets ({s.sockets})")
    if s.name != "idle" and (not s.rates or s.duration_s <= 0):
        raise ValueError(f"{s.name}: needs rates and a positive duration")
    if s.name == "idle" and (not s.idle_levels or max(s.idle_levels) > s.sockets):
        raise ValueError("idle: levels must be given and at most --sockets")
