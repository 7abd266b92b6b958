// Workflows in the web UI: with the `workflow-step` example uploaded through the API, write a
// workflow in the browser (after one refused for its cycle, the cycle named under the
// definition), a diamond a → (b, c) → d in YAML; open it (its graph drawn from the
// definition, every step pending), start a run with an input that makes b and c sleep 1.5 s,
// land on the run's page and watch its graph turn green as the page reloads itself: a step
// is seen running on the way, every step ends succeeded, the run too, and the page stops
// reloading. The steps table links each step's execution and the last step's output names
// both middle steps.
//
//   node tests/ui/workflows.mjs BASE_URL SCREENSHOT_DIR
import { run, check, shot, TIMEOUT } from "./lib.mjs";

const [base, shots] = process.argv.slice(2);

const CYCLE = `name: loop
steps:
  - name: a
    package: {name: workflow-step}
    after: [{step: b}]
  - name: b
    package: {name: workflow-step}
    after: [{step: a}]
`;

const DIAMOND = `name: diamond
description: fan out to b and c, join in d
steps:
  - name: a
    package: {name: workflow-step}
  - name: b
    package: {name: workflow-step}
    after: [{step: a}]
  - name: c
    package: {name: workflow-step}
    after: [{step: a}]
  - name: d
    package: {name: workflow-step}
    after: [{step: b}, {step: c}]
`;

const INPUT = '{"sleep_ms": {"b": 1500, "c": 1500}}';

/** The steps of the graph on the page, {name: status}; null while the page reloads. */
async function graph(page) {
  try {
    return await page.evaluate(() => {
      const steps = {};
      document.querySelectorAll("#graph g.step").forEach((g) => {
        steps[g.getAttribute("data-step")] = g.getAttribute("data-status");
      });
      const badge = document.getElementById("run-status");
      return {
        steps,
        run: badge ? badge.textContent.trim() : null,
        refreshing: document.querySelector('meta[http-equiv="refresh"]') !== null,
      };
    });
  } catch (e) {
    // The page is being replaced by its reload: read it again.
    if (/context was destroyed|navigat|Target closed/i.test(String(e))) return null;
    throw e;
  }
}

await run(async (page) => {
  await page.goto(`${base}/workflows`);
  check(await page.getByRole("link", { name: "Workflows", exact: true }).getAttribute("aria-current") === "page",
    "the nav highlights Workflows");
  await page.locator("text=No workflows yet").waitFor();

  // A cycle is refused, named under the definition, the text kept.
  const definition = page.getByLabel("Definition (YAML or JSON)");
  await definition.fill(CYCLE);
  await page.getByRole("button", { name: "Save workflow" }).click();
  const fieldError = page.locator("#workflow-definition-error");
  await fieldError.waitFor();
  const why = await fieldError.textContent();
  check(/has a cycle: (a → b → a|b → a → b)/.test(why), `the refusal names the cycle: ${why}`);
  check(await definition.getAttribute("aria-invalid") === "true", "the definition is marked invalid");
  check((await definition.inputValue()).includes("name: loop"), "the definition is kept");
  await shot(page, shots, "cycle-refused");

  // The diamond is created and listed.
  await definition.fill(DIAMOND);
  await page.getByRole("button", { name: "Save workflow" }).click();
  await page.locator("text=created workflow diamond").waitFor();
  const row = page.locator('tr[data-workflow="diamond"]');
  check((await row.locator("td.steps").textContent()).trim() === "4", "the row counts four steps");
  check((await row.locator("td.on-failure").textContent()).trim() === "stop", "the row says the failure policy");
  await shot(page, shots, "workflows");

  // Its page: the graph of the definition, every step pending.
  await row.getByRole("link", { name: "diamond" }).click();
  await page.waitForURL(`${base}/workflows/diamond`);
  const drawn = await graph(page);
  check(JSON.stringify(Object.keys(drawn.steps).sort()) === '["a","b","c","d"]',
    `the graph draws the four steps: ${JSON.stringify(drawn)}`);
  check(Object.values(drawn.steps).every((s) => s === "pending"), `every step is pending: ${JSON.stringify(drawn)}`);
  check(await page.locator("#graph path.edge").count() === 4, "the graph draws the four edges");
  await shot(page, shots, "workflow");

  // A run with an input that makes b and c sleep: its page.
  await page.getByLabel("Input (JSON)").fill(INPUT);
  await page.getByRole("button", { name: "Start run" }).click();
  await page.waitForURL(/\/runs\/[0-9a-f]{32}$/);
  const runUrl = page.url();
  console.log(`run page ${runUrl}`);

  // The graph turns green as the page reloads itself.
  const deadline = Date.now() + TIMEOUT * 2;
  const seen = new Set();
  let last = null;
  let shotRunning = false;
  for (;;) {
    const now = await graph(page);
    if (now) {
      last = now;
      for (const [step, status] of Object.entries(now.steps)) seen.add(`${step}:${status}`);
      if (!shotRunning && Object.values(now.steps).includes("running")) {
        shotRunning = true;
        try { await shot(page, shots, "run-running"); } catch (_) { /* reloaded meanwhile */ }
      }
      const all = Object.values(now.steps);
      if (all.length === 4 && all.every((s) => s === "succeeded") && now.run === "succeeded" && !now.refreshing) break;
    }
    if (Date.now() > deadline) throw new Error(`the run did not succeed in time: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  check(page.url() === runUrl, `the page stayed the run's: ${page.url()}`);
  const running = [...seen].filter((s) => s.endsWith(":running"));
  console.log(`statuses seen: ${[...seen].sort().join(", ")}`);
  check(running.length > 0, `a step was seen running on the way: ${[...seen].join(", ")}`);
  await shot(page, shots, "run-succeeded");

  // The steps table: every step succeeded with its execution linked; d's output names b and c.
  for (const step of ["a", "b", "c", "d"]) {
    const tr = page.locator(`#steps tr[data-step="${step}"]`);
    check(await tr.getAttribute("data-status") === "succeeded", `step ${step} is succeeded in the table`);
    check(await tr.locator('a[href^="/executions/"]').count() === 1, `step ${step} links its execution`);
  }
  const output = await page.locator('pre.output[data-step="d"]').textContent();
  const d = JSON.parse(output);
  check(JSON.stringify(d.received) === '["b","c"]', `d got both outputs: ${output}`);
  check(await page.getByRole("button", { name: "Cancel run" }).count() === 0, "a finished run has no Cancel button");

  // A step's execution opens from the graph.
  await page.locator('#graph a:has(g.step[data-step="d"])').click();
  await page.waitForURL(/\/executions\/[0-9a-f]+$/);
  await page.locator("#execution-status", { hasText: "succeeded" }).waitFor();

  // Listed among the runs, filtered by workflow and status.
  await page.goto(`${base}/runs`);
  await page.getByLabel("Workflow").selectOption("diamond");
  await page.getByLabel("Status").selectOption("succeeded");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/\/runs\?workflow=diamond&status=succeeded/);
  const listed = page.locator(`#runs tr[data-run="${runUrl.split("/").pop()}"]`);
  check(await listed.getAttribute("data-status") === "succeeded", "the run is listed as succeeded");
  await shot(page, shots, "runs");
});
