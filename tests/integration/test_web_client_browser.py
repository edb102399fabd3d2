"""The web client in a real browser: two users in two headless Chromium contexts (Debian's, driven
by playwright-core) sign in on the local OIDC issuer, each through its own gateway process; one's
gateway is killed and started again while the other writes, edits, reacts and deletes. Afterwards
both views hold the same messages, each once, in order, in the same state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from echonats.devstack.stack import free_port
from tests.integration.test_cli_run import _wait_until
from tests.integration.test_echopulse_browser import BROWSER, CHROMIUM, _answers, _require_tools
from tests.integration.test_processes import _stop

Process = subprocess.Popen[bytes]
REALM = "echonats"


def _start(args: list[str], env: dict[str, str]) -> Process:
    return subprocess.Popen(
        [sys.executable, "-m", "echonats", *args],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextmanager
def _processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            _stop(process)


def _gateway(env: dict[str, str], port: int) -> Process:
    process = _start(["gateway"], {**env, "ECHONATS_GATEWAY_PORT": str(port)})

    def ready() -> bool:
        assert process.poll() is None, f"gateway :{port} exited with {process.returncode}"
        return _answers(f"http://127.0.0.1:{port}/ready")

    _wait_until(ready, 60, f"gateway :{port}")
    return process


@pytest.fixture
def web_stack(env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The local issuer, a worker and two gateways that trust the issuer and point their web
    client at it (what `echonats run` sets up)."""
    issuer_port, port_a, port_b = free_port(), free_port(), free_port()
    issuer = f"http://localhost:{issuer_port}"
    gateway_env = {
        **env,
        "ECHONATS_JWT_JWKS_URL": f"{issuer}/realms/{REALM}/protocol/openid-connect/certs",
        "ECHONATS_WEB_OIDC_ISSUER": f"{issuer}/realms/{REALM}",
        "ECHONATS_SELF_SERVICE_WORKSPACES": "true",
    }
    with ExitStack() as stack:
        started = stack.enter_context(_processes())
        started.append(_start(["issuer", "--port", str(issuer_port), "--public-url", issuer], env))
        discovery = f"http://127.0.0.1:{issuer_port}/realms/{REALM}/.well-known/openid-configuration"
        _wait_until(lambda: _answers(discovery), 30, "the local issuer")
        started.append(_start(["worker"], {**env, "ECHONATS_WORKER_METRICS_PORT": "0"}))
        started.append(_gateway(gateway_env, port_a))
        gateway_b = _gateway(gateway_env, port_b)
        stack.callback(lambda: _stop(state["gateway_b"]))
        state: dict[str, Any] = {
            "env": gateway_env,
            "url_a": f"http://localhost:{port_a}/",
            "url_b": f"http://localhost:{port_b}/",
            "port_b": port_b,
            "gateway_b": gateway_b,
        }
        yield state


def _drive(web_stack: dict[str, Any], screenshots: str | None) -> dict[str, Any]:
    """Runs the scenario, doing what it asks for on the way (stop or start gateway B)."""
    args = ["node", "webclient/two_users.mjs", web_stack["url_a"], web_stack["url_b"]]
    if screenshots:
        args.append(screenshots)
    last = ""
    errors = ""
    with subprocess.Popen(  # the with block closes its pipes
        args, cwd=BROWSER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CHROMIUM": CHROMIUM},
    ) as node:  # fmt: skip
        assert node.stdin is not None
        assert node.stdout is not None
        assert node.stderr is not None
        try:
            last = _answer_requests(node, web_stack)
            node.wait(timeout=180)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
        errors = node.stderr.read()
    assert last, errors or "no output"
    result: dict[str, Any] = json.loads(last)
    return result


def _answer_requests(node: subprocess.Popen[str], web_stack: dict[str, Any]) -> str:
    """Reads the scenario's lines, doing what it asks for; returns its last JSON line."""
    assert node.stdin is not None
    assert node.stdout is not None
    last = ""
    for line in node.stdout:
        if not line.startswith("{"):
            continue
        last = line
        message = json.loads(line)
        if message.get("need") == "gateway-b-down":
            web_stack["gateway_b"].kill()  # like a crash or a cut cable: no close frame
            web_stack["gateway_b"].wait(timeout=10)
        elif message.get("need") == "gateway-b-up":
            web_stack["gateway_b"] = _gateway(web_stack["env"], web_stack["port_b"])
        else:
            continue
        node.stdin.write("ok\n")
        node.stdin.flush()
    return last


def test_two_users_chat_and_one_catches_up_after_its_gateway_died(web_stack: dict[str, Any]) -> None:
    _require_tools()
    screenshots = os.environ.get("WEB_CLIENT_SCREENSHOTS")  # `make screenshots` sets docs/screenshots
    if screenshots:  # absolute: node runs in tests/browser
        screenshots = str(Path(screenshots).resolve())
        Path(screenshots).mkdir(parents=True, exist_ok=True)
    result = _drive(web_stack, screenshots)
    assert result["ok"], (result.get("error"), result.get("steps"), result.get("console"))

    assert result["typingSeenByAnn"] == "Bob is typing…"
    assert "Bob:online" in result["annSeesBob"]
    assert result["bobStateWhileDown"] in ("reconnecting", "offline")

    # While Bob's gateway was gone: Ann's view then is exactly Bob's after the reconnect.
    ann, bob = result["annView"], result["bobView"]
    assert [m["id"] for m in bob] == [m["id"] for m in ann]
    assert len({m["id"] for m in bob}) == len(bob)  # nothing twice
    assert [m["id"] for m in bob] == sorted(m["id"] for m in bob)  # in order
    assert bob == ann  # same bodies, edits, deletions, reactions, pins, reply counts
    bodies = [m["body"] for m in bob]
    assert bodies[:2] == ["hello from Ann, edited", "hi Ann"]
    away = [b for b in bodies if b.startswith("while away")]
    assert away == ["while away 1", "while away 2", "while away 4", "while away 5"]
    assert sum(m["deleted"] for m in bob) == 1
    assert next(m for m in bob if m["body"] == "hi Ann")["reactions"] == ["👍 1"]
    assert next(m for m in bob if m["body"] == "hi Ann")["pinned"] is True
    assert next(m for m in bob if m["body"].startswith("hello from Ann"))["replies"] == "1 reply"

    # Bob's edit, reaction and deletion after the reconnect reached Ann live.
    final = {m["id"]: m for m in result["annFinal"]}
    assert [m["id"] for m in result["annFinal"]] == [m["id"] for m in result["bobFinal"]]
    hello = next(m for m in final.values() if m["body"] == "hello from Ann, edited")
    assert hello["reactions"] == ["👍 1"]
    assert any(m["body"] == "hi Ann, edited by Bob" and m["edited"] for m in final.values())
    assert sum(m["deleted"] for m in final.values()) == 2
    assert not [line for line in result["console"] if "pageerror" in line], result["console"]
