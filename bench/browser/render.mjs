// The web client's rendering, measured in headless Debian Chromium (playwright-core from
// tests/browser): node bench/browser/render.mjs <gatewayUrl> <token> <tenantId> <loads>
// 1. page load -> first message rendered, `loads` times in fresh browser contexts;
// 2. scrolling up through the whole history (older pages load as it goes), then down again,
//    scrolling a fixed distance every animation frame; every frame's duration is recorded.
// Prints one JSON object.
import { chromium } from "../../tests/browser/node_modules/playwright-core/index.mjs";

const [url, token, tenant, loadsArg] = process.argv.slice(2);
const loads = Number(loadsArg || 5);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});

async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript(() => {
    // Calls step() once per animation frame until it returns true; resolves with every frame's duration.
    window.__recordFrames = (step, limitMs = 300000) => new Promise((resolve) => {
      const frames = [];
      let last = performance.now();
      const started = last;
      function tick(now) {
        frames.push(now - last);
        last = now;
        if (step(frames.length) || now - started > limitMs) resolve({ frames, seconds: (now - started) / 1000 });
        else requestAnimationFrame(tick);
      }
      requestAnimationFrame(tick);
    });
  });
  await context.addInitScript(() => {
    window.listedIds = () => {
      const ws = window.echonats.workspace;
      return ws.timelines.get(ws.current).listed;
    };
  });
  await context.addInitScript(([t, w]) => {
    localStorage.setItem("echonats.auth", JSON.stringify({ accessToken: t, refreshToken: null, idToken: null }));
    localStorage.setItem("echonats.workspace", w);
  }, [token, tenant]);
  const page = await context.newPage();
  return { context, page };
}

const result = { firstMessageMs: [], composerMs: [] };
try {
  for (let i = 0; i < loads; i += 1) {
    const { context, page } = await openPage();
    await page.goto(url);
    await page.waitForFunction(() => window.__echonatsFirstRender, null, { timeout: 30000 });
    result.firstMessageMs.push(await page.evaluate(() => window.__echonatsFirstRender)); // since navigation start
    await context.close();
  }

  const { page } = await openPage();
  await page.goto(url);
  await page.waitForFunction(() => window.__echonatsFirstRender, null, { timeout: 30000 });
  // Scroll up by 600 px per frame until the beginning of the channel is on screen and loaded.
  result.up = await page.evaluate(() => window.__recordFrames(() => {
    const scroller = document.getElementById("messages");
    scroller.scrollTop = Math.max(0, scroller.scrollTop - 600);
    return scroller.scrollTop === 0
      && document.getElementById("history-status").textContent.startsWith("This is the beginning");
  }));
  result.up.messages = await page.evaluate(() => listedIds().length);
  result.up.domMessages = await page.evaluate(() => document.querySelectorAll("#message-list .message").length);
  // Idle frames with everything loaded (the machine's floor), then scroll down through all of it,
  // noting every message that enters the DOM (a MutationObserver: no work inside the frames), so
  // the run also checks that the windowed list showed every message, in order.
  result.idle = await page.evaluate(() => window.__recordFrames((count) => count >= 120));
  result.down = await page.evaluate(async (step) => {
    const list = document.getElementById("message-list");
    const seen = new Set([...list.querySelectorAll(".message")].map((n) => Number(n.dataset.id)));
    let outOfOrder = 0;
    const observer = new MutationObserver((records) => {
      for (const record of records) {
        for (const node of record.addedNodes) if (node.dataset?.id) seen.add(Number(node.dataset.id));
      }
      const ids = [...list.children].map((n) => Number(n.dataset.id));
      if (ids.some((id, i) => i > 0 && id <= ids[i - 1])) outOfOrder += 1;
    });
    observer.observe(list, { childList: true });
    const frames = await window.__recordFrames(() => {
      const scroller = document.getElementById("messages");
      scroller.scrollTop += step;
      return scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 1
        && !document.getElementById("jump-latest").offsetParent; // the window reached the end
    });
    observer.disconnect();
    const listed = listedIds();
    return { ...frames, shown: listed.filter((id) => seen.has(id)).length, listed: listed.length, outOfOrder,
             domMessages: list.querySelectorAll(".message").length };
  }, Number(process.env.SCROLL_STEP || 200));
  result.domNodes = await page.evaluate(() => document.getElementsByTagName("*").length);
  result.heapMB = await page.evaluate(() => (performance.memory ? performance.memory.usedJSHeapSize / 1e6 : null));
  result.ok = true;
} catch (error) {
  result.ok = false;
  result.error = String(error?.stack ?? error);
} finally {
  console.log(JSON.stringify(result));
  await browser.close();
}
