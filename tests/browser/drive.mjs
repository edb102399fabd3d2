// Drives a page in headless Debian Chromium with playwright-core (no browser download):
//   node drive.mjs <pageUrl> <userName>
// Logs in on the local issuer's page when keycloak-js redirects there, then waits for the page's
// window.__result and prints it as JSON (exit 0), or the failure (exit 1).
import { chromium } from "playwright-core";

const [pageUrl, userName] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const consoleLines = [];
try {
  const page = await browser.newPage();
  page.on("console", (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => consoleLines.push(`pageerror: ${error}`));
  await page.goto(pageUrl);
  // keycloak-js (onLoad: login-required) sends the browser to the issuer's login page.
  await page.waitForSelector("input[name=username]", { timeout: 20000 });
  await page.fill("input[name=username]", userName);
  await Promise.all([page.waitForURL((url) => url.href.startsWith(pageUrl.split("?")[0])), page.press("input[name=username]", "Enter")]);
  const handle = await page.waitForFunction(() => window.__result, null, { timeout: 30000 });
  const result = await handle.jsonValue();
  console.log(JSON.stringify({ ...result, console: consoleLines }));
  process.exitCode = result.ok ? 0 : 1;
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: String(error), console: consoleLines }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
