// One workspace open in the client: its lists (channels, DMs, people, unread counts), its socket,
// and the timeline of every channel the user is in. Rendering of the message column lives in
// messages.js, the sidebar in sidebar.js.
import { ChatSocket } from "./socket.js";
import { Timeline } from "./timeline.js";
import { MessageColumn } from "./messages.js";
import { Sidebar } from "./sidebar.js";
import { $ } from "./view.js";

const TYPING_SHOWN_MS = 5000;
const TYPING_SEND_EVERY_MS = 3000;

export class Workspace {
  constructor({ auth, api, workspace, onSwitch }) {
    this.auth = auth;
    this.api = api;
    this.workspace = workspace; // {id, name, role}
    this.onSwitch = onSwitch;
    this.me = null;
    this.members = new Map(); // userId -> {id, displayName, role}
    this.channels = new Map(); // id -> channel (public + the caller's private ones)
    this.dms = new Map(); // id -> {id, memberIds, lastMessage}
    this.unreads = new Map(); // channelId -> {unread, mentions, lastReadId, capped} (member channels only)
    this.presence = new Map(); // userId -> {status, presence, text}
    this.timelines = new Map();
    this.typing = new Map(); // channelId -> Map(userId -> {name, until})
    this.current = null;
    this.lastTypingSent = 0;
    this.membersReload = null;
    this.socket = new ChatSocket({ auth, tenant: workspace.id });
    this.sidebar = new Sidebar(this);
    this.column = new MessageColumn(this);
  }

  async start() {
    this.api.tenant = this.workspace.id;
    $("workspace-switch").textContent = this.workspace.name;
    $("workspace-id").textContent = this.workspace.id;
    this.me = await this.api.get("/users/me");
    $("me-name").textContent = this.me.displayName;
    await this.loadLists();
    this.socket.addEventListener("frame", (event) => this.onFrame(event.detail));
    this.socket.addEventListener("state", (event) => this.onState(event.detail));
    this.socket.addEventListener("ratelimited", (event) => {
      this.column.notice(`Sending too fast: trying again in ${(event.detail.retryAfterMs / 1000).toFixed(1)} s`, 4000);
    });
    this.socket.addEventListener("denied", (event) => this.column.notice(`Disconnected: ${event.detail.reason || "not allowed"}`));
    this.socket.addEventListener("unauthenticated", () => this.column.notice("Your session ended: sign in again."));
    for (const id of this.memberChannelIds()) this.follow(id);
    this.socket.connect();
    this.sidebar.render();
    const last = localStorage.getItem(`echonats.channel.${this.workspace.id}`);
    const first = (last && this.isVisible(last) ? last : null) ?? this.sidebar.firstChannelId();
    if (first) await this.open(first);
    else this.column.empty();
  }

  stop() {
    this.socket.stop();
    this.column.reset();
  }

  async loadLists() {
    const [channels, dms, unreads, members] = await Promise.all([
      this.api.get("/channels"),
      this.api.get("/dms"),
      this.api.get("/unreads"),
      this.loadMembers(),
    ]);
    this.channels = new Map(channels.items.map((c) => [c.id, c]));
    this.dms = new Map(dms.items.map((d) => [d.id, d]));
    this.unreads = new Map(unreads.items.map((u) => [u.channelId, u]));
    this.members = members;
  }

  async loadMembers() {
    const members = new Map();
    let after = null;
    for (let page = 0; page < 20; page += 1) { // the first 2,000 members name the people list
      const query = after ? `?limit=100&after=${encodeURIComponent(after)}` : "?limit=100";
      const result = await this.api.get(`/members${query}`);
      for (const m of result.items) members.set(m.id, m);
      if (!result.nextCursor) break;
      after = result.nextCursor;
    }
    return members;
  }

  memberChannelIds() { return [...this.unreads.keys()]; }
  isMember(channelId) { return this.unreads.has(channelId); }
  isVisible(channelId) { return this.channels.has(channelId) || this.dms.has(channelId); }
  nameOf = (userId) => this.members.get(userId)?.displayName ?? userId;
  get canModerate() { return this.workspace.role === "owner" || this.workspace.role === "admin"; }

  dmName(dm) {
    const others = dm.memberIds.filter((id) => id !== this.me.id);
    return others.length ? others.map(this.nameOf).join(", ") : `${this.me.displayName} (you)`;
  }

  channelLabel(channelId) {
    const channel = this.channels.get(channelId);
    if (channel) return `${channel.isPrivate ? "🔒" : "#"} ${channel.name}`;
    const dm = this.dms.get(channelId);
    return dm ? this.dmName(dm) : "";
  }

  /** Subscribe to a channel's entries (live from now on; its timeline buffers until opened). */
  follow(channelId, since = null) {
    if (!this.timelines.has(channelId)) this.timelines.set(channelId, new Timeline(channelId, this.me.id));
    if (!this.socket.since.has(channelId)) this.socket.subscribe(channelId, since);
  }

  unfollow(channelId) {
    this.socket.unsubscribe(channelId);
    this.timelines.delete(channelId);
  }

  async open(channelId) {
    this.current = channelId;
    localStorage.setItem(`echonats.channel.${this.workspace.id}`, channelId);
    this.sidebar.render();
    this.sidebar.closeDrawer();
    if (!this.timelines.has(channelId)) this.timelines.set(channelId, new Timeline(channelId, this.me.id));
    const timeline = this.timelines.get(channelId);
    this.column.show(channelId);
    if (!timeline.ready) {
      const page = await this.api.get(`/channels/${channelId}/messages?limit=50`);
      if (this.current !== channelId || this.timelines.get(channelId) !== timeline) return;
      timeline.start(page);
      if (this.socket.since.has(channelId)) this.socket.advance(channelId, page.position);
      else this.socket.subscribe(channelId, page.position); // not a member (a public channel): read along
    }
    this.column.renderAll(timeline);
    this.markRead();
  }

  /** The open channel is read up to its newest message (if the user is a member and looking). */
  markRead() {
    const channelId = this.current;
    const state = this.unreads.get(channelId);
    const timeline = this.timelines.get(channelId);
    if (!state || !timeline?.ready || document.visibilityState !== "visible") return;
    const newest = timeline.newestListed();
    if (!newest || newest.id <= state.lastReadId) {
      if (state.unread || state.mentions) { state.unread = 0; state.mentions = 0; this.sidebar.render(); }
      return;
    }
    state.lastReadId = newest.id;
    state.unread = 0;
    state.mentions = 0;
    this.socket.sendRaw({ type: "read", channelId, messageId: newest.id });
    this.sidebar.render();
  }

  onState({ state, inMs }) {
    const label = state === "reconnecting" ? `reconnecting${inMs ? ` in ${(inMs / 1000).toFixed(1)} s` : ""}` : state;
    const pill = $("connection");
    pill.dataset.state = state;
    pill.textContent = label;
    if (state === "connected") this.column.clearNotice();
  }

  onFrame(frame) {
    switch (frame.type) {
      case "message":
      case "message_updated":
      case "message_deleted":
      case "reaction_added":
      case "reaction_removed":
      case "pin_added":
      case "pin_removed":
      case "thread_updated":
        return this.onEntry(frame);
      case "typing_indicator":
        return this.onTyping(frame);
      case "presence":
        this.setPresence(frame.userId, { status: frame.payload.status });
        this.learnMember(frame.userId);
        return this.sidebar.renderPeople();
      case "presence_snapshot":
        for (const u of frame.users) this.setPresence(u.userId, u);
        return this.sidebar.renderPeople();
      case "user_status":
        this.setPresence(frame.userId, { presence: frame.presence, text: frame.text, expiresAt: frame.expiresAt });
        return this.sidebar.renderPeople();
      case "resync_required":
        return this.resync(frame.channelId);
      case "unsubscribed":
        return this.onRevoked(frame.channelId);
      case "error":
        return this.column.notice(frame.message, 6000);
      default:
        return this.onFeed(frame);
    }
  }

  onEntry(frame) {
    const timeline = this.timelines.get(frame.channelId);
    if (!timeline) return;
    const change = timeline.apply(frame);
    if (frame.type === "message") {
      this.clearTyping(frame.channelId, frame.userId);
      this.learnMember(frame.userId);
    }
    if (frame.channelId === this.current) this.column.onChange(timeline, change, frame);
    else if (change.kind === "new" || (!timeline.ready && frame.type === "message" && !frame.payload.threadId)) {
      const state = this.unreads.get(frame.channelId);
      if (state && frame.userId !== this.me.id) {
        state.unread += 1;
        this.sidebar.render();
      }
    }
    if (frame.channelId === this.current && change.kind === "new") this.markRead();
    if (this.dms.has(frame.channelId) && frame.type === "message") this.sidebar.bumpDm(frame.channelId);
  }

  onFeed(frame) {
    switch (frame.type) {
      case "channel_created":
      case "channel_updated":
        this.channels.set(frame.channel.id, { ...this.channels.get(frame.channel.id), ...frame.channel });
        if (frame.type === "channel_created" && frame.channel.createdBy === this.me.id) this.joined(frame.channel.id);
        if (frame.channel.id === this.current) this.column.renderHead();
        break;
      case "channel_deleted":
        this.channels.delete(frame.channelId);
        this.unreads.delete(frame.channelId);
        this.unfollow(frame.channelId);
        if (this.current === frame.channelId) this.leaveCurrent("This channel was deleted.");
        break;
      case "channel_joined":
        if (frame.channel) this.channels.set(frame.channel.id, frame.channel);
        this.joined(frame.channelId);
        break;
      case "channel_left":
        this.unreads.delete(frame.channelId);
        if (this.channels.get(frame.channelId)?.isPrivate) this.onRevoked(frame.channelId);
        if (frame.channelId === this.current) this.column.renderHead();
        break;
      case "dm_opened":
        if (!this.dms.has(frame.channelId)) this.dms.set(frame.channelId, { id: frame.channelId, memberIds: frame.memberIds, lastMessage: null });
        this.joined(frame.channelId);
        break;
      case "read_state": {
        const state = this.unreads.get(frame.channelId);
        if (state && frame.lastReadId >= state.lastReadId) {
          Object.assign(state, { lastReadId: frame.lastReadId, unread: 0, mentions: 0 });
        }
        break;
      }
      case "mention": {
        const state = this.unreads.get(frame.channelId);
        if (state && !(frame.channelId === this.current && document.visibilityState === "visible")) state.mentions += 1;
        break;
      }
      case "feed_resync_required":
        this.loadLists().then(() => {
          for (const id of this.memberChannelIds()) this.follow(id);
          this.sidebar.render();
        });
        return;
      default:
        return;
    }
    this.sidebar.render();
  }

  joined(channelId) {
    if (!this.unreads.has(channelId)) this.unreads.set(channelId, { channelId, unread: 0, mentions: 0, lastReadId: 0, capped: false });
    this.follow(channelId);
    if (channelId === this.current) this.column.renderHead();
  }

  onRevoked(channelId) {
    // A private channel (or DM) the user lost: gone from view.
    const channel = this.channels.get(channelId);
    if (channel && !channel.isPrivate) return;
    this.channels.delete(channelId);
    this.unreads.delete(channelId);
    this.timelines.delete(channelId);
    this.socket.since.delete(channelId);
    if (this.current === channelId) this.leaveCurrent("You are no longer in this channel.");
    this.sidebar.render();
  }

  leaveCurrent(why) {
    this.current = null;
    this.column.empty();
    this.column.notice(why, 6000);
    const next = this.sidebar.firstChannelId();
    if (next) this.open(next);
  }

  async resync(channelId) {
    // The log no longer holds what this channel missed: start again from its latest page.
    this.timelines.set(channelId, new Timeline(channelId, this.me.id));
    this.socket.since.delete(channelId);
    if (channelId === this.current) await this.open(channelId);
    else this.follow(channelId);
  }

  /** Someone not in the people list yet (they joined after it was read): read it again, once. */
  learnMember(userId) {
    if (this.members.has(userId) || this.membersReload) return;
    this.membersReload = setTimeout(async () => {
      try {
        this.members = await this.loadMembers();
        this.sidebar.render();
      } finally {
        this.membersReload = null;
      }
    }, 300);
  }

  setPresence(userId, fields) {
    this.presence.set(userId, { ...this.presence.get(userId), ...fields });
    if (userId === this.me?.id) {
      const dot = $("me-dot");
      const entry = this.presence.get(userId);
      dot.dataset.status = entry.status ?? "online";
      if (entry.presence) dot.dataset.presence = entry.presence;
      else delete dot.dataset.presence;
    }
  }

  onTyping(frame) {
    if (frame.userId === this.me.id) return;
    const byUser = this.typing.get(frame.channelId) ?? new Map();
    this.typing.set(frame.channelId, byUser);
    byUser.set(frame.userId, { name: frame.payload.displayName, until: Date.now() + TYPING_SHOWN_MS });
    this.renderTyping();
    setTimeout(() => this.renderTyping(), TYPING_SHOWN_MS + 50);
  }

  clearTyping(channelId, userId) {
    this.typing.get(channelId)?.delete(userId);
    if (channelId === this.current) this.renderTyping();
  }

  renderTyping() {
    const now = Date.now();
    const names = [...(this.typing.get(this.current)?.values() ?? [])].filter((t) => t.until > now).map((t) => t.name);
    $("typing").textContent = names.length === 0 ? ""
      : names.length === 1 ? `${names[0]} is typing…`
      : `${names.slice(0, 3).join(", ")} are typing…`;
  }

  typed(channelId) {
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_SEND_EVERY_MS) return;
    this.lastTypingSent = now;
    this.socket.sendRaw({ type: "typing", channelId });
  }
}
