"""The gateway's side of the rate-limit buckets: leased tokens and the resends it remembers."""

from __future__ import annotations

import pytest

from echonats.adapters.redis import leases
from echonats.adapters.redis.leases import LEASE_S, Credit, LeaseBook, lease_size, sends_granted


def test_a_lease_is_at_most_a_quarter_second_of_refill_and_half_the_burst() -> None:
    assert lease_size(100, 1000) == 25
    assert lease_size(100, 10) == 5
    assert lease_size(3, 20) == 0  # under one token per lease: every send asks, exactly as before


def test_a_lease_follows_the_demand_of_a_busy_bucket() -> None:
    credit = Credit()
    assert credit.lease(need=1, cap=100, now=0.0) == 0  # quiet: exactly what it needs
    assert credit.lease(need=1, cap=100, now=0.1) == 2  # busy: twice the demand since it asked
    credit.spend(5)
    assert credit.lease(need=3, cap=100, now=0.2) == 16
    assert credit.lease(need=90, cap=100, now=0.3) == 100  # never more than the cap
    assert credit.lease(need=1, cap=100, now=0.3 + LEASE_S) == 0  # quiet again


def test_unspent_tokens_go_back_once_the_lease_is_over() -> None:
    credit = Credit()
    credit.add(3, now=10.0)
    assert credit.available(10.0 + LEASE_S / 2) == 3
    credit.tokens -= 1
    credit.add(5, now=10.1)  # more tokens do not make the older ones last longer
    assert credit.available(10.0 + LEASE_S) == 0
    assert credit.take_returning() == 7
    assert credit.take_returning() == 0


def test_resends_of_a_remembered_key_and_repeats_in_one_run_are_free() -> None:
    book = LeaseBook(resend_window_s=600)
    keys = ["a", None, "a", "b"]
    charged = book.charged(keys, 4)
    assert charged == [True, True, False, True]
    book.remember(keys, charged, granted=2)  # "a" and the keyless send were granted, then refused
    assert book.charged(["a", "b", None], 3) == [False, True, True]


def test_the_window_runs_from_the_first_send(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(leases.time, "monotonic", lambda: now[0])
    book = LeaseBook(resend_window_s=10)
    book.remember(["a"], [True], granted=1)
    now[0] = 105.0
    charged = book.charged(["a"], 1)
    book.remember(["a"], charged, granted=1)  # a free resend does not extend the window
    now[0] = 110.0
    assert book.charged(["a"], 1) == [True]


def test_remembered_keys_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases, "MAX_REMEMBERED", 3)
    book = LeaseBook(resend_window_s=600)
    keys = [f"k{i}" for i in range(5)]
    book.remember(keys, [True] * 5, granted=5)
    assert book.charged(keys, 5) == [True, True, False, False, False]  # the oldest were forgotten


def test_granted_sends_stop_at_the_first_charged_send_without_tokens() -> None:
    assert sends_granted([True, False, True, True], 1) == 2  # the free resend rides along
    assert sends_granted([False, False], 0) == 2
    assert sends_granted([True, True], 2) == 2
