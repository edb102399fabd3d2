"""A socket's pipelined sends: logged and answered in the order sent, rate limits in that order too."""

from __future__ import annotations

import asyncio
import gc
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence

from echonats.core.caller import Caller
from echonats.core.messaging import MessagingService, Write
from echonats.core.ports import Appended
from echonats.gateway.sending import SendPipeline
from echonats.model import Message, NewMessage
from echonats.model.errors import EchonatsError, RateLimited
from tests.unit.fakes import Harness


class BudgetLimiter:
    """Allows ``budget`` sends in all, then refuses; records each call's size."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.calls: list[int] = []

    async def acquire_many(
        self,
        tenant_id: uuid.UUID,
        user_id: str,
        count: int,
        *,
        tenant_per_second: int,
        resend_keys: Sequence[str | None] = (),
    ) -> tuple[int, RateLimited | None]:
        self.calls.append(count)
        granted = min(count, self.budget)
        self.budget -= granted
        refusal = None if granted == count else RateLimited("user rate limit exceeded", retry_after_ms=50)
        return granted, refusal


class GatedMessaging(MessagingService):
    """Checks of bodies listed in ``gates`` wait until their event is set: they finish out of order."""

    gates: dict[str, asyncio.Event]

    async def check(
        self,
        caller: Caller,
        channel_id: uuid.UUID,
        *,
        body: str,
        nonce: str | None,
        thread_id: int | None = None,
        also_to_channel: bool = False,
    ) -> NewMessage:
        gate = self.gates.get(body)
        if gate is not None:
            await gate.wait()
        return await super().check(
            caller, channel_id, body=body, nonce=nonce, thread_id=thread_id, also_to_channel=also_to_channel
        )


async def _setup(limiter: BudgetLimiter) -> tuple[Harness, GatedMessaging, Caller, uuid.UUID]:
    h = Harness.build(first_message_id=500)
    owner = await h.new_tenant()
    channel = await h.services.channels.create(owner, name="general", is_private=False)
    messaging = GatedMessaging(h.store, h.log, h.services.access, h.clock, limiter=limiter)
    messaging.gates = {}
    return h, messaging, owner, channel.id


class Answers(list[tuple[str | None, Message | EchonatsError]]):
    """What the pipeline answered, in order; ``wait(n)`` returns once there are n answers."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def add(self, ref: str | None, answer: Message | EchonatsError) -> None:
        self.append((ref, answer))
        self._changed.set()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self) < count:
                self._changed.clear()
                await self._changed.wait()

    def kinds(self) -> list[tuple[str | None, str]]:
        return [(ref, type(answer).__name__) for ref, answer in self]


def _pipeline(caller: Caller, messaging: MessagingService) -> tuple[SendPipeline, Answers]:
    answers = Answers()
    pipeline = SendPipeline(
        caller,
        messaging,
        transport="websocket",
        on_stored=lambda message, ref: answers.add(ref, message),
        on_error=lambda exc, ref: answers.add(ref, exc),
    )
    return pipeline, answers


async def test_a_slow_check_holds_back_later_sends_so_the_log_keeps_the_senders_order() -> None:
    limiter = BudgetLimiter(budget=100)
    h, messaging, owner, channel = await _setup(limiter)
    messaging.gates["m0"] = gate = asyncio.Event()
    pipeline, answers = _pipeline(owner, messaging)
    for i in range(5):
        await pipeline.submit(channel, f"m{i}", f"n{i}")
    await asyncio.wait([sent.checked for sent in list(pipeline._checking)[1:]])  # checked, not logged
    assert answers == []
    assert h.log.stream == {}  # nothing overtakes m0
    gate.set()
    await answers.wait(5)
    assert [ref for ref, _ in answers] == [f"n{i}" for i in range(5)]
    assert [a.body for _, a in answers if isinstance(a, Message)] == [f"m{i}" for i in range(5)]
    assert [a.id for _, a in answers if isinstance(a, Message)] == list(range(500, 505))
    assert limiter.calls == [5]  # one rate-limit call for the run checked while m0 waited
    await pipeline.close()


async def test_rate_limits_refuse_the_latest_sends_of_a_burst_not_random_ones() -> None:
    limiter = BudgetLimiter(budget=3)
    h, messaging, owner, channel = await _setup(limiter)
    pipeline, answers = _pipeline(owner, messaging)
    for i in range(6):
        await pipeline.submit(channel, f"m{i}", f"n{i}")
    await answers.wait(6)
    assert answers.kinds() == [
        ("n0", "Message"),
        ("n1", "Message"),
        ("n2", "Message"),
        ("n3", "RateLimited"),
        ("n4", "RateLimited"),
        ("n5", "RateLimited"),
    ]
    assert sorted(m.body for m in h.log.stream.values()) == ["m0", "m1", "m2"]
    await pipeline.close()


async def test_a_send_that_fails_its_checks_is_answered_in_its_place_and_spends_no_budget() -> None:
    limiter = BudgetLimiter(budget=2)
    _, messaging, owner, channel = await _setup(limiter)
    pipeline, answers = _pipeline(owner, messaging)
    await pipeline.submit(channel, "first", "a")
    await pipeline.submit(channel, "   ", "b")  # empty after trimming
    await pipeline.submit(channel, "third", "c")
    await answers.wait(3)
    assert answers.kinds() == [
        ("a", "Message"),
        ("b", "ValidationFailed"),
        ("c", "Message"),
    ]
    await pipeline.close()


async def test_an_unacknowledged_append_is_an_error_for_that_send_only() -> None:
    limiter = BudgetLimiter(budget=10)
    h, messaging, owner, channel = await _setup(limiter)
    pipeline, answers = _pipeline(owner, messaging)
    await pipeline.submit(channel, "ok", "a")
    await answers.wait(1)
    h.log.fail_with = EchonatsError("log down")
    await pipeline.submit(channel, "lost", "b")
    await answers.wait(2)
    h.log.fail_with = None
    await pipeline.submit(channel, "again", "c")
    await answers.wait(3)
    assert answers.kinds() == [
        ("a", "Message"),
        ("b", "EchonatsError"),
        ("c", "Message"),
    ]
    await pipeline.close()


async def test_closing_with_sends_waiting_for_their_ack_leaves_nothing_running_or_unawaited() -> None:
    limiter = BudgetLimiter(budget=10)
    h, messaging, owner, channel = await _setup(limiter)

    class SilentLog(type(h.log)):  # type: ignore[misc]
        async def begin_append(self, message: NewMessage) -> asyncio.Future[Appended]:
            return asyncio.get_running_loop().create_future()  # the log took it but never answers

    messaging._log = SilentLog(h.store)
    pipeline, answers = _pipeline(owner, messaging)
    for i in range(3):
        await pipeline.submit(channel, f"m{i}", f"n{i}")
    await asyncio.wait([sent.checked for sent in list(pipeline._checking)])
    assert pipeline._sequencer is not None
    await asyncio.wait_for(asyncio.shield(pipeline._sequencer), 5)  # all three handed to the log
    assert [sent.ref for sent in pipeline._storing] == ["n0", "n1", "n2"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await pipeline.close()
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert answers == []
    assert pipeline._sequencer is None
    assert pipeline._answerer is None


async def test_a_change_waits_for_the_sockets_earlier_writes_and_sees_their_effect() -> None:
    h, messaging, owner, channel = await _setup(BudgetLimiter(budget=100))
    changes = h.services.changes
    pipeline, answers = _pipeline(owner, messaging)
    sent = await messaging.send(owner, channel, body="target", nonce=None)

    def react(added: bool) -> Callable[[], Awaitable[Write]]:
        return lambda: changes.check_reaction(owner, channel, sent.id, emoji="👍", added=added, nonce=None)

    await pipeline.submit(channel, "a send first", "s1")
    await pipeline.submit_change(react(True), "r1", message_id=sent.id)
    await pipeline.submit_change(react(False), "r2", message_id=sent.id)  # checked after r1: not "unchanged"
    await pipeline.submit_change(react(True), "r3", message_id=sent.id)
    await answers.wait(4)
    assert [type(a).__name__ for _, a in answers] == [
        "Message",
        "ReactionChanged",
        "ReactionChanged",
        "ReactionChanged",
    ]
    assert [a.added for _, a in answers[1:]] == [True, False, True]  # type: ignore[union-attr]
    await pipeline.close()
