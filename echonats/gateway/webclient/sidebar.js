// The sidebar: channels the user is in, DMs (newest first), people with presence, and the
// dialogs that change them (create, browse and join, new DM, own status).
import { ask, checkbox, choices, field } from "./dialogs.js";
import { $, el, presenceDot, presenceLabel } from "./view.js";

export class Sidebar {
  constructor(ws) {
    this.ws = ws;
    this.dmOrder = []; // DM ids, most recent activity first
    $("channel-new").onclick = () => this.createChannel();
    $("channel-browse").onclick = () => this.browse();
    $("dm-new").onclick = () => this.newDm();
    $("status-button").onclick = () => this.setStatus();
    $("workspace-switch").onclick = () => ws.onSwitch();
    $("menu-toggle").onclick = () => this.toggleDrawer();
  }

  toggleDrawer(open = !$("app").classList.contains("drawer-open")) {
    $("app").classList.toggle("drawer-open", open);
    $("menu-toggle").setAttribute("aria-expanded", String(open));
  }

  closeDrawer() { this.toggleDrawer(false); }

  channelIds() {
    return [...this.ws.channels.values()]
      .filter((c) => this.ws.isMember(c.id))
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((c) => c.id);
  }

  dmIds() {
    const known = new Set(this.dmOrder);
    const rest = [...this.ws.dms.values()]
      .filter((d) => !known.has(d.id))
      .sort((a, b) => (b.lastMessage?.id ?? 0) - (a.lastMessage?.id ?? 0))
      .map((d) => d.id);
    this.dmOrder = [...this.dmOrder.filter((id) => this.ws.dms.has(id)), ...rest];
    return this.dmOrder;
  }

  firstChannelId() { return this.channelIds()[0] ?? this.dmIds()[0] ?? null; }

  bumpDm(channelId) {
    this.dmOrder = [channelId, ...this.dmOrder.filter((id) => id !== channelId)];
    this.render();
  }

  render() {
    $("channel-list").replaceChildren(...this.channelIds().map((id) => this.item(id)));
    $("dm-list").replaceChildren(...this.dmIds().map((id) => this.item(id, true)));
    this.renderPeople();
    const total = [...this.ws.unreads.values()].reduce((n, u) => n + (u.mentions || 0), 0);
    document.title = total ? `(${total}) echonats` : "echonats";
  }

  item(channelId, isDm = false) {
    const ws = this.ws;
    const state = ws.unreads.get(channelId);
    const unread = state?.unread ?? 0;
    const mentions = state?.mentions ?? 0;
    const label = isDm ? ws.dmName(ws.dms.get(channelId)) : ws.channelLabel(channelId);
    const other = isDm ? ws.dms.get(channelId).memberIds.find((id) => id !== ws.me.id) : null;
    const count = state?.capped ? "1000+" : String(unread);
    const description = `${label}${mentions ? `, ${mentions} mentions` : ""}${unread ? `, ${count} unread` : ""}`;
    return el("li", {},
      el("button", {
        type: "button",
        class: unread || mentions ? "unread" : null,
        "aria-current": channelId === ws.current ? "true" : "false",
        "aria-label": description,
        dataset: { channel: channelId },
        onclick: () => ws.open(channelId),
      },
      isDm && other ? presenceDot(ws.presence.get(other)) : null,
      el("span", { class: "name", text: label }),
      mentions ? el("span", { class: "badge", text: String(mentions), "aria-hidden": "true" }) : null,
      unread && !mentions ? el("span", { class: "badge count", text: count, "aria-hidden": "true" }) : null),
    );
  }

  renderPeople() {
    const ws = this.ws;
    const rank = (id) => {
      const status = ws.presence.get(id)?.status;
      return status === "online" ? 0 : status === "idle" ? 1 : 2;
    };
    const people = [...ws.members.values()].sort((a, b) => rank(a.id) - rank(b.id) || a.displayName.localeCompare(b.displayName));
    $("people-list").replaceChildren(...people.slice(0, 200).map((member) => {
      const entry = ws.presence.get(member.id);
      return el("li", { dataset: { user: member.id, status: entry?.status ?? "offline" }, title: presenceLabel(entry) },
        presenceDot(entry),
        el("span", { text: member.id === ws.me.id ? `${member.displayName} (you)` : member.displayName }),
        el("span", { class: "visually-hidden", text: `, ${presenceLabel(entry)}` }),
        entry?.text ? el("span", { class: "status-text", text: `— ${entry.text}` }) : null);
    }));
    for (const button of $("dm-list").querySelectorAll("button[data-channel]")) {
      const dm = ws.dms.get(button.dataset.channel);
      const other = dm?.memberIds.find((id) => id !== ws.me.id);
      const dot = button.querySelector(".dot");
      if (dot && other) dot.replaceWith(presenceDot(ws.presence.get(other)));
    }
  }

  async createChannel() {
    const ws = this.ws;
    const created = await ask({
      title: "Create a channel",
      ok: "Create",
      build: (body) => {
        const name = field("Name", { required: true, maxlength: 80, placeholder: "design" });
        const topic = field("Topic (optional)", { maxlength: 250 });
        const isPrivate = checkbox("Private: only people you add can see it");
        body.append(...name.nodes, ...topic.nodes, isPrivate.node);
        return () => ({ name: name.input.value.trim(), topic: topic.input.value.trim(), isPrivate: isPrivate.input.checked });
      },
      submit: (answer) => ws.api.post("/channels", answer),
    });
    if (!created) return;
    ws.channels.set(created.id, created);
    ws.joined(created.id);
    this.render();
    await ws.open(created.id);
  }

  async browse() {
    const ws = this.ws;
    const open = [...ws.channels.values()].filter((c) => !c.isPrivate && !ws.isMember(c.id));
    const picked = await ask({
      title: "Browse channels",
      ok: "Join",
      build: (body) => {
        if (!open.length) body.append(el("p", { class: "muted", text: "You are in every public channel." }));
        const list = choices(open.map((c) => ({ value: c.id, label: `# ${c.name}${c.topic ? ` — ${c.topic}` : ""}` })), { single: true, name: "browse" });
        body.append(list.node);
        return () => {
          const [id] = list.selected();
          if (!id) throw new Error("Pick a channel to join.");
          return id;
        };
      },
      submit: async (id) => { await ws.api.post(`/channels/${id}/join`); return id; },
    });
    if (!picked) return;
    ws.joined(picked);
    this.render();
    await ws.open(picked);
  }

  async newDm() {
    const ws = this.ws;
    const others = [...ws.members.values()].filter((m) => m.id !== ws.me.id);
    const dm = await ask({
      title: "New direct message",
      ok: "Open",
      build: (body) => {
        const list = choices(others.map((m) => ({ value: m.id, label: m.displayName })));
        body.append(el("p", { class: "muted", text: "Up to 8 people (besides you)." }), list.node);
        return () => {
          const userIds = list.selected();
          if (!userIds.length) throw new Error("Pick at least one person.");
          return userIds;
        };
      },
      submit: (userIds) => ws.api.post("/dms", { userIds }),
    });
    if (!dm) return;
    ws.dms.set(dm.id, dm);
    ws.joined(dm.id);
    this.bumpDm(dm.id);
    await ws.open(dm.id);
  }

  async setStatus() {
    const ws = this.ws;
    const current = ws.presence.get(ws.me.id) ?? {};
    const saved = await ask({
      title: "Your status",
      ok: "Save",
      build: (body) => {
        const list = choices([
          { value: "", label: "Automatic (online when connected)" },
          { value: "away", label: "Away" },
          { value: "dnd", label: "Do not disturb" },
        ], { single: true, name: "presence" });
        const text = field("Status text", { maxlength: 100, value: current.text ?? "", placeholder: "In a meeting" });
        body.append(list.node, ...text.nodes, el("p", {}, el("button", {
          type: "button", class: "link", text: "Sign out", onclick: () => ws.auth.logout(),
        })));
        const radios = list.node.querySelectorAll("input");
        for (const radio of radios) radio.checked = radio.value === (current.presence ?? "");
        return () => {
          const [presence] = list.selected();
          return { presence: presence || null, text: text.input.value.trim() };
        };
      },
      submit: (answer) => ws.api.put("/presence/me", answer),
    });
    if (saved) {
      ws.setPresence(ws.me.id, { presence: saved.presence, text: saved.text });
      this.renderPeople();
    }
  }
}
