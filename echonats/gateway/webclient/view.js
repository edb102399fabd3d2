// DOM builders. User text only ever goes through textContent (never innerHTML), so a message
// body or a display name cannot inject markup.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function timeOf(iso) {
  const date = new Date(iso);
  return el("time", { datetime: iso, title: dateFormat.format(date), text: timeFormat.format(date) });
}

function hue(text) {
  let hash = 0;
  for (const ch of text) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

export function avatar(userId, name) {
  const initial = ([...(name || userId || "?").trim()][0] || "?").toUpperCase();
  // hsl(h 55% 38%) keeps white text above 4.5:1 for every hue
  return el("span", { class: "avatar", "aria-hidden": "true", style: `background: hsl(${hue(userId)} 55% 38%)`, text: initial });
}

export const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "👀", "✅"];

/** A message body with <@userId> mentions (and @here, @channel) shown as chips. */
export function bodyNodes(body, nameOf) {
  const nodes = [];
  const pattern = /<@([^<>\s]{1,255})>|@here\b|@channel\b/g;
  let last = 0;
  for (const match of body.matchAll(pattern)) {
    if (match.index > last) nodes.push(document.createTextNode(body.slice(last, match.index)));
    const label = match[1] ? `@${nameOf(match[1])}` : match[0];
    nodes.push(el("span", { class: "mention-chip", text: label }));
    last = match.index + match[0].length;
  }
  if (last < body.length) nodes.push(document.createTextNode(body.slice(last)));
  return nodes;
}

export function mentionsMe(message, me) {
  return !message.deleted && (message.body.includes(`<@${me}>`) || /@(here|channel)\b/.test(message.body));
}

/**
 * One message. `ctx`: {me, nameOf, inThread, onEdit, onDelete, onReact, onPin, onThread}.
 */
export function messageNode(message, ctx) {
  const mine = message.senderId === ctx.me;
  const node = el("li", {
    class: `message${message.deleted ? " deleted" : ""}${mentionsMe(message, ctx.me) && !mine ? " mentioned" : ""}`,
    dataset: { id: String(message.id) },
    tabindex: "-1",
  });
  const name = message.senderDisplayName || ctx.nameOf(message.senderId);
  const meta = el("div", { class: "meta" },
    el("span", { class: "author", text: name }),
    timeOf(message.createdAt),
    message.editedAt && !message.deleted ? el("span", { class: "edited", text: "(edited)" }) : null,
    message.pinned ? el("span", { class: "pin-flag", text: "📌 pinned" }) : null,
  );
  const body = el("div", { class: "body" });
  if (message.deleted) body.textContent = "This message was deleted.";
  else body.append(...bodyNodes(message.body, ctx.nameOf));
  node.append(avatar(message.senderId, name), meta, body);

  if (!message.deleted && message.reactions?.length) {
    const list = el("div", { class: "reactions", role: "group", "aria-label": "Reactions" });
    for (const r of message.reactions) {
      list.append(el("button", {
        class: "reaction", type: "button", "aria-pressed": r.me ? "true" : "false",
        "aria-label": `${r.emoji} ${r.count}${r.me ? ", including you" : ""}`,
        text: `${r.emoji} ${r.count}`,
        onclick: () => ctx.onReact(message, r.emoji, !r.me),
      }));
    }
    node.append(list);
  }
  if (!ctx.inThread && message.threadId === null && message.replyCount > 0) {
    node.append(el("button", {
      class: "thread-link", type: "button",
      text: `${message.replyCount} ${message.replyCount === 1 ? "reply" : "replies"}`,
      onclick: () => ctx.onThread(message),
    }));
  }
  if (!message.deleted) node.append(actions(message, ctx, mine));
  return node;
}

function actions(message, ctx, mine) {
  const bar = el("div", { class: "actions", role: "toolbar", "aria-label": "Message actions" });
  const button = (label, text, onclick) => el("button", { type: "button", "aria-label": label, title: label, text, onclick });
  bar.append(button("React with 👍", "👍", () => ctx.onReact(message, "👍", !message.reactions?.some((r) => r.emoji === "👍" && r.me))));
  bar.append(button("Add a reaction", "☺", () => ctx.onPickReaction(message)));
  if (!ctx.inThread && message.threadId === null) bar.append(button("Reply in thread", "💬", () => ctx.onThread(message)));
  bar.append(button(message.pinned ? "Unpin" : "Pin", message.pinned ? "Unpin" : "Pin", () => ctx.onPin(message, !message.pinned)));
  if (mine) bar.append(button("Edit", "Edit", () => ctx.onEdit(message)));
  if (mine || ctx.canModerate) bar.append(button("Delete", "Delete", () => ctx.onDelete(message)));
  return bar;
}

export function pendingNode(nonce, body, name, me) {
  return el("li", { class: "message pending", dataset: { nonce } },
    avatar(me, name),
    el("div", { class: "meta" }, el("span", { class: "author", text: name }), el("span", { class: "muted", text: "sending…" })),
    el("div", { class: "body", text: body }),
  );
}

export function presenceDot(entry) {
  const attrs = { class: "dot", "aria-hidden": "true", dataset: { status: entry?.status ?? "offline" } };
  if (entry?.presence) attrs.dataset.presence = entry.presence;
  return el("span", attrs);
}

export function presenceLabel(entry) {
  if (!entry) return "offline";
  const manual = entry.presence === "dnd" ? "do not disturb" : entry.presence === "away" ? "away" : null;
  return manual ?? entry.status ?? "offline";
}

export function autoGrow(textarea) {
  textarea.style.height = "auto";
  textarea.style.height = `${Math.min(textarea.scrollHeight, 160)}px`;
}
