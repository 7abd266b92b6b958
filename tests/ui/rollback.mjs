// Rollback from the UI: with greeter 1.0.0 and a broken 2.0.0 uploaded (latest → 2.0.0), the
// handler runs 2.0.0; one click points latest back at 1.0.0, and the next event runs 1.0.0.
//
//   node tests/ui/rollback.mjs BASE_URL SCREENSHOT_DIR GREETER_1_FXPKG GREETER_2_FXPKG
import { run, check, shot, sendAndWatch } from "./lib.mjs";

const [base, shots, v1, v2] = process.argv.slice(2);

async function upload(page, file, what) {
  await page.goto(`${base}/packages`);
  await page.setInputFiles("#package-file", file);
  await page.getByRole("button", { name: "Upload", exact: true }).click();
  await page.locator(`text=uploaded ${what}`).waitFor();
}

async function openExecution(page, row, version) {
  await row.locator("a.mono").click();
  await page.locator("#execution-status").waitFor();
  const text = await page.locator("main").textContent();
  check(text.includes(`greeter@${version}`), `the execution ran greeter@${version}`);
  return text;
}

await run(async (page) => {
  await upload(page, v1, "greeter@1.0.0");
  await upload(page, v2, "greeter@2.0.0");
  check((await page.locator("#package-greeter").textContent()).includes("latest → 2.0.0"),
    "latest follows the newest upload");

  await page.goto(`${base}/handlers/new?package=greeter`);
  await page.getByLabel("Name", { exact: true }).fill("greeter");
  await page.getByLabel("value of condition 1").fill("com.example.rollback");
  await page.getByRole("button", { name: "Create handler" }).click();
  await page.locator("text=saved handler greeter").waitFor();

  let row = await sendAndWatch(page, base, {
    type: "com.example.rollback", data: '{"name": "v2"}', handler: "greeter",
  });
  await openExecution(page, row, "2.0.0");

  await page.goto(`${base}/packages`);
  await page.locator('#package-greeter tr[data-version="1.0.0"]')
    .getByRole("button", { name: "Make latest" }).click();
  await page.locator("text=moved greeter latest → 1.0.0").waitFor();
  check((await page.locator("#package-greeter").textContent()).includes("latest → 1.0.0"),
    "latest points at 1.0.0");
  await shot(page, shots, "packages-rolled-back");

  row = await sendAndWatch(page, base, {
    type: "com.example.rollback", data: '{"name": "v1"}', handler: "greeter",
  });
  check(await row.getAttribute("data-status") === "succeeded", "1.0.0 succeeds");
  const text = await openExecution(page, row, "1.0.0");
  check(text.includes("Hello, v1!"), "the output is 1.0.0's greeting");
});
