// Shared by the browser scenarios: launches the Debian chromium through playwright-core (found
// in $FX_TEST_PLAYWRIGHT/node_modules), and helpers that fail with a readable message.
import { createRequire } from "node:module";
import path from "node:path";
import fs from "node:fs";

const require = createRequire(path.join(process.env.FX_TEST_PLAYWRIGHT, "package.json"));
const { chromium } = require("playwright-core");

/** Generous timeouts: the CI machine has two cores and runs other tests at once. */
export const TIMEOUT = 60_000;

export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.FX_TEST_CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
      "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") console.log(`console error: ${m.text()}`); });
  return { browser, page };
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Saves a full-page screenshot as <dir>/<name>.png. */
export async function shot(page, dir, name) {
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
  console.log(`screenshot ${name}.png`);
}

/** Runs `scenario(page)`, closing the browser and exiting 1 with the reason on failure. */
export async function run(scenario) {
  const { browser, page } = await launch();
  try {
    await scenario(page);
    console.log("scenario passed");
  } catch (e) {
    console.log(`scenario failed at ${page.url()}: ${e.stack || e}`);
    try { console.log((await page.content()).slice(0, 4000)); } catch (_) { /* closed */ }
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

/** Sends a test event from the /send page and returns the row of `handler`'s execution once
 * it is in a terminal status, checking that the page was not reloaded meanwhile. */
export async function sendAndWatch(page, base, { type, data, handler }) {
  await page.goto(`${base}/send`);
  await page.getByLabel("Type", { exact: true }).fill(type);
  await page.getByLabel("Data (JSON)").fill(data);
  await page.getByRole("button", { name: "Send event" }).click();
  await page.locator("#sent").waitFor();
  check((await page.locator("#sent").textContent()).includes(handler),
    `the sent page names the matching handler ${handler}`);
  await page.evaluate(() => { window.__notReloaded = true; });
  const row = page.locator(`tr[data-handler="${handler}"]`);
  await page.locator(`tr[data-handler="${handler}"][data-status="succeeded"], tr[data-handler="${handler}"][data-status="failed"]`)
    .waitFor({ timeout: TIMEOUT });
  check(await page.evaluate(() => window.__notReloaded === true),
    "the execution's status arrived without reloading the page");
  return row;
}
