// The JSON WebSocket (/ws) as a client should use it: one socket per workspace (?tenant=), every
// subscription resumed with `since` = the last id seen on it after a reconnect (nothing missed,
// nothing twice), the live feed resumed with its feedId, writes carrying nonces and resent with the
// same nonce until acknowledged (the server answers a resend with the original), `rate_limited`
// honoured with its retryAfterMs, a fresh token handed over with `reauth`, and exponential backoff
// with jitter between attempts.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 45000; // no frame at all for this long: the connection is dead
const CLOSE_UNAUTHENTICATED = 4001;
const CLOSE_FORBIDDEN = 4003;
const CLOSE_NOT_FOUND = 4004;

let nonceCounter = 0;
export function newNonce() {
  nonceCounter += 1;
  return `${Date.now().toString(36)}-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}-${nonceCounter}`;
}

export class ChatSocket extends EventTarget {
  constructor({ auth, tenant }) {
    super();
    this.auth = auth;
    this.tenant = tenant;
    this.ws = null;
    this.state = "connecting";
    this.attempt = 0;
    this.since = new Map(); // channelId -> last id seen (null: live only, no id seen yet)
    this.feedSince = null;
    this.writes = new Map(); // nonce -> {frame, resolve, reject, timer}; Map keeps send order
    this.lastFrameAt = 0;
    this.timers = { reconnect: null, ping: null };
    this.stopped = false;
    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => { this.setState("offline"); this.ws?.close(); };
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.onToken = (event) => this.sendRaw({ type: "reauth", token: event.detail });
    auth.addEventListener("token", this.onToken);
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timers.reconnect);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ token: this.auth.token, tenant: this.tenant });
    const ws = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.lastFrameAt = Date.now();
      this.setState("connected");
      if (this.feedSince !== null) this.sendRaw({ type: "feed", since: this.feedSince });
      for (const [channelId, since] of this.since) this.sendSubscribe(channelId, since);
      for (const write of this.writes.values()) this.sendRaw(write.frame); // same nonces: no duplicates
      this.sendRaw({ type: "presence_query" });
      this.dispatchEvent(new Event("open"));
      this.schedulePing();
    };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    clearTimeout(this.timers.ping);
    this.ws = null;
    if (this.stopped) return;
    if (code === CLOSE_FORBIDDEN || code === CLOSE_NOT_FOUND) {
      this.setState("offline", { reason: reason || "not allowed in this workspace", final: true });
      this.dispatchEvent(new CustomEvent("denied", { detail: { code, reason } }));
      return;
    }
    if (code === CLOSE_UNAUTHENTICATED) {
      // The token expired or was refused: a fresh one first, then connect again.
      this.auth.refresh().then(() => this.retry(), () => {
        this.setState("offline", { reason: "signed out", final: true });
        this.dispatchEvent(new Event("unauthenticated"));
      });
      return;
    }
    this.retry();
  }

  retry() {
    if (!navigator.onLine) {
      this.setState("offline");
      return; // the "online" event reconnects
    }
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const wait = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: reconnecting clients spread out
    this.attempt += 1;
    this.setState("reconnecting", { inMs: Math.round(wait) });
    this.timers.reconnect = setTimeout(() => this.connect(), wait);
  }

  reconnectNow() {
    if (this.ws || this.stopped) return;
    this.attempt = 0;
    this.connect();
  }

  schedulePing() {
    clearTimeout(this.timers.ping);
    this.timers.ping = setTimeout(() => {
      if (!this.ws) return;
      if (Date.now() - this.lastFrameAt > SILENCE_LIMIT_MS) {
        this.ws.close(); // half-open: the server may be gone without a FIN
        this.closed(this.ws, 1006, "silent");
        return;
      }
      this.sendRaw({ type: "ping" });
      this.schedulePing();
    }, PING_EVERY_MS);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timers.reconnect);
    clearTimeout(this.timers.ping);
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    this.auth.removeEventListener("token", this.onToken);
    for (const write of this.writes.values()) clearTimeout(write.timer);
    this.ws?.close(1000);
  }

  sendRaw(frame) {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  sendSubscribe(channelId, since) {
    this.sendRaw(since === null ? { type: "subscribe", channelId } : { type: "subscribe", channelId, since });
  }

  /** Receive a channel's entries after `since` (null: from now on). */
  subscribe(channelId, since = null) {
    this.since.set(channelId, since);
    this.sendSubscribe(channelId, since);
  }

  unsubscribe(channelId) {
    this.since.delete(channelId);
    this.sendRaw({ type: "unsubscribe", channelId });
  }

  /** A write (send, edit, delete, react, unreact): resolves with its ack, kept until then. */
  write(frame) {
    const nonce = frame.nonce ?? newNonce();
    const full = { ...frame, nonce };
    return new Promise((resolve, reject) => {
      this.writes.set(nonce, { frame: full, resolve, reject, timer: null });
      this.sendRaw(full); // not connected: sent on (re)connect
    });
  }

  receive(frame) {
    this.lastFrameAt = Date.now();
    const type = frame.type;
    if (type === "ack") {
      const write = this.writes.get(frame.nonce);
      if (write) {
        this.writes.delete(frame.nonce);
        write.resolve(frame);
      }
      return;
    }
    if (type === "error") {
      const write = frame.ref ? this.writes.get(frame.ref) : null;
      if (write && frame.code === "rate_limited") {
        const wait = frame.retryAfterMs ?? 1000;
        this.dispatchEvent(new CustomEvent("ratelimited", { detail: { retryAfterMs: wait } }));
        clearTimeout(write.timer);
        write.timer = setTimeout(() => this.sendRaw(write.frame), wait);
        return;
      }
      if (write) {
        this.writes.delete(frame.ref);
        write.reject(Object.assign(new Error(frame.message), { code: frame.code }));
        return;
      }
    }
    if (frame.feedId !== undefined) this.feedSince = Math.max(this.feedSince ?? 0, frame.feedId);
    const id = entryId(frame);
    if (id !== null && frame.channelId && this.since.has(frame.channelId)) {
      this.since.set(frame.channelId, Math.max(this.since.get(frame.channelId) ?? 0, id));
    }
    if (type === "resync_required" && this.since.has(frame.channelId)) this.since.set(frame.channelId, null);
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  /** A channel's position from a history page: resume from there after a reconnect. */
  advance(channelId, position) {
    if (this.since.has(channelId)) this.since.set(channelId, Math.max(this.since.get(channelId) ?? 0, position));
  }
}

/** The position of a channel frame in its channel's log (a message's id, a change's own id). */
export function entryId(frame) {
  if (frame.type === "message") return frame.payload.messageId;
  if (frame.type === "thread_updated") return null; // shares the id of the reply's message/deletion
  return typeof frame.id === "number" ? frame.id : null;
}
