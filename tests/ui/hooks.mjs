// Webhooks in the web UI: with the signing secret set and a handler on `com.github.push`
// created through the API, create a GitHub webhook in the browser (after a refused one), post
// it a signed push delivery (202, and the handler's execution shows), a redelivery (202 again)
// and a forged one (401), then find the execution through the hook's row.
//
//   node tests/ui/hooks.mjs BASE_URL SCREENSHOT_DIR SECRET_NAME_FILE SECRET_VALUE_FILE
import crypto from "node:crypto";
import fs from "node:fs";
import { run, check, shot } from "./lib.mjs";

const [base, shots, secretNameFile, secretValueFile] = process.argv.slice(2);
const secretName = fs.readFileSync(secretNameFile, "utf8");
const secretValue = fs.readFileSync(secretValueFile, "utf8");

/** Posts `body` to `url` as GitHub does, signed with `key`; the response's status and JSON. */
async function deliver(url, body, key, delivery) {
  const signature = crypto.createHmac("sha256", key).update(body).digest("hex");
  const response = await fetch(url, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "User-Agent": "GitHub-Hookshot/ui-test",
      "X-GitHub-Event": "push",
      "X-GitHub-Delivery": delivery,
      "X-Hub-Signature-256": `sha256=${signature}`,
    },
    body,
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: response.status, text, json };
}

await run(async (page) => {
  await page.goto(`${base}/hooks`);
  check(await page.getByRole("link", { name: "Webhooks" }).getAttribute("aria-current") === "page",
    "the nav highlights Webhooks");
  await page.locator("text=No webhooks yet").waitFor();

  // A webhook whose secret does not exist is refused, the reason next to the secret's field.
  await page.getByLabel("Name", { exact: true }).fill("github");
  await page.getByLabel("Description").fill("pushes to the demo repository");
  await page.getByLabel("Signature check").selectOption("github");
  await page.getByLabel("Secret name").fill("no-such-secret");
  await page.getByLabel("Transform").selectOption("github");
  await page.getByRole("button", { name: "Create webhook" }).click();
  const fieldError = page.locator("#hook-secret-error");
  await fieldError.waitFor();
  check((await fieldError.textContent()).includes("does not exist"),
    `the refusal says why: ${await fieldError.textContent()}`);
  check(await page.getByLabel("Secret name").getAttribute("aria-invalid") === "true",
    "the secret's field is marked invalid");
  check(await page.getByLabel("Name", { exact: true }).inputValue() === "github", "the form is kept");
  check(await page.getByLabel("Description").inputValue() === "pushes to the demo repository",
    "the description is kept");
  await shot(page, shots, "hook-refused");

  // A wrong rate is refused next to the rate's field.
  await page.getByLabel("Secret name").fill(secretName);
  await page.getByLabel("Rate (per second)").fill("fast");
  await page.getByRole("button", { name: "Create webhook" }).click();
  await page.locator("#hook-rate-error").waitFor();
  check(await page.locator("#hook-secret-error").count() === 0, "the secret is fine now");

  await page.getByLabel("Rate (per second)").fill("5");
  await page.getByLabel("Burst").fill("10");
  await page.getByRole("button", { name: "Create webhook" }).click();
  await page.locator("text=created webhook github").waitFor();
  const row = page.locator('tr[data-hook="github"]');
  check((await row.locator("td.verify").textContent()).includes("github"), "the row says the check");
  check((await row.locator("td.verify").textContent()).includes(secretName), "the row names the secret");
  check((await row.locator("td.transform").textContent()).trim() === "github", "the row says the transform");
  check((await row.locator("td.rate").textContent()).includes("5/s, burst 10"), "the row says the rate");
  check((await row.locator("td.enabled").textContent()).includes("yes"), "the row says enabled");
  const url = (await row.locator("td.url").textContent()).trim();
  check(url === `${base}/hooks/github`, `the row gives the URL to post to: ${url}`);
  await shot(page, shots, "hooks");

  // A signed delivery is accepted and becomes a com.github.push event.
  const body = JSON.stringify({
    ref: "refs/heads/main",
    repository: { full_name: "ferrisfx/demo" },
    pusher: { name: "ferris" },
  });
  const delivery = crypto.randomUUID();
  const accepted = await deliver(url, body, secretValue, delivery);
  check(accepted.status === 202, `a signed delivery is accepted: ${accepted.status} ${accepted.text}`);
  check(accepted.json && accepted.json.type === "com.github.push", `its event's type: ${accepted.text}`);
  check(accepted.json.id === delivery, `its event's id is the delivery's: ${accepted.text}`);
  // A redelivery is the same event: accepted, and it runs nothing new.
  const again = await deliver(url, body, secretValue, delivery);
  check(again.status === 202, `a redelivery is accepted: ${again.status} ${again.text}`);
  // A delivery signed with another secret is refused.
  const forged = await deliver(url, body, "not the secret", crypto.randomUUID());
  check(forged.status === 401, `a forged delivery is refused: ${forged.status} ${forged.text}`);
  const unsigned = await fetch(url, { method: "POST", body, headers: { "X-GitHub-Event": "push" } });
  check(unsigned.status === 401, `an unsigned delivery is refused: ${unsigned.status}`);

  // The handler on pushes ran: its execution is on the executions page, through the hook's row.
  await page.goto(`${base}/hooks`);
  await page.locator('tr[data-hook="github"]').getByRole("link", { name: "last executions" }).click();
  // A list narrowed by text is not live: reload until the execution has finished.
  const succeeded = page.locator('tr[data-handler="on-push"][data-status="succeeded"]');
  for (let i = 0; i < 60 && await succeeded.count() === 0; i++) {
    await page.waitForTimeout(1000);
    await page.reload();
  }
  await succeeded.first().waitFor();
  check(await page.locator('tr[data-handler="on-push"]').count() === 1,
    "one execution: the forged delivery ran nothing");
  await shot(page, shots, "hook-executions");

  // The page's delete button removes the hook; its URL answers 404 from then on.
  await page.goto(`${base}/hooks`);
  page.once("dialog", (d) => d.accept());
  await page.locator('tr[data-hook="github"]').getByRole("button", { name: "Delete" }).click();
  await page.locator("text=deleted webhook github").waitFor();
  await page.locator("text=No webhooks yet").waitFor();
  const gone = await deliver(url, body, secretValue, crypto.randomUUID());
  check(gone.status === 404, `a deleted hook's URL answers 404: ${gone.status} ${gone.text}`);
});
