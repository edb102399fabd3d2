// The main message list shows a window of consecutive messages of the open channel's timeline,
// never all of them: a channel's timeline can hold tens of thousands of messages once the user has
// scrolled through its history, and a DOM that large makes every frame slow. Scrolling near an
// edge renders the next messages on that side from memory and drops as many on the far side; the
// message under the reader's eyes stays where it was on screen.
import { $, messageNode } from "./view.js";

const WINDOW_MAX = 300; // messages in the DOM at most (at the end of a busy channel: + WINDOW_STEP)
const WINDOW_STEP = 100; // messages rendered (and dropped) per move

export class MessageWindow {
  constructor(makeCtx) {
    this.makeCtx = makeCtx;
    this.nodes = new Map(); // message id -> node, exactly the messages in the window
    this.first = null; // id of the window's first message (null: empty window)
    this.last = null;
  }

  get list() { return $("message-list"); }

  clear() {
    this.nodes.clear();
    this.first = this.last = null;
    this.list.replaceChildren();
  }

  /** The window at the timeline's end; pending sends stay after it. */
  showEnd(timeline) {
    const listed = timeline.listed;
    const pendings = [...this.list.querySelectorAll(".pending")];
    this.clear();
    const from = Math.max(0, listed.length - 2 * WINDOW_STEP);
    this.list.append(this.build(timeline, listed.slice(from)), ...pendings);
    if (listed.length) [this.first, this.last] = [listed[from], listed[listed.length - 1]];
  }

  atStart(timeline) { return this.first === null || this.first === timeline.listed[0]; }

  atEnd(timeline) {
    const listed = timeline.listed;
    return this.last === null || this.last === listed[listed.length - 1];
  }

  /** Renders the messages before the window (those in memory); false when there are none. */
  extendUp(timeline) {
    const listed = timeline.listed;
    const lo = this.first === null ? listed.length : indexOf(listed, this.first);
    if (lo <= 0) return false;
    const from = Math.max(0, lo - WINDOW_STEP);
    const anchor = this.nodes.get(this.first);
    keepOnScreen(anchor, () => {
      this.list.prepend(this.build(timeline, listed.slice(from, lo)));
      this.first = listed[from];
      this.last ??= listed[lo - 1];
      this.trim(timeline, "end");
    });
    return true;
  }

  /** Renders the messages after the window; false when the window is at the timeline's end. */
  extendDown(timeline) {
    const listed = timeline.listed;
    if (this.atEnd(timeline)) return false;
    const hi = indexOf(listed, this.last) + 1;
    const to = Math.min(listed.length, hi + WINDOW_STEP);
    const anchor = this.nodes.get(this.last);
    keepOnScreen(anchor, () => {
      this.list.insertBefore(this.build(timeline, listed.slice(hi, to)), this.firstPending());
      this.last = listed[to - 1];
      this.trim(timeline, "start");
    });
    return true;
  }

  /**
   * A new message at the timeline's end. It is shown if the window reaches the end (a reader far up
   * in the history, in a busy channel, is not made to hold an ever larger window); `follow`: the
   * reader is at the bottom, so the oldest messages can go. Returns whether it was shown.
   */
  append(timeline, message, follow) {
    const listed = timeline.listed;
    const windowAtEnd = this.last === null || listed[listed.length - 2] === this.last;
    if (!windowAtEnd || (!follow && this.nodes.size >= WINDOW_MAX + WINDOW_STEP)) return false;
    const node = messageNode(message, this.makeCtx());
    this.nodes.set(message.id, node);
    this.list.insertBefore(node, this.firstPending());
    this.first ??= message.id;
    this.last = message.id;
    if (follow && this.nodes.size > WINDOW_MAX + WINDOW_STEP) this.trim(timeline, "start");
    return true;
  }

  /** A message in the window changed: its node is rebuilt. */
  replace(message) {
    const old = this.nodes.get(message.id);
    if (!old) return;
    const node = messageNode(message, this.makeCtx());
    old.replaceWith(node);
    this.nodes.set(message.id, node);
  }

  firstPending() { return this.list.querySelector(".pending"); }

  build(timeline, ids) {
    const ctx = this.makeCtx();
    const fragment = document.createDocumentFragment();
    for (const id of ids) {
      const node = messageNode(timeline.messages.get(id), ctx);
      this.nodes.set(id, node);
      fragment.append(node);
    }
    return fragment;
  }

  /** Drops messages from one side until the window holds WINDOW_MAX. */
  trim(timeline, side) {
    const excess = this.nodes.size - WINDOW_MAX;
    if (excess <= 0) return;
    const listed = timeline.listed;
    const lo = indexOf(listed, this.first);
    const hi = indexOf(listed, this.last) + 1;
    const dropped = side === "start" ? listed.slice(lo, lo + excess) : listed.slice(hi - excess, hi);
    for (const id of dropped) {
      this.nodes.get(id)?.remove();
      this.nodes.delete(id);
    }
    if (side === "start") this.first = listed[lo + excess];
    else this.last = listed[hi - excess - 1];
  }
}

/** Runs `mutate` and scrolls so that `anchor` is where it was on screen. */
function keepOnScreen(anchor, mutate) {
  const scroller = $("messages");
  const before = anchor?.getBoundingClientRect().top;
  mutate();
  if (anchor?.isConnected) scroller.scrollTop += anchor.getBoundingClientRect().top - before;
}

/** Index of `id` in the ascending `ids` (binary search); -1 when absent. */
export function indexOf(ids, id) {
  let lo = 0;
  let hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ids[mid] === id) return mid;
    if (ids[mid] < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}
