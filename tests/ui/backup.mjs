// Backup and restore in the web UI: download a backup (with the executions of the last day)
// from one platform's /backup page, restore it on another's, and read the report: what was
// restored, what the deployment now holds, the package archives read back. Restoring it again
// without "Replace" is refused with the reason, and nothing changes.
//
//   node tests/ui/backup.mjs SOURCE_URL SCREENSHOT_DIR TARGET_URL
import fs from "node:fs";
import path from "node:path";
import { run, check, shot } from "./lib.mjs";

const [source, shots, target] = process.argv.slice(2);

await run(async (page) => {
  await page.goto(`${source}/backup`);
  await page.getByLabel(/Executions of the last/).fill("1");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download backup" }).click(),
  ]);
  const name = download.suggestedFilename();
  check(/^ferrisfx-backup-\d{8}T\d{6}Z\.tar\.gz$/.test(name), `the file is named by its time: ${name}`);
  fs.mkdirSync(shots, { recursive: true });
  const file = path.join(shots, name);
  await download.saveAs(file);

  await page.goto(`${target}/backup`);
  await page.setInputFiles('#restore-form input[type="file"]', file);
  await page.getByRole("button", { name: "Restore" }).click();
  await page.locator("#restore-report").waitFor();
  const row = async (section) =>
    (await page.locator(`#restore-report tr[data-section="${section}"] td`).allTextContents()).map((t) => t.trim());
  const handlers = await row("handlers");
  check(handlers[1] === "1" && handlers[3] === "1", `one handler restored and there: ${handlers}`);
  const executions = await row("executions");
  check(Number(executions[1]) >= 3, `the executions restored: ${executions}`);
  const report = await page.locator("#restore-report").textContent();
  check(/2 package archives read back/.test(report), `both archives verified: ${report}`);
  await shot(page, shots, "backup-restored");

  // Again, without "Replace": refused, with what the deployment holds.
  await page.setInputFiles('#restore-form input[type="file"]', file);
  await page.getByRole("button", { name: "Restore" }).click();
  const error = await page.locator("#restore-error").textContent();
  check(/not empty/.test(error) && /1 handlers/.test(error), `refused: ${error}`);
  await shot(page, shots, "backup-refused");
});
