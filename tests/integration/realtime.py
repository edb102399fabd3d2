"""WebSocket test harness: real uvicorn gateways (in-process or as processes) and a small client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from echonats.bootstrap import create_gateway_app
from echonats.gateway.server import listening_socket, uvicorn_config
from echonats.settings import Settings, with_overrides
from echonats.stack import free_port


@asynccontextmanager
async def serve_gateway(settings: Settings) -> AsyncIterator[str]:
    """A real uvicorn gateway in this event loop on a free port; yields its ws:// base URL."""
    port = free_port()
    gateway = with_overrides(settings, gateway=type(settings.gateway)(host="127.0.0.1", port=port))
    server = uvicorn.Server(uvicorn_config(create_gateway_app(gateway), gateway))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    sock = listening_socket(gateway)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("gateway exited during start-up")
                await asyncio.sleep(0.01)  # polling the started flag with a deadline
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextmanager
def gateway_process(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`echonats gateway` as a separate process; yields it and its http:// base URL once ready."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "echonats", "gateway"],
        env={**os.environ, **env, "ECHONATS_GATEWAY_PORT": str(port)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Client:
    """A JSON WebSocket client that keeps every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.close_code: int | None = None

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self._arrived.set()

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    async def wait(self, predicate: Any, timeout_s: float = 10.0, what: str = "frames") -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                if self._reader.done() and not predicate():
                    raise AssertionError(
                        f"connection closed ({self.close_code}) before {what}: {self.frames[-5:]}"
                    )
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_for_type(self, kind: str, count: int = 1, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        await self.wait(lambda: len(self.of_type(kind)) >= count, timeout_s, f"{count} {kind} frame(s)")
        return self.of_type(kind)

    async def wait_closed(self, timeout_s: float = 10.0) -> int | None:
        async with asyncio.timeout(timeout_s):
            await asyncio.shield(self._reader)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


@asynccontextmanager
async def ws_client(base: str, token: str | None, **options: Any) -> AsyncIterator[Client]:
    url = f"{base}/ws" + (f"?token={token}" if token else "")
    async with connect(url, open_timeout=10, **options) as ws:
        client = Client(ws)
        try:
            yield client
        finally:
            await client.close()
