"""What a gateway holds of the shared rate-limit buckets: leased tokens, and the resends it admitted.

Asking Redis for every send costs the gateway ~100 µs of redis-py per call, more than the rest of
the send's checks together. So a gateway that keeps asking for the same bucket takes a lease:
with the tokens it needs, twice what it spent since it last asked more (never more than
``LEASE_S`` of refill, half the burst, or what the bucket holds), spent locally without asking
Redis again: a lease follows the gateway's demand, so gateways sharing a bucket do not starve
each other of tokens they would not use. Tokens not spent within ``LEASE_S`` go
back to the bucket with the next call for it. A bucket used through several gateways at once may
therefore refuse a send up to ``LEASE_S`` worth of tokens early (they sit in another gateway's
lease); it never allows more than the limit. The first send of a quiet bucket leases nothing:
one occasional sender is charged exactly as before.

A resend (a send whose dedupe key this gateway admitted within the log's dedupe window) is free:
the log answers it with the original. The gateway remembers ``MAX_REMEMBERED`` keys (hashes;
a collision could only make one new message free). A resend it does not remember (sent through
another gateway, or older than the last ``MAX_REMEMBERED`` sends) is charged like a new message:
still answered with the original, but it may be refused when the budget is spent. Refunding it
once the log reports the duplicate would let a client earn tokens by resending.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

LEASE_S = 0.25
MAX_REMEMBERED = 100_000
_PRUNE_AT = 20_000  # buckets held before expired ones are dropped


@dataclass(slots=True)
class Credit:
    """Tokens of one bucket this gateway holds."""

    tokens: int = 0
    expires: float = 0.0  # monotonic; after it the tokens go back
    returning: int = 0  # expired tokens to hand back with the next call for this bucket
    asked: float = -math.inf  # last call to Redis for this bucket (a busy bucket gets leases)
    spent: int = 0  # tokens spent from the lease since that call

    def lease(self, need: int, cap: int, now: float) -> int:
        """Extra tokens to ask for with ``need`` (0 for a quiet bucket); starts a new ask."""
        extra = min(cap, 2 * (self.spent + need)) if now - self.asked < LEASE_S else 0
        self.asked, self.spent = now, 0
        return extra

    def spend(self, tokens: int) -> None:
        self.tokens -= tokens
        self.spent += tokens

    def available(self, now: float) -> int:
        if self.tokens and now >= self.expires:
            self.returning += self.tokens
            self.tokens = 0
        return self.tokens

    def take_returning(self) -> int:
        returning, self.returning = self.returning, 0
        return returning

    def add(self, tokens: int, now: float) -> None:
        if tokens > 0:
            if self.available(now) == 0:
                self.expires = now + LEASE_S
            self.tokens += tokens


def lease_size(per_second: float, burst: int) -> int:
    """The most extra tokens a lease asks for: LEASE_S of refill, at most half the burst."""
    return max(0, min(math.floor(per_second * LEASE_S), burst // 2))


class LeaseBook:
    def __init__(self, resend_window_s: float) -> None:
        self._credits: dict[str, Credit] = {}
        self._resend_window_s = resend_window_s
        self._admitted: dict[int, float] = {}  # hash of a dedupe key -> when it stops being a resend

    def credit(self, key: str) -> Credit:
        credit = self._credits.get(key)
        if credit is None:
            if len(self._credits) >= _PRUNE_AT:
                self._prune()
            credit = self._credits[key] = Credit()
        return credit

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, c in self._credits.items() if c.expires <= now and now - c.asked > LEASE_S]:
            del self._credits[key]

    def charged(self, resend_keys: Sequence[str | None], count: int) -> list[bool]:
        """Which of the first ``count`` sends take tokens: not the resends of a key admitted
        within the window, nor a repeat of a key earlier in the same run (it is only reached
        if that earlier send was granted)."""
        now = time.monotonic()
        seen: set[str] = set()
        charged = []
        for index in range(count):
            key = resend_keys[index] if index < len(resend_keys) else None
            if key is None:
                charged.append(True)
                continue
            until = self._admitted.get(hash(key))
            charged.append(key not in seen and (until is None or until <= now))
            seen.add(key)
        return charged

    def remember(self, resend_keys: Sequence[str | None], charged: Sequence[bool], granted: int) -> None:
        """The charged keys among the first ``granted`` sends are resends from now on, for the
        window (as the log's dedupe window, it runs from the first send, not from a resend)."""
        until = time.monotonic() + self._resend_window_s
        for key, needs_tokens in zip(resend_keys[:granted], charged, strict=False):
            if key is not None and needs_tokens:
                self._admitted[hash(key)] = until
        while len(self._admitted) > MAX_REMEMBERED:
            del self._admitted[next(iter(self._admitted))]


def sends_granted(charged: Sequence[bool], charged_granted: int) -> int:
    """How many consecutive sends pass when the first ``charged_granted`` charged ones got tokens."""
    taken = 0
    for index, needs_tokens in enumerate(charged):
        if needs_tokens:
            if taken == charged_granted:
                return index
            taken += 1
    return len(charged)
