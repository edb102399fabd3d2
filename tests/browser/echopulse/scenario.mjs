// EchoPulse's front-end contract, step by step (see its global.store.ts, server.service.ts and
// rx-stomp.service.ts): log in with keycloak-js, call the REST surface with the bearer token, and
// use one STOMP connection on /ws for two servers. The outcome goes to window.__result.
import Keycloak from "../node_modules/keycloak-js/lib/keycloak.js";

const config = Object.fromEntries(new URLSearchParams(location.search));
const log = (line) => { document.getElementById("log").textContent += line + "\n"; };
const result = { steps: [] };

const keycloak = new Keycloak({ url: config.issuer, realm: "echopulse", clientId: "echo-pulse-front-end" });

async function api(method, path, body) {
  const response = await fetch(`${config.api}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${keycloak.token}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  result.steps.push({ method, path, status: response.status });
  log(`${method} ${path} -> ${response.status}`);
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return json;
}

function stompConnect(token) {
  // rx-stomp.service.ts: brokerURL with ?token=, Authorization on CONNECT, heart-beats 0 in / 20000 out.
  const client = new StompJs.Client({
    brokerURL: `${config.ws}?token=${token}`,
    connectHeaders: { Authorization: "Bearer " + token },
    heartbeatIncoming: 0,
    heartbeatOutgoing: 20000,
    reconnectDelay: 200,
  });
  return new Promise((resolve, reject) => {
    client.onConnect = (frame) => resolve({ client, connected: frame.headers });
    client.onStompError = (frame) => reject(new Error(frame.headers.message));
    client.activate();
  });
}

function nextMessage(client, destination, headers, matches = () => true) {
  return new Promise((resolve) => {
    const subscription = client.subscribe(destination, (message) => {
      const body = JSON.parse(message.body);
      if (!matches(body)) return;
      subscription.unsubscribe();
      resolve(body);
    }, headers);
  });
}

async function scenario() {
  const authenticated = await keycloak.init({ onLoad: "login-required", checkLoginIframe: false });
  result.authenticated = authenticated;
  result.tokenClaims = keycloak.tokenParsed;
  result.refreshClaims = keycloak.refreshTokenParsed;
  result.idNonce = keycloak.idTokenParsed?.nonce ?? null;
  result.before = await api("GET", "/api/users");

  const alpha = await api("POST", "/api/servers", { name: "Alpha" });
  const beta = await api("POST", "/api/servers", { name: "Beta" });
  result.alphaDetails = await api("GET", `/api/servers/${alpha.id}`);
  result.members = await api("GET", `/api/servers/${alpha.id}/members`);
  const alphaChannel = await api("POST", `/api/servers/${alpha.id}/channels`, { name: "general" });
  const betaChannel = await api("POST", `/api/servers/${beta.id}/channels`, { name: "random" });
  result.alphaChannels = await api("GET", `/api/servers/${alpha.id}/channels`);
  result.user = await api("GET", "/api/users");

  const token = keycloak.token;
  const auth = { Authorization: `Bearer ${token}` };
  const { client, connected } = await stompConnect(token);
  result.connected = connected;
  result.protocol = client.webSocket?.protocol ?? null;
  const created = nextMessage(client, `/servers/${alpha.id}/channels/created`, auth);
  const inAlpha = nextMessage(client, `/channels/${alphaChannel.id}`, auth);
  const inBeta = nextMessage(client, `/channels/${betaChannel.id}`, auth);
  // SUBSCRIBE frames go out before these: stompjs writes frames in order on one socket.
  client.publish({ destination: `/app/channels/${alphaChannel.id}`, headers: auth, body: JSON.stringify("hello Alpha") });
  client.publish({ destination: `/app/channels/${betaChannel.id}`, headers: auth, body: JSON.stringify("hello Beta") });
  result.alphaMessage = await inAlpha;
  result.betaMessage = await inBeta;
  await api("POST", `/api/servers/${alpha.id}/channels`, { name: "announcements" });
  result.createdEvent = await created;
  result.posts = await api("GET", `/api/channels/${alphaChannel.id}/posts`);

  await api("DELETE", `/api/servers/${alpha.id}/channels/${alphaChannel.id}`);
  await api("DELETE", `/api/servers/${beta.id}`);
  result.after = await api("GET", "/api/users");
  await client.deactivate();
}

scenario().then(
  () => { result.ok = true; window.__result = result; },
  (error) => { result.ok = false; result.error = String(error?.stack ?? error); window.__result = result; },
);
