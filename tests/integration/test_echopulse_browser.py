"""EchoPulse's front-end contract in a real browser, against `echonats run` with the README's
settings: keycloak-js 26 logs in on the local OIDC issuer in headless Chromium (Debian's, driven by
playwright-core), calls the REST surface cross-origin with the token (CORS), and @stomp/stompjs 7
uses one STOMP connection on /ws, with EchoPulse's heart-beats and frames, for two servers."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from echonats.devstack.stack import free_port
from tests.integration.test_cli_run import _clean_env, _wait_until

BROWSER = Path(__file__).resolve().parents[1] / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _require_tools() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if not Path(CHROMIUM).exists():
        missing.append(CHROMIUM)
    if missing:
        reason = f"browser tests need {', '.join(missing)} (`.ci/run` installs them)"
        if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    if not (BROWSER / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER, check=True, timeout=300)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_origin() -> Iterator[str]:
    """The front-end's origin: tests/browser served on localhost (a secure context for PKCE)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(BROWSER)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def echonats(page_origin: str) -> Iterator[tuple[str, str]]:
    """`echonats run` as the README's "Running EchoPulse's front-end" says (free ports instead of
    8181 and 18080); yields the gateway's and the issuer's base URLs."""
    port, issuer_port = free_port(), free_port()
    env = _clean_env(
        ECHONATS_GATEWAY_PORT=str(port),
        ECHONATS_CORS_ORIGINS=page_origin,
        ECHONATS_SELF_SERVICE_WORKSPACES="true",
        ECHONATS_LOCAL_ISSUER_PORT=str(issuer_port),
        ECHONATS_WORKER_METRICS_PORT=str(free_port()),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "echonats", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway, issuer = f"http://127.0.0.1:{port}", f"http://localhost:{issuer_port}"
    try:
        _wait_until(lambda: _answers(f"{gateway}/ready"), 90, "the gateway to be ready")
        discovery = f"http://127.0.0.1:{issuer_port}/realms/echopulse/.well-known/openid-configuration"
        _wait_until(lambda: _answers(discovery), 30, "the local issuer")
        yield gateway, issuer
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_echopulse_front_end_contract_in_chromium(page_origin: str, echonats: tuple[str, str]) -> None:
    _require_tools()
    gateway, issuer = echonats
    ws = gateway.replace("http://", "ws://") + "/ws"
    url = f"{page_origin}/echopulse/index.html?api={gateway}&ws={ws}&issuer={issuer}"
    run = subprocess.run(
        ["node", "drive.mjs", url, "Grace Hopper"],
        cwd=BROWSER,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CHROMIUM": CHROMIUM},
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, (run.stdout, run.stderr)
    result = json.loads(lines[-1])
    assert result["ok"], (result.get("error"), result.get("console"), result.get("steps"))

    # keycloak-js: code + PKCE against the issuer; access and refresh tokens decoded as JWTs.
    assert result["authenticated"] is True
    claims = result["tokenClaims"]
    assert claims["preferred_username"] == "Grace Hopper"
    assert claims["iss"] == f"{issuer}/realms/echopulse"
    assert claims["exp"] - claims["iat"] >= 8 * 3600  # a working day: the front-end never refreshes
    assert result["refreshClaims"]["typ"] == "Refresh"
    assert result["idNonce"]

    # REST, cross-origin with the bearer token: every call answered with CORS (else fetch throws).
    user = claims["sub"]
    assert result["before"] == {"id": user, "username": "Grace Hopper", "displayName": "Grace Hopper",
                                "memberships": []}  # fmt: skip
    alpha = result["alphaDetails"]
    assert alpha["name"] == "Alpha"
    assert alpha["defaultRole"]["name"] == "member"
    assert [m["user"]["id"] for m in result["members"]] == [user]
    assert "DELETE_SERVER" in result["members"][0]["roles"][0]["permissions"]
    assert [c["name"] for c in result["alphaChannels"]] == ["general"]
    assert sorted(m["server"]["name"] for m in result["user"]["memberships"]) == ["Alpha", "Beta"]

    # STOMP on /ws: stompjs offers v1x.stomp, gets v12.stomp; heart-beats as negotiated.
    assert result["protocol"] == "v12.stomp"
    assert result["connected"]["version"] == "1.2"
    assert result["connected"]["heart-beat"] == "0,20000"
    assert (result["alphaMessage"]["content"], result["alphaMessage"]["username"]) == (
        "hello Alpha",
        "Grace Hopper",
    )
    assert result["betaMessage"]["content"] == "hello Beta"
    event = result["createdEvent"]["event"]
    assert event["name"] == "announcements"
    assert set(event["id"]) == {"value"}
    assert [p["content"] for p in result["posts"]] == ["hello Alpha"]

    # Deleting: the channel, then the whole Beta server.
    assert [m["server"]["name"] for m in result["after"]["memberships"]] == ["Alpha"]
    assert all(200 <= step["status"] < 300 for step in result["steps"])
