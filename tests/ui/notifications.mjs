// Notification rules in the web UI: with the signing secret set and a handler `flaky` on
// `fx.test.error` (the misbehave example, which fails) created through the API, create a rule
// in the browser (after one refused for a secret that does not exist, the reason next to the
// field), see it listed; then send an event that makes `flaky` fail and open the execution's
// page: its Notifications section shows the rule's notification delivered to the local
// receiver, with the attempt's time, HTTP status and duration.
//
//   node tests/ui/notifications.mjs BASE_URL SCREENSHOT_DIR SECRET_NAME_FILE RECEIVER_URL_FILE
import fs from "node:fs";
import { run, check, shot, TIMEOUT } from "./lib.mjs";

const [base, shots, secretNameFile, receiverFile] = process.argv.slice(2);
const secretName = fs.readFileSync(secretNameFile, "utf8");
const receiver = fs.readFileSync(receiverFile, "utf8");

/** Polls `probe` every half second until it returns a value; fails with `what` after TIMEOUT. */
async function until(what, probe) {
  const deadline = Date.now() + TIMEOUT;
  let last = null;
  while (Date.now() < deadline) {
    const found = await probe();
    if (found) return found;
    last = found;
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting until ${what} (${JSON.stringify(last)})`);
}

await run(async (page) => {
  await page.goto(`${base}/notifications`);
  check(await page.getByRole("link", { name: "Notifications" }).getAttribute("aria-current") === "page",
    "the nav highlights Notifications");
  await page.locator("text=No notification rules yet").waitFor();

  // A rule whose secret does not exist is refused, the reason next to the secret's field.
  await page.getByLabel("Name", { exact: true }).fill("oncall");
  await page.getByLabel("Description").fill("page the on-call engineer");
  await page.getByLabel("Handlers").fill("flaky");
  check(await page.getByLabel("failed", { exact: true }).isChecked(), "failed is checked by default");
  await page.getByLabel("dead-lettered").check();
  await page.getByLabel("Target").selectOption("webhook");
  await page.getByLabel("URL").fill(`${receiver}/alerts`);
  await page.getByLabel("Secret name").fill("no-such-secret");
  await page.getByLabel("Max attempts").fill("3");
  await page.getByRole("button", { name: "Create rule" }).click();
  const fieldError = page.locator("#rule-secret-error");
  await fieldError.waitFor();
  check((await fieldError.textContent()).includes("does not exist"),
    `the refusal says why: ${await fieldError.textContent()}`);
  check(await page.getByLabel("Secret name").getAttribute("aria-invalid") === "true",
    "the secret's field is marked invalid");
  check(await page.getByLabel("Handlers").inputValue() === "flaky", "the form is kept");
  check(await page.getByLabel("dead-lettered").isChecked(), "the outcomes are kept");
  await shot(page, shots, "rule-refused");

  // With the secret that exists it is created and listed.
  await page.getByLabel("Secret name").fill(secretName);
  await page.getByRole("button", { name: "Create rule" }).click();
  await page.locator("text=created notification rule oncall").waitFor();
  const row = page.locator('tr[data-rule="oncall"]');
  check((await row.locator("td.handlers").textContent()).trim() === "flaky", "the row names the handler");
  check((await row.locator("td.outcomes").textContent()).includes("failed"), "the row says the outcomes");
  check((await row.locator("td.outcomes").textContent()).includes("dead_lettered"), "the row says both outcomes");
  const target = await row.locator("td.target").textContent();
  check(target.includes("webhook") && target.includes(`${receiver}/alerts`), `the row gives the target: ${target}`);
  check((await row.locator("td.secret").textContent()).includes(secretName), "the row names the secret");
  check((await row.locator("td.attempts").textContent()).trim() === "3", "the row says the attempts");
  check((await row.locator("td.enabled").textContent()).includes("yes"), "the row says enabled");
  await shot(page, shots, "rules");

  // An event that makes `flaky` fail, sent as a structured CloudEvent.
  const sent = await fetch(`${base}/events`, {
    method: "POST",
    headers: { "Content-Type": "application/cloudevents+json" },
    body: JSON.stringify({
      specversion: "1.0", id: "boom-ui-1", source: "/tests/ui", type: "fx.test.error",
      datacontenttype: "application/json", data: {},
    }),
  });
  check(sent.status === 202, `the event is accepted: ${sent.status} ${await sent.text()}`);
  const id = await until("flaky's execution fails", async () => {
    const r = await fetch(`${base}/api/v1/executions?handler=flaky`);
    const items = (await r.json()).items || [];
    const failed = items.find((e) => e.status === "failed");
    return failed && failed.id;
  });
  await until("its notifications are delivered", async () => {
    const r = await fetch(`${base}/api/v1/executions/${id}/notifications`);
    const all = (await r.json()).notifications || [];
    return all.length > 0 && all.every((n) => n.status === "delivered") && all;
  });

  // Its page shows what was sent, and each attempt.
  await page.goto(`${base}/executions/${id}`);
  await page.getByRole("heading", { name: "Notifications" }).waitFor();
  const sentRow = page.locator('#notifications tr[data-rule="oncall"]');
  await sentRow.waitFor();
  check(await sentRow.getAttribute("data-status") === "delivered", "the notification is delivered");
  check((await sentRow.textContent()).includes("delivered"), "the row says delivered");
  const attempt = sentRow.locator("li.delivery-attempt").first();
  const text = await attempt.textContent();
  check(text.includes("HTTP 200"), `the attempt gives the receiver's status: ${text}`);
  check(/\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC/.test(text), `the attempt gives its time: ${text}`);
  check(/(\d+(\.\d+)? (ms|s)|under 1 ms)/.test(text), `the attempt gives its duration: ${text}`);
  await sentRow.getByRole("link", { name: "oncall" }).waitFor();
  await shot(page, shots, "execution-notifications");

  // The page's delete button removes the rule.
  await page.goto(`${base}/notifications`);
  page.once("dialog", (d) => d.accept());
  await page.locator('tr[data-rule="oncall"]').getByRole("button", { name: "Delete" }).click();
  await page.locator("text=deleted notification rule oncall").waitFor();
  await page.locator("text=No notification rules yet").waitFor();
});
