"""Header size and read-time limits, over real TCP sockets against a real uvicorn server.

The server runs the gateway's uvicorn configuration (``gateway.server.uvicorn_config``: the same
protocol class and limits) around a minimal ASGI app, so these tests need no services; the last ones
run the real gateway app to check what Litestar makes of a dropped request. Every wait is for an
event (a response, EOF) with a generous bound, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from echonats.devstack.stack import free_port
from echonats.gateway.listener import listening_socket
from echonats.gateway.server import uvicorn_config
from echonats.settings import Settings, load_settings, with_overrides
from tests.integration.api import wait_for
from tests.integration.realtime import serve_gateway

HEADER_LIMIT = 8192
HEADER_TIMEOUT_S = 2.0  # small for the test, but well above scheduling delays on a loaded machine
BODY_TIMEOUT_S = 2.0
WAIT_S = 20.0  # bound on every wait: far above the timeouts under test, on a loaded machine too


class EchoApp:
    """Answers every request with the length of the body it read; accepts WebSockets; remembers what
    its ``receive`` returned, so a test can see that a dropped request reached the app as a disconnect."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.finished = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await receive()  # until the client closes
        else:
            await self._http(receive, send)

    async def _http(self, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            self.events.append(message["type"])
            if message["type"] == "http.disconnect":
                self.finished.set()
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        text = str(len(body)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(text))],
            }
        )
        await send({"type": "http.response.body", "body": text})
        self.finished.set()


def limited_settings(base: Settings | None = None) -> Settings:
    settings = base or load_settings({"ECHONATS_JWT_SECRET": "x" * 32})
    return with_overrides(
        settings,
        gateway=dataclasses.replace(
            settings.gateway,
            host="127.0.0.1",
            port=free_port(),
            http_max_header_bytes=HEADER_LIMIT,
            http_header_timeout_s=HEADER_TIMEOUT_S,
            http_body_timeout_s=BODY_TIMEOUT_S,
        ),
    )


@asynccontextmanager
async def serve(app: EchoApp) -> AsyncIterator[int]:
    settings = limited_settings()
    server = uvicorn.Server(uvicorn_config(app, settings))  # type: ignore[arg-type]
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    sock = listening_socket(settings)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_for(lambda: _started(server, task), timeout_s=WAIT_S, what="uvicorn start-up")
        yield settings.gateway.port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_S)
        sock.close()


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
        raise RuntimeError("uvicorn exited during start-up")
    return server.started


@pytest.fixture
async def app() -> EchoApp:
    return EchoApp()


@pytest.fixture
async def port(app: EchoApp) -> AsyncIterator[int]:
    async with serve(app) as bound:
        yield bound


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes; a reset after the response counts as the close."""
    chunks: list[bytes] = []
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionError:  # reset (or a broken pipe seen by our own writes)
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


async def test_a_huge_header_gets_431_before_the_client_has_sent_it(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    total = 64 * 1024 * 1024
    sent = 0
    response = asyncio.create_task(reader.readuntil(b"\r\n"))
    writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Huge: ")
    with contextlib.suppress(ConnectionError):
        while sent < total and not response.done():
            writer.write(b"a" * 65536)
            sent += 65536
            await writer.drain()  # blocks once the server stops reading: then the response is read
    status_line = await asyncio.wait_for(response, WAIT_S)
    assert status_line.startswith(b"HTTP/1.1 431 "), status_line
    assert sent < total, "the server read the whole 64 MiB header"
    await read_to_eof(reader)  # and then it closes
    writer.close()


async def test_headers_over_the_limit_in_one_read_get_431(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(HEADER_LIMIT // 1000 + 1))
    writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
    response = await read_to_eof(reader)
    assert response.startswith(b"HTTP/1.1 431 "), response[:80]
    writer.close()


async def test_a_websocket_upgrade_with_headers_over_the_limit_gets_431(port: int) -> None:
    # Each line is under the websockets library's own 8 KiB line limit; together they are over ours.
    small = {f"X-Pad-{i}": "a" * 1000 for i in range(3)}
    async with connect(f"ws://127.0.0.1:{port}/ws", additional_headers=small, open_timeout=WAIT_S):
        pass
    large = {f"X-Pad-{i}": "a" * 1000 for i in range(HEADER_LIMIT // 1000 + 1)}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{port}/ws", additional_headers=large, open_timeout=WAIT_S):
            pass
    assert refused.value.response.status_code == 431


async def test_requests_under_the_limits_are_served_on_one_keep_alive_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(HEADER_LIMIT // 1000 - 2))
    for _ in range(3):
        writer.write(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n" + headers + b"\r\nhello")
        async with asyncio.timeout(WAIT_S):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert await reader.readexactly(1) == b"5"
    writer.close()


async def test_unfinished_headers_get_408_and_are_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Never: ends")
    response = await read_to_eof(reader)
    assert response.startswith(b"HTTP/1.1 408 "), response[:80]
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    response = await read_to_eof(reader)
    assert response.startswith(b"HTTP/1.1 408 "), response[:80]
    writer.close()


async def test_a_body_that_never_arrives_gets_408_and_the_app_a_disconnect(port: int, app: EchoApp) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
    response = await read_to_eof(reader)
    assert response.startswith(b"HTTP/1.1 408 "), response[:80]
    await asyncio.wait_for(app.finished.wait(), WAIT_S)
    assert app.events[-1] == "http.disconnect"
    writer.close()


async def test_drops_are_logged_at_info_at_most_once_per_interval(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\n")
        await read_to_eof(reader)
        writer.close()
    drops = [r for r in caplog.records if r.name == "echonats.http"]
    assert len(drops) <= 1, [
        r.getMessage() for r in drops
    ]  # another test's line may have started the interval
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# -- the real gateway app: what a dropped request used to log (an ERROR line per request) ----------


@pytest.mark.parametrize("client_leaves", [True, False], ids=["client-leaves", "body-timeout"])
async def test_a_dropped_request_body_is_no_error_for_the_gateway(
    settings: Settings, caplog: pytest.LogCaptureFixture, client_leaves: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve_gateway(limited_settings(settings)) as base:
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /api/v1/channels HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        if client_leaves:
            writer.close()  # after the headers: the server parses them before it sees the close
        else:
            assert (await read_to_eof(reader)).startswith(b"HTTP/1.1 408 ")
            writer.close()
        await wait_for(lambda: _request_finished(caplog), timeout_s=WAIT_S, what="the request to finish")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def _request_finished(caplog: pytest.LogCaptureFixture) -> bool:
    return any(
        r.name == "echonats.http" and r.getMessage() in ("request", "request failed") for r in caplog.records
    )
