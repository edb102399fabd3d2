// A @stomp/stompjs client over Node's `ws`, driven by tests/integration/test_stomp.py.
//
//   node client.mjs <ws-url-with-token> <channelId> [body]
//
// Connects (heart-beats 1000,1000), subscribes to /channels/<channelId> with a receipt, then sends
// <body> to /app/channels/<channelId> with a receipt and waits until its own message comes back.
// Prints one JSON object {protocol, connected, sendReceipt, message} and exits 0; on an ERROR
// frame, a closed socket or the deadline it prints {error, ...} and exits 1.
import { Client } from "@stomp/stompjs";
import WebSocket from "ws";

// Node 20 has no global WebSocket; stompjs creates `new WebSocket(url, ["v10.stomp", ...])`, and
// `ws` aborts the handshake unless the server answers one of those subprotocols.
Object.assign(globalThis, { WebSocket });

const [url, channelId, body = `hello from stompjs ${Date.now()}`] = process.argv.slice(2);
if (!url || !channelId) {
  console.error("usage: node client.mjs <ws-url> <channelId> [body]");
  process.exit(2);
}

const result = {};
let finished = false;
function finish(code, extra = {}) {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify({ ...result, ...extra }));
  process.exit(code);
}
const deadline = setTimeout(() => finish(1, { error: "timed out" }), 20000);

const client = new Client({
  brokerURL: url,
  heartbeatIncoming: 1000,
  heartbeatOutgoing: 1000,
  reconnectDelay: 0, // a test wants the first failure, not a retry loop
  onConnect: (frame) => {
    result.protocol = client.webSocket?.protocol ?? null;
    result.connected = frame.headers;
    client.watchForReceipt("sub-1", () => {
      client.watchForReceipt("send-1", (receipt) => {
        result.sendReceipt = receipt.headers;
        maybeDone();
      });
      client.publish({
        destination: `/app/channels/${channelId}`,
        body,
        headers: { receipt: "send-1", "content-type": "text/plain" },
      });
    });
    client.subscribe(
      `/channels/${channelId}`,
      (message) => {
        const payload = JSON.parse(message.body);
        if (payload.content !== body) return; // someone else's message
        result.message = { headers: message.headers, body: payload };
        maybeDone();
      },
      { id: "sub-0", receipt: "sub-1" },
    );
  },
  onStompError: (frame) => finish(1, { error: frame.headers.message, headers: frame.headers }),
  onWebSocketClose: (event) => finish(1, { error: `socket closed (${event.code})` }),
});

function maybeDone() {
  if (!result.message || !result.sendReceipt) return;
  clearTimeout(deadline);
  finished = true; // the close that deactivate() causes is expected now
  client.deactivate().then(() => {
    console.log(JSON.stringify(result));
    process.exit(0);
  });
}

client.activate();
