// The message column: the open channel's history (a window of it in the DOM, older pages load as
// you scroll up), live entries, the composer (Enter sends, Shift+Enter breaks the line, Up edits your last message),
// message actions, and the side panel for a thread or the channel's pins.
import { ask, choices, confirmAction } from "./dialogs.js";
import { newNonce } from "./socket.js";
import { MessageWindow } from "./message_window.js";
import { $, QUICK_REACTIONS, autoGrow, el, messageNode, pendingNode } from "./view.js";

const OLDER_PAGE = 100;
const EDGE_PX = 1200; // this close to an edge of the rendered messages, render (or load) more
const AT_BOTTOM_PX = 80;

export class MessageColumn {
  constructor(ws) {
    this.ws = ws;
    this.window = new MessageWindow(() => this.ctx);
    this.pending = new Map(); // nonce -> {node, messageId}
    this.loadingOlder = false;
    this.thread = null; // root id of the open thread
    this.noticeTimer = null;
    const list = $("messages");
    list.onscroll = () => this.scrolled();
    $("jump-latest").onclick = () => this.jumpToLatest();
    const input = $("composer-input");
    $("composer").onsubmit = (event) => { event.preventDefault(); this.send(input); };
    input.onkeydown = (event) => this.composerKey(event, input, () => this.send(input));
    input.oninput = () => { autoGrow(input); if (input.value && ws.current) ws.typed(ws.current); };
    const reply = $("reply-input");
    $("reply-composer").onsubmit = (event) => { event.preventDefault(); this.send(reply, this.thread); };
    reply.onkeydown = (event) => this.composerKey(event, reply, () => this.send(reply, this.thread));
    reply.oninput = () => autoGrow(reply);
    $("side-close").onclick = () => this.closePanel();
    $("pins-toggle").onclick = () => this.showPins();
    $("channel-join").onclick = () => this.join();
    $("channel-invite").onclick = () => this.invite();
    // Assigned, not added: a workspace switch builds a new column and these follow it.
    document.onkeydown = (event) => { if (event.key === "Escape" && !$("dialog").open) this.closePanel(); };
    document.onvisibilitychange = () => ws.markRead();
  }

  get ctx() {
    const ws = this.ws;
    return {
      me: ws.me.id,
      nameOf: ws.nameOf,
      canModerate: ws.canModerate,
      onEdit: (m) => this.edit(m),
      onDelete: (m) => this.remove(m),
      onReact: (m, emoji, add) => this.react(m, emoji, add),
      onPickReaction: (m) => this.pickReaction(m),
      onPin: (m, pin) => this.pin(m, pin),
      onThread: (m) => this.openThread(m.id),
    };
  }

  reset() {
    this.pending.clear();
    this.window.clear();
    $("jump-latest").hidden = true;
    this.closePanel();
  }

  empty() {
    this.reset();
    $("channel-title").textContent = "No channel yet";
    $("channel-topic").textContent = "Create one with + or browse with #.";
    $("composer").hidden = true;
    for (const id of ["channel-join", "channel-invite", "pins-toggle"]) $(id).hidden = true;
  }

  show(channelId) {
    this.reset();
    $("history-status").textContent = "Loading…";
    this.renderHead();
    $("composer").hidden = false;
    $("composer-input").placeholder = `Message ${this.ws.channelLabel(channelId)}`;
    this.ws.renderTyping();
  }

  renderHead() {
    const ws = this.ws;
    const id = ws.current;
    if (!id) return;
    const channel = ws.channels.get(id);
    $("channel-title").textContent = ws.channelLabel(id);
    $("channel-topic").textContent = channel?.topic ?? "";
    $("channel-join").hidden = !channel || channel.isPrivate || ws.isMember(id);
    $("channel-invite").hidden = !channel || !ws.isMember(id);
    $("pins-toggle").hidden = false;
  }

  get timeline() {
    return this.ws.timelines.get(this.ws.current);
  }

  renderAll(timeline) {
    this.window.showEnd(timeline);
    $("jump-latest").hidden = true;
    this.historyStatus(timeline);
    const scroller = $("messages");
    scroller.scrollTop = scroller.scrollHeight;
    if (timeline.listed.length && !window.__echonatsFirstRender) {
      window.__echonatsFirstRender = performance.now(); // read by the render benchmark
    }
  }

  jumpToLatest() {
    const timeline = this.timeline;
    if (timeline?.ready) this.renderAll(timeline);
  }

  historyStatus(timeline) {
    const atStart = this.window.atStart(timeline);
    $("history-status").textContent = !atStart || timeline.hasMore ? ""
      : timeline.listed.length ? "This is the beginning of the channel." : "No messages yet: say hello.";
  }

  scrolled() {
    const timeline = this.timeline;
    if (!timeline?.ready) return;
    const scroller = $("messages");
    const below = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
    if (scroller.scrollTop < EDGE_PX) {
      if (this.window.extendUp(timeline)) this.historyStatus(timeline);
      else this.loadOlder();
    } else if (below < EDGE_PX && this.window.extendDown(timeline)) {
      this.historyStatus(timeline);
    }
    if (below < AT_BOTTOM_PX && this.window.atEnd(timeline)) $("jump-latest").hidden = true;
  }

  async loadOlder() {
    const ws = this.ws;
    const channelId = ws.current;
    const timeline = ws.timelines.get(channelId);
    if (this.loadingOlder || !timeline?.ready || !timeline.hasMore || timeline.oldestCursor === null) return;
    this.loadingOlder = true;
    $("history-status").textContent = "Loading older messages…";
    try {
      const page = await ws.api.get(`/channels/${channelId}/messages?before=${timeline.oldestCursor}&limit=${OLDER_PAGE}`);
      if (ws.current !== channelId || ws.timelines.get(channelId) !== timeline) return;
      timeline.addOlder(page);
      this.window.extendUp(timeline);
      this.historyStatus(timeline);
    } catch (error) {
      $("history-status").textContent = `Could not load older messages: ${error.message}`;
    } finally {
      this.loadingOlder = false;
    }
  }

  onChange(timeline, change, frame) {
    if (change.kind === "none") return;
    const message = change.message;
    if (change.kind === "new") {
      const scroller = $("messages");
      const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < AT_BOTTOM_PX;
      this.settlePending(message.id);
      if (this.window.append(timeline, message, atBottom)) {
        if (atBottom || message.senderId === this.ws.me.id) scroller.scrollTop = scroller.scrollHeight;
      } else {
        $("jump-latest").hidden = false; // the reader is far up in the history
      }
      if (timeline.listed.length === 1) this.historyStatus(timeline);
    } else if (change.kind === "update") {
      this.window.replace(message);
    } else if (change.kind === "reply") {
      this.settlePending(message.id);
    }
    if (this.thread !== null && (message.id === this.thread || message.threadId === this.thread || frame.threadId === this.thread)) {
      this.renderThread(timeline);
    }
  }

  composerKey(event, input, submit) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === "ArrowUp" && !input.value && input.id === "composer-input") {
      const timeline = this.ws.timelines.get(this.ws.current);
      const mine = [...(timeline?.listed ?? [])].reverse().map((id) => timeline.messages.get(id))
        .find((m) => m.senderId === this.ws.me.id && !m.deleted);
      if (mine) { event.preventDefault(); this.edit(mine); }
    }
  }

  send(input, threadId = null) {
    const body = input.value.trim();
    const ws = this.ws;
    const channelId = ws.current;
    if (!body || !channelId) return;
    input.value = "";
    autoGrow(input);
    const nonce = newNonce();
    const frame = { type: "send", channelId, body, nonce };
    if (threadId !== null) frame.threadId = threadId;
    const node = pendingNode(nonce, body, ws.me.displayName, ws.me.id);
    const entry = { node, messageId: null };
    this.pending.set(nonce, entry);
    const timeline = ws.timelines.get(channelId);
    if (threadId === null && timeline?.ready && !this.window.atEnd(timeline)) this.jumpToLatest();
    (threadId === null ? $("message-list") : $("side-list")).append(node);
    $(threadId === null ? "messages" : "side-body").scrollTop = 1e9;
    ws.socket.write(frame).then((ack) => {
      entry.messageId = ack.messageId;
      if (ws.timelines.get(channelId)?.messages.has(ack.messageId)) this.settlePending(ack.messageId);
    }, (error) => {
      node.classList.add("failed");
      node.querySelector(".muted").textContent = `not sent: ${error.message}`;
      this.pending.delete(nonce);
    });
  }

  /** The stored message arrived: its "sending…" placeholder goes. */
  settlePending(messageId) {
    for (const [nonce, entry] of this.pending) {
      if (entry.messageId === messageId) {
        entry.node.remove();
        this.pending.delete(nonce);
      }
    }
  }

  async write(frame) {
    try {
      await this.ws.socket.write(frame);
    } catch (error) {
      this.notice(error.message, 5000);
    }
  }

  edit(message) {
    const node = this.window.nodes.get(message.id) ?? $("side-list").querySelector(`[data-id="${message.id}"]`);
    if (!node) return;
    const body = node.querySelector(".body");
    const input = el("textarea", { "aria-label": "Edit message", maxlength: "4000" });
    input.value = message.body;
    const form = el("form", { class: "edit-form" }, input,
      el("div", { class: "row" },
        el("button", { class: "primary small", type: "submit", text: "Save" }),
        el("button", { class: "secondary small", type: "button", text: "Cancel", onclick: () => form.replaceWith(body) })));
    form.onsubmit = (event) => {
      event.preventDefault();
      const text = input.value.trim();
      form.replaceWith(body);
      if (text && text !== message.body) this.write({ type: "edit", channelId: message.channelId, messageId: message.id, body: text });
    };
    input.onkeydown = (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
      if (event.key === "Escape") { event.stopPropagation(); form.replaceWith(body); }
    };
    body.replaceWith(form);
    autoGrow(input);
    input.focus();
  }

  async remove(message) {
    if (await confirmAction("Delete message", "Delete this message for everyone? It stays as a tombstone.", "Delete")) {
      await this.write({ type: "delete", channelId: message.channelId, messageId: message.id });
    }
  }

  react(message, emoji, add) {
    return this.write({ type: add ? "react" : "unreact", channelId: message.channelId, messageId: message.id, emoji });
  }

  async pickReaction(message) {
    const emoji = await ask({
      title: "Add a reaction",
      ok: "React",
      build: (body) => {
        const list = choices(QUICK_REACTIONS.map((e) => ({ value: e, label: e })), { single: true, name: "emoji" });
        body.append(list.node);
        return () => {
          const [picked] = list.selected();
          if (!picked) throw new Error("Pick one.");
          return picked;
        };
      },
    });
    if (emoji) await this.react(message, emoji, true);
  }

  async pin(message, pin) {
    const path = `/channels/${message.channelId}/messages/${message.id}/pin`;
    try {
      await (pin ? this.ws.api.put(path) : this.ws.api.delete(path));
    } catch (error) {
      this.notice(error.message, 5000);
    }
  }

  async join() {
    const ws = this.ws;
    try {
      await ws.api.post(`/channels/${ws.current}/join`);
      ws.joined(ws.current);
      ws.sidebar.render();
    } catch (error) {
      this.notice(error.message, 5000);
    }
  }

  async invite() {
    const ws = this.ws;
    const channelId = ws.current;
    const inChannel = new Set((await ws.api.get(`/channels/${channelId}/members`)).items.map((m) => m.userId));
    const candidates = [...ws.members.values()].filter((m) => !inChannel.has(m.id));
    await ask({
      title: `Add people to ${ws.channelLabel(channelId)}`,
      ok: "Add",
      build: (body) => {
        if (!candidates.length) body.append(el("p", { class: "muted", text: "Everyone is in this channel already." }));
        const list = choices(candidates.map((m) => ({ value: m.id, label: m.displayName })));
        body.append(list.node);
        return () => list.selected();
      },
      submit: async (userIds) => {
        for (const userId of userIds) await ws.api.post(`/channels/${channelId}/members`, { userId });
        return userIds;
      },
    });
  }

  async openThread(rootId) {
    const ws = this.ws;
    const channelId = ws.current;
    const timeline = ws.timelines.get(channelId);
    this.thread = rootId;
    $("side-title").textContent = "Thread";
    $("side-panel").hidden = false;
    $("reply-composer").hidden = false;
    $("pins-toggle").setAttribute("aria-expanded", "false");
    $("side-list").replaceChildren(el("li", { class: "muted history-status", text: "Loading…" }));
    const page = await ws.api.get(`/channels/${channelId}/messages/${rootId}/thread?limit=100`);
    if (this.thread !== rootId || ws.timelines.get(channelId) !== timeline) return;
    timeline.addThread(page);
    this.renderThread(timeline);
    $("reply-input").focus();
  }

  renderThread(timeline) {
    const root = timeline.messages.get(this.thread);
    if (!root) return;
    const ctx = { ...this.ctx, inThread: true };
    const replies = timeline.replies(root.id).map((m) => messageNode(m, ctx));
    const pendings = [...this.pending.values()].map((p) => p.node).filter((n) => n.parentElement?.id === "side-list");
    $("side-list").replaceChildren(messageNode(root, ctx),
      el("li", { class: "muted history-status", text: `${root.replyCount} ${root.replyCount === 1 ? "reply" : "replies"}` }),
      ...replies, ...pendings);
  }

  async showPins() {
    const ws = this.ws;
    this.thread = null;
    $("side-title").textContent = "Pinned messages";
    $("side-panel").hidden = false;
    $("reply-composer").hidden = true;
    $("pins-toggle").setAttribute("aria-expanded", "true");
    const pins = await ws.api.get(`/channels/${ws.current}/pins`);
    const ctx = { ...this.ctx, inThread: true };
    $("side-list").replaceChildren(...(pins.items.length ? pins.items.map((m) => messageNode(m, ctx))
      : [el("li", { class: "muted history-status", text: "Nothing pinned yet." })]));
  }

  closePanel() {
    this.thread = null;
    $("side-panel").hidden = true;
    $("pins-toggle").setAttribute("aria-expanded", "false");
  }

  notice(text, hideAfterMs = 0) {
    const box = $("notice");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(this.noticeTimer);
    if (hideAfterMs) this.noticeTimer = setTimeout(() => this.clearNotice(), hideAfterMs);
  }

  clearNotice() {
    $("notice").hidden = true;
  }
}
