"""One socket's writes (sends, and changes to messages), pipelined: checked concurrently, logged in
the order sent, answered in order.

Handling a ``send`` takes round trips (the rate limiter in Redis, JetStream's acknowledgement).
Waiting for each before reading the next frame caps a socket at one message per round trip, and a
busy gateway stretches every round trip over several event-loop iterations: a client that sends
in bursts (a bot, a bridge, a bench sender) then sees its acks fall seconds behind. Here a socket
may have ``window`` sends in flight. Their checks run concurrently; each enters the log only after
every earlier one has (or has failed), so the stream keeps the client's order; acks and errors go
out in the order the frames came. While the window is full the socket is not read, which pushes
back on the client through TCP. A change (edit, delete, react, ...) is checked against the message's
latest state, which the socket's earlier changes to the same message may change: it waits until
those are answered (a react right after an unreact of the same emoji must see the unreact).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from echonats import metrics
from echonats.core.caller import Caller
from echonats.core.messaging import MessagingService, Write, Written
from echonats.model import Message, MessageDeleted, MessageEdited, PinChanged, ReactionChanged, Unchanged
from echonats.model.errors import EchonatsError

log = logging.getLogger(__name__)

# A client with this many unanswered sends is not read until one is answered.
MAX_SENDS_IN_FLIGHT = 64

StoredCallback = Callable[[Written, str | None], None]
ErrorCallback = Callable[[EchonatsError, str | None], None]


@dataclass(slots=True)
class _Send:
    ref: str | None  # what the answer quotes (the nonce)
    started: float
    target: int | None  # the message a change is to (None: a send)
    checked: asyncio.Task[Write]
    stored: Awaitable[Written] | None = None  # once the write has its place in the log


def _failure(task: asyncio.Task[Write]) -> BaseException:
    return (
        asyncio.CancelledError() if task.cancelled() else task.exception() or EchonatsError("internal error")
    )


def record_written(written: Written, transport: str, started: float) -> None:
    """Metrics of one stored write: a message is a send, a change is counted by kind."""
    match written:
        case Message():
            metrics.record_send(transport, started)
        case Unchanged():
            return
        case _:
            metrics.record_change(CHANGE_KINDS[type(written)], transport)


CHANGE_KINDS: dict[type, str] = {
    MessageEdited: "edited",
    MessageDeleted: "deleted",
    ReactionChanged: "reaction",
    PinChanged: "pin",
}


class SendPipeline:
    def __init__(
        self,
        caller: Caller,
        messaging: MessagingService,
        *,
        transport: str,
        on_stored: StoredCallback,
        on_error: ErrorCallback,
        window: int = MAX_SENDS_IN_FLIGHT,
    ) -> None:
        self._caller = caller
        self._messaging = messaging
        self._transport = transport
        self._on_stored = on_stored
        self._on_error = on_error
        self._window = window
        # A count, not an asyncio.Semaphore: in Python 3.11 its acquire() walks every waiter, a
        # measured 3% of a gateway's CPU under load. The event is created when the window first
        # fills: most sockets only listen, and every idle byte counts x 20k.
        self._in_flight = 0
        self._room: asyncio.Event | None = None
        # Lists, not deques (an empty deque costs ~700 bytes); they hold at most `window` sends.
        self._checking: list[_Send] = []  # not yet in the log, in the order sent
        self._storing: list[_Send] = []  # in the log, waiting for its acknowledgement
        self._sequencer: asyncio.Task[None] | None = None
        self._answerer: asyncio.Task[None] | None = None
        self._answered: asyncio.Event | None = None  # set at every answer (see submit_change)

    async def submit(
        self,
        channel_id: uuid.UUID,
        body: str,
        nonce: str | None,
        *,
        thread_id: int | None = None,
        also_to_channel: bool = False,
    ) -> None:
        """Start one send; returns at once unless the window is full."""
        await self._start(
            lambda: self._messaging.check(
                self._caller,
                channel_id,
                body=body,
                nonce=nonce,
                thread_id=thread_id,
                also_to_channel=also_to_channel,
            ),
            nonce,
            None,
        )

    async def submit_change(
        self, check: Callable[[], Awaitable[Write]], ref: str | None, *, message_id: int
    ) -> None:
        """Start one change to ``message_id`` once this socket's earlier changes to that message
        are answered: its check reads the state they change. Other writes go on meanwhile."""
        while any(item.target == message_id for item in (*self._checking, *self._storing)):
            if self._answered is None:
                self._answered = asyncio.Event()
            self._answered.clear()
            await self._answered.wait()
        await self._start(check, ref, message_id)

    async def _start(
        self, check: Callable[[], Awaitable[Write]], ref: str | None, target: int | None
    ) -> None:
        while self._in_flight >= self._window:  # one reader per socket: a single waiter at most
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            await self._room.wait()
        self._in_flight += 1

        async def checking() -> Write:
            return await check()

        self._checking.append(_Send(ref, time.perf_counter(), target, asyncio.create_task(checking())))
        if self._sequencer is None:
            self._sequencer = asyncio.create_task(self._sequence())

    async def _sequence(self) -> None:
        """Admit checked messages (rate limits) and put them into the log, in the order sent.

        Every run of consecutive checked messages is admitted in one rate-limiter call: under load
        the runs grow, so the limiter costs less than a round trip per message."""
        try:
            while self._checking:
                head = self._checking[0]
                await asyncio.wait({head.checked})
                run: list[_Send] = []
                for item in self._checking:
                    if not item.checked.done() or item.checked.cancelled() or item.checked.exception():
                        break
                    run.append(item)
                if not run:  # the head failed its checks
                    self._checking.pop(0)
                    self._answer_in_order(head, _failure(head.checked))
                    continue
                messages = [item.checked.result() for item in run]
                refusal: BaseException | None
                try:
                    admitted, refusal = await self._messaging.admit(self._caller, messages)
                except Exception as exc:  # answered to the client, see _answer
                    admitted, refusal = 0, exc
                for index, (item, write) in enumerate(zip(run, messages, strict=True)):
                    self._checking.pop(0)
                    if index >= admitted:
                        self._answer_in_order(item, refusal or EchonatsError("internal error"))
                        continue
                    try:
                        # Awaited in order by _acknowledge; the log's deadline already runs.
                        item.stored = await self._messaging.submit(write)
                    except Exception as exc:  # answered to the client, see _answer
                        self._answer_in_order(item, exc)
                        continue
                    self._await_answer(item)
        finally:
            self._sequencer = None

    def _answer_in_order(self, item: _Send, failure: BaseException) -> None:
        """A send that ends before the log: answered after every earlier send's answer."""
        failed: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        failed.set_exception(failure)
        item.stored = failed
        self._await_answer(item)

    def _await_answer(self, item: _Send) -> None:
        self._storing.append(item)
        if self._answerer is None:
            self._answerer = asyncio.create_task(self._acknowledge())

    async def _acknowledge(self) -> None:
        """Answer logged messages in order, each once the log has acknowledged it."""
        try:
            while self._storing:
                item = self._storing[0]
                assert item.stored is not None
                outcome: Written | BaseException
                try:
                    outcome = await item.stored
                except Exception as exc:  # answered to the client, see _answer
                    outcome = exc
                else:
                    record_written(outcome, self._transport, item.started)
                self._storing.pop(0)
                self._answer(item, outcome)
        finally:
            self._answerer = None

    def _answer(self, item: _Send, outcome: Written | BaseException) -> None:
        self._in_flight -= 1
        if self._room is not None:
            self._room.set()
        if self._answered is not None:
            self._answered.set()
        if not isinstance(outcome, BaseException):
            self._on_stored(outcome, item.ref)
        elif isinstance(outcome, EchonatsError):
            self._on_error(outcome, item.ref)
        else:  # a bug must cost this one send, not the connection
            log.error("send failed", exc_info=outcome)
            self._on_error(EchonatsError("internal error"), item.ref)

    async def close(self) -> None:
        """The socket is gone: stop waiting for answers nobody can receive. Messages already in the
        log stay there (resending one with the same nonce gets the original back)."""
        tasks: list[asyncio.Future[Any]] = [item.checked for item in self._checking]
        tasks += [t for t in (self._sequencer, self._answerer) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._sequencer = self._answerer = None  # a task cancelled before it ran skipped its finally
        for item in self._storing:  # answers nobody awaited: discard them without warnings
            stored = item.stored
            if inspect.iscoroutine(stored):
                stored.close()
            elif isinstance(stored, asyncio.Future) and stored.done() and not stored.cancelled():
                stored.exception()
        self._checking.clear()
        self._storing.clear()
