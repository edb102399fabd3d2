"""The WebSocket protocol fuzzed with hypothesis against a real uvicorn gateway.

Contract under test (README, WebSocket protocol): every client frame that is not a valid request is
answered with exactly one ``error`` frame and the socket stays open; a frame above
``ECHONATS_WS_MAX_FRAME`` closes the socket with 1009. Whatever one socket sends, the gateway keeps
serving everybody else: after every example a second, well-behaved client still gets its message
delivered, and a ``ping`` on the fuzzed socket still gets its ``pong``.

Hypothesis drives the examples from a worker thread; each example runs as a coroutine on the test's
event loop, where the gateway and the clients live (one gateway per test, not per example).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from echonats.settings import Settings
from tests.integration.api import Workspace
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.realtime import Client, serve_gateway, ws_client

T = TypeVar("T")
# Hypothesis draws in a worker thread while the event loop keeps running; websockets' and uvicorn's
# keepalive pings take their payload from the global `random`, which hypothesis then mistakes for a
# strategy using `random` (a HypothesisDeprecationWarning). Generation itself stays deterministic.
pytestmark = [
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),  # a failing 100 kB example
]

MAX_FRAME = 256 * 1024  # room for channel ids of ~100k characters below the frame limit
KNOWN_TYPES = ("subscribe", "unsubscribe", "send", "typing", "ping")
FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows the raw example
    suppress_health_check=list(HealthCheck),
)


def _huge(max_chars: int = 100_000) -> st.SearchStrategy[str]:
    """A short random piece repeated up to ``max_chars`` characters (cheap to generate)."""
    pieces = st.text(min_size=1, max_size=8)
    return st.builds(lambda piece, n: (piece * n)[:max_chars], pieces, st.integers(0, max_chars))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=60,
)
channel_ids = st.uuids().map(str) | st.one_of(
    st.uuids().map(lambda u: u.hex.upper()), st.text(max_size=40), _huge(), json_values
)
sinces = st.one_of(
    st.integers(-(2**80), 2**80),
    st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**300]),
    st.floats() | st.booleans() | st.text(max_size=4),
)
texts = st.text(max_size=80) | _huge()
structured = st.fixed_dictionaries(
    {"type": st.sampled_from(KNOWN_TYPES) | st.text(max_size=12), "channelId": channel_ids},
    optional={"since": sinces, "body": texts, "nonce": texts, "extra": json_values},
)
frames: st.SearchStrategy[str | bytes] = st.one_of(
    st.text(),
    st.binary(),
    # Invalid UTF-8 (binary frames: a text frame cannot carry it, see the 1007 case below).
    st.builds(lambda a, b: a + b"\xc3\x28\xff" + b, st.binary(max_size=16), st.binary(max_size=16)),
    json_values.map(json.dumps),
    structured.map(json.dumps),
    st.integers(1, 20_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 50_000).map(lambda depth: "[" * depth),
    st.integers(1, 4096).map(lambda extra: '{"type":"ping","x":"' + "x" * (MAX_FRAME + extra) + '"}'),
)


def _drive(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the test's event loop from hypothesis' worker thread."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)


async def _barrier(ws: Client) -> None:
    """A ping answered: the socket is open and everything queued before it has arrived."""
    pongs = len(ws.of_type("pong"))
    await ws.send(type="ping")
    await ws.wait_for_type("pong", count=pongs + 1)


def _is_send(payload: str | bytes) -> bool:
    try:
        parsed = json.loads(payload) if isinstance(payload, str) else None
    except (ValueError, RecursionError):
        return False
    return isinstance(parsed, dict) and parsed.get("type") == "send"


def _send_answers(frames: list[dict[str, Any]]) -> int:
    return sum(f["type"] in ("ack", "error") for f in frames)


def _size(payload: str | bytes) -> int:
    return len(payload.encode() if isinstance(payload, str) else payload)


def _with_max_frame(settings_: Settings, max_frame: int) -> Settings:
    realtime = dataclasses.replace(settings_.realtime, max_frame_bytes=max_frame)
    return dataclasses.replace(settings_, realtime=realtime)


@dataclasses.dataclass
class Harness:
    """One fuzzed socket plus a well-behaved sender and watcher on the same gateway. The watcher
    follows the liveness channel and the target channel, the one the fuzzed socket may write to."""

    base: str
    token: str
    liveness: str
    target: str
    stack: AsyncExitStack
    fuzzed: Client
    sender: Client
    watcher: Client
    sent: int = 0

    @classmethod
    async def start(cls, base: str, workspace: Workspace, stack: AsyncExitStack) -> Harness:
        await workspace.set_limits(ADMIN_TOKEN, maxMessagesPerSecond=100_000)
        liveness, target = await workspace.channel("liveness"), await workspace.channel("target")
        token = workspace.token("fuzzer")
        fuzzed = await stack.enter_async_context(ws_client(base, token))
        sender = await stack.enter_async_context(ws_client(base, workspace.token("sender")))
        watcher = await stack.enter_async_context(ws_client(base, workspace.token("watcher")))
        for channel in (liveness, target):
            await watcher.send(type="subscribe", channelId=channel)
        await watcher.wait_for_type("subscribed", count=2)
        return cls(base, token, liveness, target, stack, fuzzed, sender, watcher)

    async def still_serving(self) -> None:
        """The well-behaved pair still works: a fresh message is acked and delivered."""
        self.sent += 1
        body = f"alive {self.sent}"
        await self.sender.send(type="send", channelId=self.liveness, body=body, nonce=f"n{self.sent}")
        await self.sender.wait_for_type("ack", count=self.sent)
        await self.watcher.wait(lambda: any(m["body"] == body for m in self.watcher.of_type("message")))

    async def exchange(self, *payloads: str | bytes) -> list[dict[str, Any]] | None:
        """Send frames on the fuzzed socket: the frames answering them, or None if it closed 1009."""
        ws, before = self.fuzzed, len(self.fuzzed.frames)
        for payload in payloads:
            await ws.send_raw(payload)
        answers: list[dict[str, Any]] | None = None
        if max(map(_size, payloads)) > MAX_FRAME:
            assert await ws.wait_closed() == 1009
            self.fuzzed = await self.stack.enter_async_context(ws_client(self.base, self.token))
        else:
            await _barrier(ws)
            # Sends are pipelined: their ack or error may come after the pong.
            sends = sum(map(_is_send, payloads))
            await ws.wait(lambda: _send_answers(ws.frames[before:]) >= sends, 10, f"answers to {sends} sends")
            answers = [f for f in ws.frames[before:] if f["type"] not in ("pong", "presence")]
        await _barrier(self.fuzzed)
        await self.still_serving()
        return answers

    def target_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.watcher.of_type("message") if m["channelId"] == self.target]


@pytest.fixture
async def harness(gateway_settings: Settings, workspace: Workspace) -> AsyncIterator[Harness]:
    async with serve_gateway(_with_max_frame(gateway_settings, MAX_FRAME)) as base, AsyncExitStack() as stack:
        yield await Harness.start(base, workspace, stack)


def _check_answers(payload: str | bytes, answers: list[dict[str, Any]] | None) -> None:
    """Exactly one answer; an error unless the frame was a well-formed unsubscribe."""
    if answers is None:
        assert _size(payload) > MAX_FRAME
        return
    assert len(answers) == 1, answers
    (answer,) = answers
    try:
        parsed = json.loads(payload) if isinstance(payload, str) else None
    except (ValueError, RecursionError):
        parsed = None
    request = parsed.get("type") if isinstance(parsed, dict) else None
    if answer["type"] == "unsubscribed":
        assert request == "unsubscribe", answer
        return
    assert answer["type"] == "error", answer
    assert answer["code"] in ("bad_request", "validation_failed", "not_found"), answer
    if request not in KNOWN_TYPES or isinstance(payload, bytes):
        assert answer["code"] == "bad_request", answer


async def test_random_frames_get_error_frames_and_never_break_the_gateway(harness: Harness) -> None:
    loop = asyncio.get_running_loop()
    seen: list[str | bytes] = []

    @FUZZ
    @given(payload=frames)
    @example(payload=b"\xff\xfe\xfd")
    @example(payload=json.dumps({"type": "subscribe", "channelId": "7" * 100_000}))
    @example(payload="x" * (MAX_FRAME + 1))
    def fuzz(payload: str | bytes) -> None:
        seen.append(payload)
        _check_answers(payload, _drive(loop, harness.exchange(payload)))

    await asyncio.to_thread(fuzz)
    assert len(seen) >= 40
    assert harness.sent == len(seen)
    assert any(isinstance(p, bytes) for p in seen)
    assert any(50_000 < _size(p) <= MAX_FRAME for p in seen)
    assert any(_size(p) > MAX_FRAME for p in seen)


async def test_random_sends_are_acked_and_delivered_once_or_refused_and_dropped(harness: Harness) -> None:
    """Whatever the body and nonce: an ack means stored and delivered exactly once with the trimmed
    body (a repeated nonce acks the original message again); an error means nothing was delivered."""
    loop = asyncio.get_running_loop()
    bodies: dict[int, str] = {}  # message id -> body as first acknowledged

    edge_cases = st.sampled_from(["", " ", "a\r\nb", "\x00", "x" * 16_001])

    async def send(frame: str) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
        # The target channel's messages come before the liveness message of the same stream.
        return await harness.exchange(frame), harness.target_messages()

    @FUZZ
    @given(body=st.text(max_size=80) | _huge(5000) | edge_cases, nonce=st.none() | st.text(max_size=70))
    def fuzz(body: str, nonce: str | None) -> None:
        frame = json.dumps({"type": "send", "channelId": harness.target, "body": body, "nonce": nonce})
        answers, delivered = _drive(loop, send(frame))
        assert answers is not None
        assert len(answers) == 1, answers
        if answers[0]["type"] == "ack":
            normalized = body.replace("\r\n", "\n").replace("\r", "\n").strip()
            bodies.setdefault(answers[0]["messageId"], normalized)
        else:
            assert answers[0]["code"] in ("bad_request", "validation_failed"), answers
        assert {m["payload"]["messageId"]: m["body"] for m in delivered} == bodies
        assert len(delivered) == len(bodies)

    await asyncio.to_thread(fuzz)
    assert 5 <= len(bodies) < harness.sent


async def test_since_of_any_value_replays_exactly_the_later_messages(
    harness: Harness, workspace: Workspace
) -> None:
    ids = [await workspace.send(harness.target, f"m{i}") for i in range(5)]
    await harness.watcher.wait(lambda: len(harness.target_messages()) == 5)
    loop = asyncio.get_running_loop()

    @FUZZ
    @given(since=sinces | st.integers(ids[0] - 2, ids[-1] + 2))
    @example(since=2**64)
    @example(since=-1)
    def fuzz(since: Any) -> None:
        subscribe = json.dumps({"type": "subscribe", "channelId": harness.target, "since": since})
        unsubscribe = json.dumps({"type": "unsubscribe", "channelId": harness.target})
        answers = _drive(loop, harness.exchange(subscribe, unsubscribe))
        assert answers is not None
        kinds = [(a["type"], a.get("code"), a.get("payload", {}).get("messageId")) for a in answers]
        if isinstance(since, int) and not isinstance(since, bool) and since >= 0:
            replayed = [("message", None, i) for i in ids if i > since]
            assert kinds == [("subscribed", None, None), *replayed, ("unsubscribed", None, None)]
        else:
            assert kinds == [("error", "bad_request", None), ("unsubscribed", None, None)]

    await asyncio.to_thread(fuzz)


async def test_a_frame_over_the_limit_is_closed_with_1009(
    gateway_settings: Settings, workspace: Workspace
) -> None:
    limit = 4096
    padded = '{"type":"ping","x":"' + "x" * (limit - 22) + '"}'  # exactly the limit
    assert len(padded) == limit
    async with serve_gateway(_with_max_frame(gateway_settings, limit)) as base:
        for too_big in (padded[:-2] + 'x"}', b"\x00" * (limit + 1)):
            async with ws_client(base, workspace.token("alice")) as ws:
                await ws.send_raw(padded)  # at the limit: an answer, and the socket stays open
                await _barrier(ws)
                assert [f["code"] for f in ws.of_type("error")] == ["bad_request"]
                await ws.send_raw(too_big)
                assert await ws.wait_closed() == 1009
        async with ws_client(base, workspace.token("bob")) as ws:
            await _barrier(ws)  # the gateway serves on


async def test_deep_nesting_and_invalid_utf8_get_error_frames(
    gateway_settings: Settings, workspace: Workspace
) -> None:
    frames_: list[str | bytes] = [
        "[" * 10_000 + "]" * 10_000,
        "[" * 60_000,
        '{"type":"subscribe","channelId":' + "[" * 10_000 + "]" * 10_000 + "}",
        b"\xff\xfe\xfd",
        b'{"type":"ping"}',  # valid JSON, but in a binary frame
        b'{"type":"ping","x":"\xc3\x28"}',
    ]
    async with serve_gateway(gateway_settings) as base, ws_client(base, workspace.token("alice")) as ws:
        for frame in frames_:
            await ws.send_raw(frame)
        await _barrier(ws)
        assert {f["type"] for f in ws.frames} <= {"error", "presence", "pong"}
        assert [f["code"] for f in ws.of_type("error")] == ["bad_request"] * len(frames_)
        async with ws_client(base, workspace.token("bob")) as bad_text:
            await bad_text.ws.send(b'{"type":"ping","x":"\xff"}', text=True)  # invalid UTF-8 in a text frame
            assert await bad_text.wait_closed() == 1007  # a protocol error, refused by the server
        await _barrier(ws)


async def test_deep_nesting_inside_an_object_gets_an_error_frame(
    gateway_settings: Settings, workspace: Workspace
) -> None:
    deep = "[" * 5000 + "]" * 5000
    async with serve_gateway(gateway_settings) as base, ws_client(base, workspace.token("alice")) as ws:
        for frame in ('{"x":' + deep + ',"type":"ping"}', '{"type":' + deep + "}"):
            await ws.send_raw(frame)
            await ws.send(type="ping")
            await ws.wait(lambda: bool(ws.of_type("pong")) or ws.close_code is not None)
            assert ws.close_code is None, f"closed with {ws.close_code}"
            assert [f["code"] for f in ws.of_type("error")][-1:] == ["bad_request"]
            ws.frames.clear()
