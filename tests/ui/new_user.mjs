// A new user's path through the web UI: upload the example package (after a bad upload),
// create a handler (after an invalid filter), send a test event, see its execution succeed
// live, open it and read its log line. Screenshots of the main pages go to the given folder.
//
//   node tests/ui/new_user.mjs BASE_URL SCREENSHOT_DIR HELLO_FXPKG NOT_A_PACKAGE_FILE
import { run, check, shot, sendAndWatch } from "./lib.mjs";

const [base, shots, helloPackage, badPackage] = process.argv.slice(2);

await run(async (page) => {
  await page.goto(base);
  await page.getByRole("heading", { name: "Getting started" }).waitFor();
  await shot(page, shots, "overview-empty");

  // A file that is not a package is refused with the reason, and nothing is stored.
  await page.goto(`${base}/packages`);
  await page.locator("text=No packages yet").waitFor();
  await page.setInputFiles("#package-file", badPackage);
  await page.getByRole("button", { name: "Upload", exact: true }).click();
  const error = page.locator("#upload-error");
  await error.waitFor();
  const reason = await error.textContent();
  check(/upload refused: .*(gzip|archive|package)/i.test(reason), `the refusal says why: ${reason}`);
  check(await page.locator("section[id^=package-]").count() === 0, "no package is listed");
  const stored = await (await page.request.get(`${base}/api/v1/packages`)).json();
  check(stored.packages.length === 0, `nothing stored: ${JSON.stringify(stored)}`);
  await shot(page, shots, "packages-refused");

  await page.setInputFiles("#package-file", helloPackage);
  await page.getByRole("button", { name: "Upload", exact: true }).click();
  await page.locator("text=uploaded hello@1.0.0").waitFor();
  await page.locator("#package-hello").waitFor();
  check((await page.locator("#package-hello").textContent()).includes("latest → 1.0.0"), "latest points at 1.0.0");
  await shot(page, shots, "packages");

  // A handler with an invalid filter is not saved, and the form says why next to the filter.
  await page.goto(`${base}/handlers/new?package=hello`);
  await page.getByLabel("Name", { exact: true }).fill("hello-ui");
  await page.getByLabel("attribute of condition 1").fill("Not An Attribute!");
  await page.getByLabel("value of condition 1").fill("com.example.hello");
  await page.getByRole("button", { name: "Create handler" }).click();
  const filterError = page.locator("#filter-error");
  await filterError.waitFor();
  check((await filterError.textContent()).includes("not a cloudevents attribute name"),
    `the filter error says why: ${await filterError.textContent()}`);
  const absent = await page.request.get(`${base}/api/v1/handlers/hello-ui`);
  check(absent.status() === 404, `the invalid handler was not saved (${absent.status()})`);
  await shot(page, shots, "handler-refused");

  // Fixed: the live preview shows the handler's JSON, and it saves.
  await page.getByLabel("attribute of condition 1").fill("type");
  await page.locator("#handler-json", { hasText: "com.example.hello" }).waitFor();
  await shot(page, shots, "handler-form");
  await page.getByRole("button", { name: "Create handler" }).click();
  await page.locator("text=saved handler hello-ui").waitFor();
  await shot(page, shots, "handlers");

  // A test event from the UI; the execution turns succeeded without reloading.
  const row = await sendAndWatch(page, base, {
    type: "com.example.hello", data: '{"name": "Browser"}', handler: "hello-ui",
  });
  check(await row.getAttribute("data-status") === "succeeded", "the execution succeeded");
  await shot(page, shots, "send-event");

  await row.locator("a.mono").click();
  await page.locator("#execution-status", { hasText: "succeeded" }).waitFor();
  await page.locator("td.message", { hasText: "hello from FerrisFX" }).first().waitFor();
  check((await page.content()).includes("Hello, Browser!"), "the output event is shown");
  await shot(page, shots, "execution");

  await page.goto(`${base}/executions`);
  await page.locator('tr[data-handler="hello-ui"]').first().waitFor();
  await shot(page, shots, "executions");
  await page.goto(base);
  await page.locator("#dashboard", { hasText: "hello-ui" }).waitFor();
  await shot(page, shots, "overview");
  // The API reference, rendered from the generated OpenAPI document by the bundled viewer.
  await page.goto(`${base}/api/docs`);
  await page.getByText("FerrisFX management API").first().waitFor();
  await page.getByText("/api/v1/handlers/{name}").first().waitFor();
  await shot(page, shots, "api-docs");

  await page.emulateMedia({ colorScheme: "dark" });
  await page.goto(`${base}/handlers/hello-ui/edit`);
  await shot(page, shots, "handler-edit-dark");
});
