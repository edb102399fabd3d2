"""No token in the logs of a real gateway process: its whole stderr, in both log formats, is grepped
after WebSocket upgrades with ``?token=`` (JSON and STOMP), REST calls with a bearer header and a
token in a query string, valid and invalid tokens."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from echonats.adapters.dev_tokens import mint_dev_token
from echonats.devstack.stack import free_port
from echonats.settings import load_settings
from tests.integration.api import wait_for
from tests.integration.conftest import ADMIN_TOKEN

WAIT_S = 30.0


@contextmanager
def gateway_logging_to(log: IO[bytes], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`echonats gateway` with stdout and stderr into ``log``, stopped (SIGTERM) on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "echonats", "gateway"],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_ready(process: subprocess.Popen[bytes], base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=2.0) as http:

        async def ready() -> bool:
            assert process.poll() is None, f"the gateway exited with {process.returncode}"
            try:
                return (await http.get("/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(ready, timeout_s=WAIT_S, what=f"{base}/ready")


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_a_gateway_run_logs_no_token(service_env: dict[str, str], log_format: str) -> None:
    env = {
        **service_env,
        "ECHONATS_ADMIN_TOKEN": ADMIN_TOKEN,
        "ECHONATS_LOG_FORMAT": log_format,
        "ECHONATS_LOG_LEVEL": "DEBUG",  # everything anyone logs
    }
    auth = load_settings(env).auth
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        with gateway_logging_to(log, {**env, "ECHONATS_GATEWAY_PORT": str(port)}) as process:
            await wait_ready(process, base)
            async with httpx.AsyncClient(base_url=base, timeout=WAIT_S) as http:
                created = await http.post(
                    "/api/v1/admin/tenants",
                    json={"name": "acme", "adminEmail": "a@example.com", "adminDisplayName": "Ada"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
                assert created.status_code == 201, created.text
                tenant_id = created.json()["id"]
                token = mint_dev_token(auth, tenant_id=tenant_id, user_id="ada", name="Ada")
                forged = token[:-6] + "AAAAAA"  # JWT-shaped, bad signature: the refusal path logs too
                for credential in (token, forged):
                    await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {credential}"})
                    await http.get(f"/api/v1/channels?token={credential}")
                    await http.get(f"/health?token={credential}")
            for path in ("/ws", "/ws/stomp"):
                for credential in (token, forged):
                    url = f"ws://127.0.0.1:{port}{path}?token={credential}"
                    async with connect(url, open_timeout=WAIT_S) as ws:
                        # A forged token is closed with 4001, maybe before the first send.
                        with contextlib.suppress(ConnectionClosed):
                            if path == "/ws":
                                await ws.send('{"type":"ping"}')
                            else:
                                await ws.send(f"CONNECT\naccept-version:1.2\npasscode:{credential}\n\n\x00")
                            await ws.recv()  # pong / CONNECTED / the close: the gateway handled the socket
        log.seek(0)
        output = log.read().decode()
    assert '"WebSocket /ws?token=[redacted]" [accepted]' in output.replace('\\"', '"')  # the line is there
    for secret in (token, forged, token.split(".")[1], token.split(".")[2], ADMIN_TOKEN, "eyJ"):
        assert secret not in output, f"{secret[:12]}... in the gateway's log"
