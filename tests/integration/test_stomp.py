"""STOMP over WebSocket (/ws/stomp) with real third-party clients: stomp.py, @stomp/stompjs on Node,
and a raw WebSocket client for what those refuse to send (bad frames, silent peers)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import stomp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from echonats.gateway.stomp_frames import Frame, FrameParser, serialize
from echonats.settings import Settings
from tests.integration.api import Workspace, bearer
from tests.integration.realtime import serve_gateway, ws_client

STOMP_JS = Path(__file__).resolve().parents[1] / "stomp_js"


@pytest.fixture
async def base(gateway_settings: Settings) -> AsyncIterator[str]:
    async with serve_gateway(gateway_settings) as url:
        yield url


class Recorder(stomp.ConnectionListener):
    """Collects what stomp.py's receiver thread sees and wakes the test's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.changed = asyncio.Event()
        self.frames: list[tuple[str, Any]] = []

    def _record(self, kind: str, frame: Any = None) -> None:  # called on stomp.py's receiver thread
        self.loop.call_soon_threadsafe(lambda: (self.frames.append((kind, frame)), self.changed.set()))

    def on_connected(self, frame: Any) -> None:
        self._record("connected", frame)

    def on_message(self, frame: Any) -> None:
        self._record("message", frame)

    def on_receipt(self, frame: Any) -> None:
        self._record("receipt", frame)

    def on_error(self, frame: Any) -> None:
        self._record("error", frame)

    def on_heartbeat(self) -> None:
        self._record("heartbeat")

    def on_disconnected(self) -> None:
        self._record("disconnected")

    def of(self, kind: str) -> list[Any]:
        return [frame for k, frame in self.frames if k == kind]

    async def wait(self, predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; got {self.frames[-5:]}") from None

    async def receipt(self, receipt_id: str) -> Any:
        await self.wait(lambda: self._receipt(receipt_id) is not None, f"receipt {receipt_id}")
        return self._receipt(receipt_id)

    def _receipt(self, receipt_id: str) -> Any:
        return next((f for f in self.of("receipt") if f.headers["receipt-id"] == receipt_id), None)

    async def messages(self, count: int, subscription: str | None = None) -> list[Any]:
        def matching() -> list[Any]:
            return [f for f in self.of("message") if subscription in (None, f.headers["subscription"])]

        await self.wait(lambda: len(matching()) >= count, f"{count} message(s)")
        return matching()


@asynccontextmanager
async def stomp_py(
    base: str, token: str | None, heartbeats: tuple[int, int] = (0, 0), upgrade: dict[str, str] | None = None
) -> AsyncIterator[tuple[Any, Recorder]]:
    """A connected stomp.WSStompConnection; its calls block, so they run in threads (not this loop)."""
    url = urlsplit(base)
    conn = stomp.WSStompConnection(
        [(url.hostname, url.port)],
        ws_path="/ws/stomp" + (f"?token={token}" if token else ""),
        heartbeats=heartbeats,
        reconnect_attempts_max=1,
        timeout=10,
        header=upgrade,
    )
    recorder = Recorder(asyncio.get_running_loop())
    conn.set_listener("recorder", recorder)
    await asyncio.to_thread(conn.connect, wait=True)
    await recorder.wait(lambda: bool(recorder.of("connected")), "CONNECTED")  # listener hops threads
    try:
        yield conn, recorder
    finally:
        if conn.is_connected():
            await asyncio.to_thread(conn.disconnect)


class Raw:
    """A bare WebSocket that speaks STOMP by hand, for frames real clients never send."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.parser = FrameParser()
        self.frames: list[Frame] = []

    async def send(self, command: str, body: str = "", **headers: str) -> None:
        await self.ws.send(serialize(command, headers, body).decode())

    async def next(self, timeout_s: float = 10.0) -> Frame:
        async with asyncio.timeout(timeout_s):
            while not self.frames:
                data = await self.ws.recv()
                self.frames += self.parser.feed(data.encode() if isinstance(data, str) else data)
        return self.frames.pop(0)

    async def closed(self, timeout_s: float = 10.0) -> int | None:
        async with asyncio.timeout(timeout_s):
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed:
                pass
        return self.ws.close_code


@asynccontextmanager
async def raw(
    base: str, token: str | None, subprotocols: tuple[str, ...] = ("v12.stomp",), path: str = "/ws/stomp"
) -> AsyncIterator[Raw]:
    url = f"{base}{path}" + (f"?token={token}" if token else "")
    async with connect(url, subprotocols=list(subprotocols) or None, open_timeout=10) as ws:
        yield Raw(ws)


async def raw_connected(client: Raw, **headers: str) -> Frame:
    await client.send("CONNECT", **{"accept-version": "1.2", "host": "echonats", **headers})
    frame = await client.next()
    assert frame.command == "CONNECTED", frame
    return frame


async def test_stomp_py_subscribe_send_receive_with_receipts(base: str, workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    async with stomp_py(base, workspace.token("alice", "Alice")) as (conn, alice):
        assert alice.of("connected")[0].headers["version"] == "1.2"
        conn.subscribe(f"/channels/{channel}", id="s-1", headers={"receipt": "r-sub"})
        await alice.receipt("r-sub")
        conn.send(f"/app/channels/{channel}", "hello stomp", headers={"receipt": "r-send"})
        receipt = await alice.receipt("r-send")
        [message] = await alice.messages(1)
    assert message.headers["subscription"] == "s-1"
    assert message.headers["destination"] == f"/channels/{channel}"
    assert message.headers["content-type"] == "application/json"
    assert message.headers["message-id"] == receipt.headers["message-id"]
    body = json.loads(message.body)
    assert body == {"id": int(receipt.headers["message-id"]), "username": "Alice", "channelId": channel,
                    "content": "hello stomp", "timestamp": body["timestamp"]}  # fmt: skip
    history = await workspace.client.get(f"/api/v1/channels/{channel}/messages", headers=workspace.owner)
    [stored] = history.json()["items"]  # persisted like any other message, same id and time
    assert (stored["id"], stored["body"], stored["createdAt"]) == (
        body["id"],
        "hello stomp",
        body["timestamp"],
    )


async def test_subprotocol_is_negotiated(base: str, workspace: Workspace) -> None:
    async with raw(base, workspace.token("u"), ("v10.stomp", "v11.stomp", "v12.stomp")) as client:
        assert client.ws.subprotocol == "v12.stomp"
        await raw_connected(client)
    async with raw(base, workspace.token("u"), ()) as client:
        assert client.ws.subprotocol is None  # nothing offered, nothing answered
        await raw_connected(client)


async def test_ws_speaks_stomp_to_a_client_offering_it_and_json_to_others(
    base: str, workspace: Workspace
) -> None:
    """EchoPulse's stomp.js connects to /ws, offering v10/v11/v12.stomp, the token on CONNECT."""
    channel = await workspace.channel("general")
    offered = ("v10.stomp", "v11.stomp", "v12.stomp")
    async with raw(base, None, offered, path="/ws") as client:
        assert client.ws.subprotocol == "v12.stomp"
        connected = await raw_connected(
            client, Authorization=f"Bearer {workspace.token('ann', 'Ann')}", **{"heart-beat": "20000,0"}
        )
        assert connected.headers["version"] == "1.2"
        await client.send("SUBSCRIBE", destination=f"/channels/{channel}", id="sub-0", receipt="r1")
        assert (await client.next()).command == "RECEIPT"
        await client.send("SEND", "hello", destination=f"/app/channels/{channel}")
        message = await client.next()
        assert message.command == "MESSAGE"
        assert json.loads(message.body)["content"] == "hello"
    async with connect(f"{base}/ws?token={workspace.token('ann')}", open_timeout=10) as json_client:
        assert json_client.subprotocol is None
        await json_client.send('{"type":"ping"}')
        async with asyncio.timeout(10):  # JSON frames (presence first, maybe), until the pong
            while json.loads(await json_client.recv())["type"] != "pong":
                pass


async def test_authentication_by_query_header_or_connect_frame(base: str, workspace: Workspace) -> None:
    async with raw(base, "garbage") as client:
        await client.send("CONNECT", **{"accept-version": "1.2"})
        error = await client.next()
        assert (error.command, error.get("code")) == ("ERROR", "unauthenticated")
        assert await client.closed() == 4001
    async with raw(base, None) as client:  # the token in CONNECT's Authorization header
        await raw_connected(client, Authorization=f"Bearer {workspace.token('ann')}")
        # A frame that names another user is refused and ends the session.
        await client.send(
            "SUBSCRIBE", id="1", destination="/channels/x", Authorization=f"Bearer {workspace.token('eve')}"
        )
        error = await client.next()
        assert (error.command, error.get("code")) == ("ERROR", "forbidden")
        assert await client.closed() == 4003
    async with stomp_py(base, None, upgrade=bearer(workspace.token("bob"))) as (_, bob):  # upgrade header
        assert bob.of("connected")


async def test_heartbeats_flow_both_ways(base: str, workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    async with stomp_py(base, workspace.token("hb"), heartbeats=(1000, 1000)) as (conn, client):
        assert client.of("connected")[0].headers["heart-beat"] == "1000,1000"
        # Three server heart-beats span more than twice the client's interval: a server that did
        # not count the client's heart-beats would have closed the connection by now.
        await client.wait(lambda: len(client.of("heartbeat")) >= 3, "3 heart-beats", timeout_s=8)
        conn.subscribe(f"/channels/{channel}", id="1", headers={"receipt": "r"})
        await client.receipt("r")
        assert conn.is_connected()
        assert not client.of("disconnected")


async def test_a_silent_client_is_closed_after_twice_its_heartbeat(base: str, workspace: Workspace) -> None:
    async with raw(base, workspace.token("u")) as client:
        connected = await raw_connected(client, **{"heart-beat": "1000,0"})
        assert connected.get("heart-beat") == "0,1000"  # none to the client, one a second from it
        started = asyncio.get_running_loop().time()
        assert await client.closed(timeout_s=6) == 4009
        assert asyncio.get_running_loop().time() - started >= 1.5


@pytest.mark.parametrize(
    ("connect", "frames", "reason"),
    [
        (False, ["SEND\ndestination:/app/channels/x\n\nhi\x00"], "expected CONNECT"),
        (False, ["CONNECT\naccept-version:1.0,1.1\n\n\x00"], "supported protocol versions: 1.2"),
        (True, ["FROB\n\n\x00"], "unknown command"),
        (True, ["SUBSCRIBE\ndestination:/channels/x\n\n\x00"], "needs a id header"),
        (True, ["SUBSCRIBE\nid:1\ndestination:/x\n\n\x00"] * 2, "already in use"),
        (True, ["SEND\ndestination:/d\n\n" + "x" * 30000, "x" * 30000, "x" * 30000], "larger than"),
        (True, ["SEND\nx:a\\tb\n\n\x00"], "escape"),
        (True, ["BEGIN\ntransaction:t\n\n\x00"], "not supported"),
    ],
)
async def test_bad_frames_get_an_error_and_a_close(
    base: str, workspace: Workspace, connect: bool, frames: list[str], reason: str
) -> None:
    async with raw(base, workspace.token("u")) as client:
        if connect:
            await raw_connected(client)
        for data in frames:
            await client.ws.send(data)
        error = await client.next()
        assert error.command == "ERROR"
        assert reason in (error.get("message") or ""), error
        assert await client.closed() == 1002


async def test_refused_sends_get_an_error_and_the_session_goes_on(base: str, workspace: Workspace) -> None:
    secret = await workspace.channel("secret", private=True)
    general = await workspace.channel("general")
    async with stomp_py(base, workspace.token("mia", "Mia")) as (conn, mia):
        attempts = {"r1": f"/app/channels/{secret}", "r2": "/app/channels/undefined", "r3": "/topic/x"}
        for receipt, destination in attempts.items():
            conn.send(destination, "hi", headers={"receipt": receipt})
        conn.send(f"/app/channels/{general}", "   ", headers={"receipt": "r4"})
        await mia.wait(lambda: len(mia.of("error")) == 4, "4 errors")
        codes = {e.headers["receipt-id"]: e.headers["code"] for e in mia.of("error")}
        assert codes == {"r1": "not_found", "r2": "not_found", "r3": "not_found", "r4": "validation_failed"}
        conn.send(f"/app/channels/{general}", "still here", headers={"receipt": "ok"})
        assert (await mia.receipt("ok")).headers["message-id"]
        assert not mia.of("disconnected")


async def test_unreadable_destinations_are_accepted_but_never_deliver(
    base: str, workspace: Workspace, client: Any, gateway_settings: Settings
) -> None:
    from tests.integration.api import create_workspace
    from tests.integration.conftest import ADMIN_TOKEN

    other = await create_workspace(client, gateway_settings, ADMIN_TOKEN, name="Other")
    secret = await workspace.channel("secret", private=True)
    general = await workspace.channel("general")
    async with stomp_py(base, workspace.token("max")) as (conn, watcher), \
            ws_client(base, workspace.token(workspace.owner_id)) as owner:  # fmt: skip
        await owner.send(type="subscribe", channelId=secret)
        await owner.wait_for_type("subscribed")
        for sub_id, destination in enumerate(
            [f"/channels/{secret}", "/channels/undefined", f"/servers/{other.tenant_id}/channels/created",
             f"/servers/{workspace.tenant_id}/channels/created", f"/channels/{general}", "/queue/nothing"]
        ):  # fmt: skip
            conn.subscribe(destination, id=str(sub_id), headers={"receipt": f"r{sub_id}"})
            await watcher.receipt(f"r{sub_id}")
        await workspace.send(secret, "psst")
        await owner.wait_for_type("message")  # fanned out: a subscribed STOMP socket has it queued
        await other.channel("elsewhere")
        await workspace.channel("private-news", private=True)
        await workspace.channel("news")  # same subject as the two before: arrives after them
        await workspace.send(general, "barrier")
        await watcher.messages(1, subscription="4")
        await watcher.messages(1, subscription="3")
    [created] = [
        json.loads(f.body)["event"] for f in watcher.of("message") if f.headers["subscription"] == "3"
    ]
    assert (created["name"], created["isPrivate"]) == ("news", False)
    assert sorted(f.headers["subscription"] for f in watcher.of("message")) == ["3", "4"]


async def test_messages_cross_protocols(base: str, workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    async with stomp_py(base, workspace.token("sam", "Sam")) as (conn, sam), \
            ws_client(base, workspace.token("jo", "Jo")) as jo:  # fmt: skip
        await jo.send(type="subscribe", channelId=channel)
        await jo.wait_for_type("subscribed")
        conn.subscribe(f"/channels/{channel}", id="c", headers={"receipt": "r"})
        await sam.receipt("r")
        conn.send(f"/app/channels/{channel}", "from stomp")
        await jo.send(type="send", channelId=channel, body="from json")
        json_side = await jo.wait_for_type("message", count=2)
        stomp_side = await sam.messages(2)
    assert [(f["userId"], f["body"]) for f in json_side] == [("sam", "from stomp"), ("jo", "from json")]
    bodies = [json.loads(f.body) for f in stomp_side]
    assert [(b["username"], b["content"]) for b in bodies] == [("Sam", "from stomp"), ("Jo", "from json")]
    assert [b["id"] for b in bodies] == [f["payload"]["messageId"] for f in json_side]


async def test_domain_events_reach_server_subscribers(base: str, workspace: Workspace) -> None:
    tenant = workspace.tenant_id
    async with stomp_py(base, workspace.token("eli")) as (conn, eli):
        for sub_id, kind in (("c", "channels/created"), ("d", "channels/deleted"), ("j", "user-joined")):
            conn.subscribe(f"/servers/{tenant}/{kind}", id=sub_id, headers={"receipt": sub_id})
            await eli.receipt(sub_id)
        channel = await workspace.channel("launch")
        await workspace.client.delete(f"/api/v1/channels/{channel}", headers=workspace.owner)
        await workspace.client.get("/api/v1/users/me", headers=workspace.as_user("newbie", "Newbie"))
        [created] = await eli.messages(1, subscription="c")
        [deleted] = await eli.messages(1, subscription="d")
        [joined] = await eli.messages(1, subscription="j")
    assert created.headers["destination"] == f"/servers/{tenant}/channels/created"
    expected = {"channelId": channel, "name": "launch", "topic": "", "isPrivate": False}
    # EchoPulse's shape (ids as {"value": ...}) with echonats' earlier fields beside it.
    echopulse = {"id": {"value": channel}, "serverId": {"value": str(tenant)}}
    assert json.loads(created.body) == {"event": {**echopulse, **expected, "createdBy": workspace.owner_id}}
    assert json.loads(deleted.body)["event"]["id"] == {"value": channel}
    member_role = {
        "name": "member",
        "description": "Reads and writes in the channels they can see.",
        "color": "#95a5a6",
        "permissions": [],
    }
    assert json.loads(joined.body)["event"] == {
        "userId": {"value": "newbie"},
        "serverId": {"value": str(tenant)},
        "username": "Newbie",
        "displayName": "Newbie",
        "role": "member",
        "roles": [member_role],
    }


async def test_two_subscription_ids_on_one_channel_both_deliver(base: str, workspace: Workspace) -> None:
    channel = await workspace.channel("general")
    async with stomp_py(base, workspace.token("dee")) as (conn, dee):
        for sub_id in ("a", "b"):
            conn.subscribe(f"/channels/{channel}", id=sub_id, headers={"receipt": sub_id})
            await dee.receipt(sub_id)
        await workspace.send(channel, "one")
        await dee.messages(2)
        conn.unsubscribe("a", headers={"receipt": "u"})
        await dee.receipt("u")
        await workspace.send(channel, "two")
        await dee.messages(2, subscription="b")
    delivered = [(f.headers["subscription"], json.loads(f.body)["content"]) for f in dee.of("message")]
    assert sorted(delivered) == [("a", "one"), ("b", "one"), ("b", "two")]


async def test_disconnect_with_receipt(base: str, workspace: Workspace) -> None:
    async with raw(base, workspace.token("u")) as client:
        await raw_connected(client)
        await client.send("DISCONNECT", receipt="bye")
        receipt = await client.next()
        assert (receipt.command, receipt.get("receipt-id")) == ("RECEIPT", "bye")
        assert await client.closed() == 1000


async def test_stompjs_client_on_node(base: str, workspace: Workspace) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the @stomp/stompjs client test")
    if not (STOMP_JS / "node_modules" / "@stomp" / "stompjs").is_dir():
        await asyncio.to_thread(
            subprocess.run, ["npm", "install", "--no-audit", "--no-fund"], cwd=STOMP_JS, check=True,
            timeout=300, capture_output=True,
        )  # fmt: skip
    channel = await workspace.channel("general")
    url = f"{base}/ws/stomp?token={workspace.token('node', 'Node')}"
    process = await asyncio.create_subprocess_exec(
        "node", "client.mjs", url, channel, "hi from node", cwd=STOMP_JS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, (out, err)
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["protocol"] == "v12.stomp"
    assert result["connected"]["version"] == "1.2"
    assert result["connected"]["heart-beat"] == "1000,1000"
    message = result["message"]
    assert message["headers"]["subscription"] == "sub-0"
    assert message["headers"]["message-id"] == result["sendReceipt"]["message-id"]
    assert message["body"]["username"] == "Node"
    assert message["body"]["content"] == "hi from node"
