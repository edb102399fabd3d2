// Two users of the web client in two browser contexts of headless Debian Chromium (playwright-core):
//   node webclient/two_users.mjs <urlOfGatewayA> <urlOfGatewayB> [screenshotDir]
// Ann uses gateway A at desktop size, Bob gateway B at 375 px. When the scenario needs gateway B
// stopped or started it prints {"need": "..."} and waits for a line on stdin (the test does it).
// Prints {"ok": true, ...observations} as the last line, or {"ok": false, "error"}.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [urlA, urlB, shots] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const result = { ok: false, steps: [] };
const consoleLines = [];
const T = 20000;

async function need(what) {
  console.log(JSON.stringify({ need: what }));
  const answer = await lines.next();
  if (answer.value?.trim() !== "ok") throw new Error(`the test did not do ${what}: ${answer.value}`);
}

/** With a screenshot folder (`make screenshots`): the page as it is, without a hover state. */
async function shot(page, name) {
  if (!shots) return;
  await page.mouse.move(1, 1);
  await page.screenshot({ path: `${shots}/${name}.png` });
}

function step(name) {
  result.steps.push(name);
}

async function signIn(page, url, name) {
  await page.goto(url);
  await page.click("#signin-oidc");
  await page.waitForSelector("input[name=username]", { timeout: T });
  await page.fill("input[name=username]", name);
  await page.press("input[name=username]", "Enter");
  await page.waitForSelector("#workspaces:not([hidden]), #app:not([hidden])", { timeout: T });
}

const shown = (page) => page.$$eval("#message-list .message[data-id]", (nodes) => nodes.map((n) => ({
  id: Number(n.dataset.id),
  body: n.querySelector(".body").textContent,
  edited: Boolean(n.querySelector(".edited")),
  deleted: n.classList.contains("deleted"),
  reactions: [...n.querySelectorAll(".reaction")].map((r) => r.textContent),
  pinned: Boolean(n.querySelector(".pin-flag")),
  replies: n.querySelector(".thread-link")?.textContent ?? null,
})));

const waitFor = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: T });
const hasBody = (page, text) => waitFor(page, (t) => [...document.querySelectorAll("#message-list .message[data-id] .body")].some((b) => b.textContent === t), text);
const messageId = async (page, text) => (await shown(page)).find((m) => m.body === text)?.id;
async function act(page, text, label) {
  const id = await messageId(page, text);
  const node = page.locator(`#message-list .message[data-id="${id}"]`);
  await node.hover();
  await node.locator(`.actions button[aria-label="${label}"]`).click();
}

async function send(page, text) {
  await page.fill("#composer-input", text);
  await page.press("#composer-input", "Enter");
  await hasBody(page, text);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const contextA = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const contextB = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
  const ann = await contextA.newPage();
  const bob = await contextB.newPage();
  for (const [who, page] of [["ann", ann], ["bob", bob]]) {
    page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") consoleLines.push(`${who} ${m.type()}: ${m.text()}`); });
    page.on("pageerror", (e) => consoleLines.push(`${who} pageerror: ${e}`));
  }

  // Ann signs in on the local issuer, creates a workspace and a public channel.
  await signIn(ann, urlA, "Ann");
  await shot(ann, "workspaces");
  await ann.fill("#workspace-create-name", "Acme");
  await ann.press("#workspace-create-name", "Enter");
  await ann.waitForSelector("#app:not([hidden])");
  await ann.click("#channel-new");
  await ann.fill("#dialog-body input >> nth=0", "general");
  await ann.fill("#dialog-body input >> nth=1", "Everything Acme");
  await ann.click("#dialog-ok");
  await waitFor(ann, () => document.getElementById("channel-title").textContent === "# general");
  const workspaceId = await ann.textContent("#workspace-id");
  step("ann created Acme and #general");

  // Bob signs in, joins the workspace by its id, then the channel through the drawer (375 px).
  await signIn(bob, urlB, "Bob");
  await bob.fill("#workspace-join-id", workspaceId);
  await bob.press("#workspace-join-id", "Enter");
  await bob.waitForSelector("#app:not([hidden])");
  await bob.click("#menu-toggle");
  await bob.click("#channel-browse");
  await bob.click("#dialog-body label:has-text('general')");
  await bob.click("#dialog-ok");
  await waitFor(bob, () => document.getElementById("channel-title").textContent === "# general");
  await waitFor(bob, () => document.getElementById("connection").dataset.state === "connected");
  step("bob joined Acme and #general");

  // Chat both ways.
  await send(ann, "hello from Ann");
  await hasBody(bob, "hello from Ann");
  // Bob starts typing: Ann sees it before the message arrives (and the indicator goes with it).
  await bob.fill("#composer-input", "hi Ann");
  await waitFor(ann, () => document.getElementById("typing").textContent.includes("Bob is typing"));
  result.typingSeenByAnn = await ann.textContent("#typing");
  await bob.press("#composer-input", "Enter");
  await hasBody(bob, "hi Ann");
  await hasBody(ann, "hi Ann");
  await waitFor(ann, () => document.getElementById("typing").textContent === "");
  step("chat both ways, typing");

  // Presence.
  await waitFor(ann, () => document.querySelector("#people-list li[data-status='online'] span")?.parentElement
    && [...document.querySelectorAll("#people-list li")].some((li) => li.textContent.startsWith("Bob") && li.dataset.status === "online"));
  result.annSeesBob = await ann.$eval("#people-list", (list) => [...list.querySelectorAll("li")].map((li) => `${li.textContent.split(",")[0]}:${li.dataset.status}`));
  step("typing and presence");

  // Threads and pins.
  await act(ann, "hello from Ann", "Reply in thread");
  await ann.waitForSelector("#reply-composer:not([hidden])");
  await ann.fill("#reply-input", "a reply in the thread");
  await ann.press("#reply-input", "Enter");
  await waitFor(ann, () => [...document.querySelectorAll("#side-list .body")].some((b) => b.textContent === "a reply in the thread"));
  await waitFor(bob, () => [...document.querySelectorAll(".thread-link")].some((b) => b.textContent === "1 reply"));
  await act(ann, "hi Ann", "Pin");
  await waitFor(bob, () => document.querySelectorAll("#message-list .pin-flag").length === 1);
  await shot(ann, "thread");
  await ann.click("#side-close");
  step("thread reply and pin seen by bob");

  // Bob's gateway goes away; Ann writes, edits, reacts and deletes meanwhile.
  await need("gateway-b-down");
  await waitFor(bob, () => document.getElementById("connection").dataset.state !== "connected");
  result.bobStateWhileDown = await bob.$eval("#connection", (e) => e.dataset.state);
  const whileAway = ["while away 1", "while away 2", "while away 3", "while away 4", "while away 5"];
  for (const text of whileAway) await send(ann, text);
  await act(ann, "hello from Ann", "Edit");
  await ann.fill("#message-list .edit-form textarea", "hello from Ann, edited");
  await ann.press("#message-list .edit-form textarea", "Enter");
  await hasBody(ann, "hello from Ann, edited");
  await act(ann, "hi Ann", "React with 👍");
  await waitFor(ann, () => [...document.querySelectorAll(".reaction")].some((r) => r.textContent === "👍 1"));
  await act(ann, "while away 3", "Delete");
  await ann.click("#dialog-ok");
  await waitFor(ann, () => [...document.querySelectorAll("#message-list .message.deleted")].length === 1);
  const annView = await shown(ann);
  step("ann wrote while bob was away");

  await need("gateway-b-up");
  await waitFor(bob, () => document.getElementById("connection").dataset.state === "connected");
  await waitFor(bob, (n) => document.querySelectorAll("#message-list .message[data-id]").length >= n
    && document.querySelectorAll("#message-list .message.deleted").length === 1
    && [...document.querySelectorAll(".reaction")].some((r) => r.textContent === "👍 1")
    && [...document.querySelectorAll("#message-list .body")].some((b) => b.textContent === "hello from Ann, edited"), annView.length);
  result.annView = annView;
  result.bobView = await shown(bob);
  step("bob reconnected and caught up");

  // After the reconnect, Bob's changes reach Ann live.
  await act(bob, "hello from Ann, edited", "React with 👍");
  await act(bob, "hi Ann", "Edit");
  await bob.fill("#message-list .edit-form textarea", "hi Ann, edited by Bob");
  await bob.press("#message-list .edit-form textarea", "Enter");
  await send(bob, "bob is back");
  await waitFor(ann, () => [...document.querySelectorAll("#message-list .body")].some((b) => b.textContent === "hi Ann, edited by Bob")
    && [...document.querySelectorAll("#message-list .body")].some((b) => b.textContent === "bob is back"));
  await act(bob, "bob is back", "Delete");
  await bob.click("#dialog-ok");
  await waitFor(ann, () => document.querySelectorAll("#message-list .message.deleted").length === 2);
  result.annFinal = await shown(ann);
  result.bobFinal = await shown(bob);
  await shot(ann, "channel");
  await shot(bob, "mobile");
  step("bob's changes seen by ann");
  result.ok = true;
} catch (error) {
  result.error = String(error?.stack ?? error);
} finally {
  result.console = consoleLines;
  console.log(JSON.stringify(result));
  await browser.close();
  process.exit(result.ok ? 0 : 1);
}
