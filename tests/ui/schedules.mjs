// Schedules in the web UI: with `hello` uploaded, create a handler on schedule ticks and a
// schedule firing every second (after a refused one), see its ticks run, open its executions,
// then pause it.
//
//   node tests/ui/schedules.mjs BASE_URL SCREENSHOT_DIR HELLO_FXPKG
import { run, check, shot } from "./lib.mjs";

const [base, shots, helloPackage] = process.argv.slice(2);

await run(async (page) => {
  await page.goto(`${base}/packages`);
  await page.setInputFiles("#package-file", helloPackage);
  await page.getByRole("button", { name: "Upload", exact: true }).click();
  await page.locator("text=uploaded hello@1.0.0").waitFor();

  await page.goto(`${base}/handlers/new?package=hello`);
  await page.getByLabel("Name", { exact: true }).fill("on-tick");
  await page.getByLabel("value of condition 1").fill("com.ferrisfx.schedule.fired");
  await page.getByRole("button", { name: "Create handler" }).click();
  await page.locator("text=saved handler on-tick").waitFor();

  // A schedule that is not valid is refused with the reason, the form kept.
  await page.goto(`${base}/schedules`);
  await page.locator("text=No schedules yet").waitFor();
  await page.getByLabel("Name", { exact: true }).fill("tick");
  await page.getByLabel("Kind").selectOption("cron");
  await page.getByLabel("Seconds, expression or time").fill("61 * * * *");
  await page.getByRole("button", { name: "Create schedule" }).click();
  const error = page.locator("#schedule-error");
  await error.waitFor();
  check((await error.textContent()).includes("is not valid"), "the refusal says why");
  check(await page.getByLabel("Name", { exact: true }).inputValue() === "tick", "the form is kept");

  await page.getByLabel("Kind").selectOption("every");
  await page.getByLabel("Seconds, expression or time").fill("1");
  await page.getByLabel("Data (JSON)").fill('{"from": "the ui"}');
  await page.getByRole("button", { name: "Create schedule" }).click();
  await page.locator("text=created schedule tick").waitFor();
  const row = page.locator('tr[data-schedule="tick"]');
  check((await row.textContent()).includes("every 1 s"), "the row says when it fires");
  check(await row.locator("td.next").textContent() !== "", "the next ticks are shown");

  // Its ticks fire: the row shows the last one after a reload.
  let last = "never";
  for (let i = 0; i < 30 && last.includes("never"); i++) {
    await page.waitForTimeout(1000);
    await page.reload();
    last = await page.locator('tr[data-schedule="tick"] td.last').textContent();
  }
  check(!last.includes("never"), `the schedule fired (last: ${last})`);
  await shot(page, shots, "schedules");

  await page.locator('tr[data-schedule="tick"]').getByRole("link", { name: "last executions" }).click();
  await page.locator('tr[data-handler="on-tick"][data-status="succeeded"]').first().waitFor();
  await shot(page, shots, "schedule-executions");

  await page.goto(`${base}/schedules`);
  await page.locator('tr[data-schedule="tick"]').getByRole("button", { name: "Pause" }).click();
  await page.locator("text=paused schedule tick").waitFor();
  check((await page.locator('tr[data-schedule="tick"] td.next').textContent()).includes("paused"),
    "the row says paused");
  const stored = await (await page.request.get(`${base}/api/v1/schedules/tick`)).json();
  check(stored.schedule.paused === true, `paused in the api: ${JSON.stringify(stored)}`);
});
