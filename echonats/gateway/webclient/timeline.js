// One channel's messages in their latest state: REST pages folded with the live frames.
//
// Every frame of a channel has a position in the channel's log (a message's id, a change's own id)
// and arrives once, in order. A history page says which position its state is at (`position`): the
// latest page starts the timeline there (frames at or below it are already in the page), and an
// older page gets the frames after its position that concern its messages replayed from a buffer
// of recent frames — so whatever the timing, every change is applied exactly once.

const BUFFER_LIMIT = 5000;

export class Timeline {
  constructor(channelId, me) {
    this.channelId = channelId;
    this.me = me;
    this.messages = new Map(); // id -> message (REST MessageOut shape), replies included
    this.listed = []; // ids shown in the channel, ascending: a contiguous stretch of its history
    this.listedIds = new Set();
    this.position = null; // null: no page yet (frames are only buffered)
    this.hasMore = true;
    this.oldestCursor = null;
    this.buffer = []; // recent frames, oldest first, for pages that arrive after them
    this.threadDeltas = new Set(); // ids of thread_updated frames applied (they share a message's id)
  }

  get ready() { return this.position !== null; }

  /** The latest page: the timeline starts at its position. Returns the buffered frames applied. */
  start(page) {
    this.position = page.position;
    this.threadDeltas.add(page.position); // a reply at the position is counted in its root already
    this.addPage(page);
    const after = this.buffer.filter((f) => frameId(f) > page.position);
    for (const frame of after) this.applyNow(frame);
    return after.length;
  }

  /** An older page (`before`): its messages, with the buffered frames after its position. */
  addOlder(page) {
    const added = this.addPage(page);
    this.replayFor(added, page.position);
    return added;
  }

  /** Applies the buffered frames after `position` that concern messages just added. */
  replayFor(added, position) {
    for (const frame of this.buffer) {
      if (frameId(frame) > position && added.has(targetOf(frame))) this.applyTo(frame);
    }
  }

  /**
   * A thread page: its root and replies. A root older than the loaded history is kept but not
   * listed yet (the list must stay a contiguous stretch of the channel); the older page that
   * reaches it lists it.
   */
  addThread(page) {
    const oldest = this.listed.length ? this.listed[0] : Infinity;
    const within = (item) => item.id >= oldest || !this.hasMore;
    const added = this.addItems([page.root, ...page.items], within);
    this.replayFor(added, page.position);
    return added;
  }

  addPage(page) {
    const added = this.addItems(page.items, () => true);
    this.hasMore = page.hasMore;
    if (page.nextCursor !== null && page.nextCursor !== undefined) this.oldestCursor = page.nextCursor;
    else if (!page.hasMore) this.oldestCursor = null;
    return added;
  }

  addItems(items, mayList) {
    const added = new Set();
    let grew = false;
    for (const item of items) {
      const known = this.messages.get(item.id);
      if (!known) {
        this.messages.set(item.id, item);
        added.add(item.id);
      }
      const message = known ?? item; // a known message's state is the newer one
      if (isListed(message) && !this.listedIds.has(message.id) && mayList(message)) {
        this.listed.push(message.id);
        this.listedIds.add(message.id);
        grew = true;
      }
    }
    if (grew) this.listed.sort((a, b) => a - b);
    return added;
  }

  /** A live frame. Returns what changed: {kind: "new"|"update"|"none", id}. */
  apply(frame) {
    this.buffer.push(frame);
    if (this.buffer.length > BUFFER_LIMIT) this.buffer.splice(0, this.buffer.length - BUFFER_LIMIT);
    if (!this.ready) return { kind: "none" };
    return this.applyNow(frame);
  }

  applyNow(frame) {
    const id = frameId(frame);
    if (frame.type === "thread_updated") {
      // It follows the reply's message (or deletion) and carries that entry's id.
      if (frame.id < this.position || this.threadDeltas.has(frame.id)) return { kind: "none" };
      this.threadDeltas.add(frame.id);
    } else if (id !== null) {
      if (id <= this.position) return { kind: "none" }; // already in the state (a resend of a replay)
      this.position = id;
    }
    return this.applyTo(frame);
  }

  applyTo(frame) {
    switch (frame.type) {
      case "message": {
        const message = messageOf(frame);
        if (this.messages.has(message.id)) return { kind: "none" };
        this.messages.set(message.id, message);
        if (isListed(message)) {
          this.listed.push(message.id); // ids rise in log order: appending keeps the order
          this.listedIds.add(message.id);
          return { kind: "new", id: message.id, message };
        }
        return { kind: "reply", id: message.id, message };
      }
      case "message_updated":
        return this.update(frame.messageId, (m) => { m.body = frame.body; m.editedAt = frame.editedAt; });
      case "message_deleted":
        return this.update(frame.messageId, (m) => {
          Object.assign(m, { deleted: true, body: "", reactions: [], pinned: false, editedAt: null });
        });
      case "reaction_added":
      case "reaction_removed":
        return this.update(frame.messageId, (m) => react(m, frame.emoji, frame.type === "reaction_added", frame.userId === this.me));
      case "pin_added":
      case "pin_removed":
        return this.update(frame.messageId, (m) => { m.pinned = frame.type === "pin_added"; });
      case "thread_updated":
        return this.update(frame.threadId, (m) => {
          m.replyCount = Math.max(0, (m.replyCount ?? 0) + frame.replyCountDelta);
          if (frame.lastReplyAt) m.lastReplyAt = frame.lastReplyAt;
        });
      default:
        return { kind: "none" };
    }
  }

  update(id, change) {
    const message = this.messages.get(id);
    if (!message) return { kind: "none" }; // not loaded: its page will carry its state
    change(message);
    return { kind: "update", id, message };
  }

  replies(rootId) {
    return [...this.messages.values()].filter((m) => m.threadId === rootId).sort((a, b) => a.id - b.id);
  }

  newestListed() {
    for (let i = this.listed.length - 1; i >= 0; i -= 1) {
      const message = this.messages.get(this.listed[i]);
      if (message && !message.deleted) return message;
    }
    return null;
  }
}

function react(message, emoji, added, mine) {
  const reactions = message.reactions ?? (message.reactions = []);
  let entry = reactions.find((r) => r.emoji === emoji);
  if (added) {
    if (!entry) {
      entry = { emoji, count: 0, me: false };
      reactions.push(entry);
      reactions.sort((a, b) => (a.emoji < b.emoji ? -1 : a.emoji > b.emoji ? 1 : 0)); // code point order, as REST
    }
    entry.count += 1;
    if (mine) entry.me = true;
  } else if (entry) {
    entry.count -= 1;
    if (mine) entry.me = false;
    if (entry.count <= 0) reactions.splice(reactions.indexOf(entry), 1);
  }
}

export function frameId(frame) {
  if (frame.type === "message") return frame.payload.messageId;
  return typeof frame.id === "number" ? frame.id : null;
}

function targetOf(frame) {
  if (frame.type === "message") return frame.payload.messageId;
  if (frame.type === "thread_updated") return frame.threadId;
  return frame.messageId;
}

function isListed(message) {
  return message.threadId === null || message.threadId === undefined || message.alsoToChannel;
}

export function messageOf(frame) {
  const p = frame.payload;
  return {
    id: p.messageId,
    channelId: frame.channelId,
    senderId: frame.userId,
    senderDisplayName: p.senderDisplayName,
    body: frame.body,
    createdAt: p.createdAt,
    nonce: p.nonce ?? null,
    threadId: p.threadId ?? null,
    alsoToChannel: p.alsoToChannel ?? false,
    editedAt: null,
    deleted: false,
    replyCount: 0,
    lastReplyAt: null,
    reactions: [],
    pinned: false,
  };
}
