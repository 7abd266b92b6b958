//! The workflow benchmark (issue 18): what the platform adds between the steps of a run, and
//! how long runs of 200 steps take in different shapes. Prints its figures; asserts only that
//! every run succeeded.
//!
//! ```text
//! cargo build --release --bin ferrisfx && bash infra/scripts/build-examples.sh
//! eval "$(bash infra/scripts/start-kafka.sh)"; eval "$(bash infra/scripts/start-postgres.sh)"
//! FX_BENCH_PROFILE=release cargo bench -p fx-tests --bench workflows        # both
//! cargo bench -p fx-tests --bench workflows -- dev                          # one of them
//! ```
//!
//! Each part runs on two platforms:
//!
//! - `dev`: the platform in this process (`ferrisfx dev`: embedded bus, SQLite);
//! - `kafka`: `ferrisfx server`, `gateway` and `executor` as processes on the broker of
//!   `FX_TEST_KAFKA`, with the state in the PostgreSQL of `FX_TEST_POSTGRES` (skipped with a
//!   message when either is unset). The processes are the binary of `FX_BENCH_PROFILE`
//!   (`debug` by default, as the other benches). `FX_BENCH_KAFKA_EXTRA="fetch.wait.max.ms=50"`
//!   sets librdkafka properties of every client, as in the pipeline bench: each hand-over
//!   between steps crosses two topics (`fx.state` to the state router, `fx.invocations.*` to
//!   the executor), and tansu, the test broker, answers a fetch only after about half of
//!   `fetch.wait.max.ms` (see docs/performance.md).
//!
//! The parts, after a warm-up run (components compiled, consumers joined):
//!
//! 1. **Between dependent steps**: a chain of 50 `workflow-step` steps (no sleep),
//!    `FX_BENCH_CHAIN_RUNS` (3) runs (`FX_BENCH_CHAIN_LENGTH` changes the 50). Per pair of
//!    consecutive steps, the gap between the first one's function returning and the next
//!    one's function starting, from the functions' own wall clocks (`finished_ms`,
//!    `started_ms` in their outputs, 1 ms resolution), and the conductor's start of the next
//!    step (`started_at` of the run record) for comparison. Then the gap cut into hops from
//!    the records (µs): the executor publishing the step's log lines and `succeeded`
//!    (function end → execution finished), the state router storing it and the conductor
//!    recording the step (→ step `finished_at`), the conductor building and creating the next
//!    execution (→ its `created_at`), the bus and the executor's queue (→ its `started_at`),
//!    instantiation (→ the function's `started_ms`).
//! 2. **200 steps**: 20 layers × 10 steps, each depending on 2 or 3 steps of the layer before
//!    (fixed pattern); a chain of 200; 200 independent steps. These run `hello`, whose output
//!    does not grow with the graph, so that the figures are the platform's overhead alone.
//!    (The `workflow-step` example used to pass its dependencies' whole outputs on: along a
//!    chain its output nested two JSON levels deeper per step, until about step 60 an
//!    executor could not decode the invocation, and the run never finished. Now it passes on
//!    each dependency's output without its own `outputs`, and JSON deeper than 64 levels is
//!    refused where it would enter: the step fails with the reason.) Run `created_at` →
//!    `finished_at`, steps per second, the dependency hops from the records, and the
//!    conductor's and executor's work (functions run per execution: 1 each).
//! 3. **A map over 200 items** (`workflow-step`), joined by one step after it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use fx_tests::processes::Deployment;
use fx_tests::{Api, TestPlatform};
use serde_json::{json, Value};

/// How long one run may take before the bench gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} is not a number: {v}"))
        })
        .unwrap_or(default)
}

/// A platform's API, what to show when a run does not finish (the processes' logs), and the
/// conductor's and executor's work so far.
struct Target<'a> {
    api: &'a Api,
    logs: &'a dyn Fn() -> String,
    work: &'a dyn Fn() -> Work,
}

/// What the platform did, counted from its debug log lines: steps the conductor launched
/// (`step started`: a conductor that then loses the run's compare-and-swap has launched them
/// too, and the winner's executions are found again, not run twice), run updates lost to
/// another conductor, and function invocations that succeeded.
#[derive(Debug, Clone, Copy, Default)]
struct Work {
    launches: u64,
    conflicts: u64,
    invocations: u64,
}

const LAUNCH_LINE: &str = "step started";
const CONFLICT_LINE: &str = "another conductor moved the run first";
const INVOCATION_LINE: &str = "invocation succeeded";
/// The log filter that shows those lines.
const WORK_LOG: &str = "fx_core::workflow::conductor=debug,fx_executor::worker=debug";

impl Work {
    /// The work in `text` (log lines).
    fn in_text(text: &str) -> Work {
        let mut work = Work::default();
        for line in text.lines() {
            work.add_line(line);
        }
        work
    }

    fn add_line(&mut self, line: &str) {
        if line.contains(LAUNCH_LINE) {
            self.launches += 1;
        } else if line.contains(CONFLICT_LINE) {
            self.conflicts += 1;
        } else if line.contains(INVOCATION_LINE) {
            self.invocations += 1;
        }
    }

    fn since(self, before: Work) -> Work {
        Work {
            launches: self.launches - before.launches,
            conflicts: self.conflicts - before.conflicts,
            invocations: self.invocations - before.invocations,
        }
    }

    fn add(&mut self, other: Work) {
        self.launches += other.launches;
        self.conflicts += other.conflicts;
        self.invocations += other.invocations;
    }

    fn print(self, steps: usize, executions: usize) {
        println!(
            "    conductor: {} step launches for {steps} steps, {} run updates lost to another conductor; {} functions ran for {executions} executions",
            self.launches, self.conflicts, self.invocations
        );
    }
}

/// The work of the platform in this process, counted by [`CountingLog`].
static IN_PROCESS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn in_process_work() -> Work {
    Work {
        launches: IN_PROCESS[0].load(Ordering::Relaxed),
        conflicts: IN_PROCESS[1].load(Ordering::Relaxed),
        invocations: IN_PROCESS[2].load(Ordering::Relaxed),
    }
}

/// The log of this process: counts the work lines, prints the rest (`FX_TEST_LOG`, `warn` by
/// default, as the tests; of the two modules raised to `debug` for the count, only warnings
/// and errors) on stdout.
struct CountingLog;

impl Write for CountingLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut work = Work::default();
        for line in text.lines() {
            work.add_line(line);
        }
        for (counter, n) in IN_PROCESS
            .iter()
            .zip([work.launches, work.conflicts, work.invocations])
        {
            counter.fetch_add(n, Ordering::Relaxed);
        }
        let raised =
            text.contains("fx_core::workflow::conductor") || text.contains("fx_executor::worker");
        if !raised || text.contains(" WARN ") || text.contains(" ERROR ") {
            std::io::stdout().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Installs [`CountingLog`] as this process's log before the platform starts (its own
/// `try_init` then leaves it).
fn count_in_process_work() {
    let base = std::env::var("FX_TEST_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{base},{WORK_LOG}"
        )))
        .with_ansi(false)
        .with_writer(|| CountingLog)
        .init();
}

/// A step of a workflow definition running `package` after the steps `after`.
fn step(name: &str, package: &str, after: &[String]) -> Value {
    json!({
        "name": name,
        "package": {"name": package},
        "after": after.iter().map(|s| json!({"step": s})).collect::<Vec<_>>(),
    })
}

/// Creates workflow `name` with `steps`, asserting 201.
async fn create(t: &Target<'_>, name: &str, steps: Vec<Value>) {
    let body = json!({"name": name, "steps": steps});
    let (status, v) = t.api.post_json("/api/v1/workflows", &body).await;
    assert_eq!(status, 201, "creating workflow {name}: {v}");
}

/// A finished run: `GET /api/v1/runs/{id}` (the run and its outputs) and the detail of every
/// execution its steps started, by id.
struct Finished {
    run: Value,
    executions: HashMap<String, Value>,
    /// The platform's work from the start of the run until it was read.
    work: Work,
}

/// Starts a run of `workflow` with `input`, waits until it has finished (polling the run list,
/// which is small), asserts it succeeded, and reads it with its executions.
async fn run(t: &Target<'_>, workflow: &str, input: Value) -> Finished {
    let before = (t.work)();
    let (status, v) = t
        .api
        .post_json(
            &format!("/api/v1/workflows/{workflow}/runs"),
            &json!({ "input": input }),
        )
        .await;
    assert_eq!(status, 201, "starting {workflow}: {v}");
    let id = v["run"].as_str().unwrap().to_string();
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let (status, v) = t
            .api
            .get(&format!("/api/v1/runs?workflow={workflow}&limit=20"))
            .await;
        assert_eq!(status, 200, "{v}");
        let summary = v["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["id"] == id.as_str()).cloned())
            .unwrap_or_default();
        if summary["finished_at"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} of {workflow} did not finish within {RUN_TIMEOUT:?}: {summary}\n{}",
            (t.logs)()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, run) = t.api.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(status, 200, "{run}");
    if run["run"]["status"] != "succeeded" {
        let bad: Vec<&Value> = run["run"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] != "succeeded")
            .collect();
        panic!(
            "run {id} of {workflow} ended {}: {bad:#?}\n{}",
            run["run"]["status"],
            (t.logs)()
        );
    }
    let ids: Vec<String> = run["run"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["executions"].as_array().unwrap().iter())
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    let executions = stream::iter(ids)
        .map(|id| async move {
            let detail = t.api.execution(&id).await;
            (id, detail["execution"].clone())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let work = (t.work)().since(before);
    Finished {
        run,
        executions,
        work,
    }
}

/// A timestamp of a record, in milliseconds since the epoch (µs resolution).
fn ms(v: &Value) -> f64 {
    let at: DateTime<Utc> = v
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .parse()
        .unwrap();
    at.timestamp_micros() as f64 / 1000.0
}

/// One step of a finished run, in milliseconds since the epoch. A map step's executions as
/// one: the first start, the last end.
struct StepTimes {
    name: String,
    after: Vec<String>,
    /// The run record's `started_at` (stamped by the conductor once the step's invocations
    /// are published) and `finished_at` (when the conductor recorded how it ended).
    recorded_start: f64,
    recorded_end: f64,
    /// The executions' `created_at` (the conductor), `started_at` and `finished_at` (the
    /// executor's `started` and `succeeded` state events).
    created: f64,
    started: f64,
    finished: f64,
    /// The function's own clock (`workflow-step` only): `started_ms`, `finished_ms`.
    function: Option<(f64, f64)>,
}

impl Finished {
    fn created(&self) -> f64 {
        ms(&self.run["run"]["created_at"])
    }

    fn finished(&self) -> f64 {
        ms(&self.run["run"]["finished_at"])
    }

    fn steps(&self) -> Vec<StepTimes> {
        let definition = self.run["run"]["definition"]["steps"].as_array().unwrap();
        let outputs = &self.run["outputs"];
        self.run["run"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let name = s["name"].as_str().unwrap().to_string();
                let def = definition.iter().find(|d| d["name"] == name).unwrap();
                let after = def["after"]
                    .as_array()
                    .map(|edges| {
                        edges
                            .iter()
                            .map(|e| e["step"].as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                let executions: Vec<&Value> = s["executions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|id| &self.executions[id.as_str().unwrap()])
                    .collect();
                let fold = |key: &str, first: bool| {
                    let all = executions.iter().map(|e| ms(&e[key]));
                    if first {
                        all.fold(f64::INFINITY, f64::min)
                    } else {
                        all.fold(f64::NEG_INFINITY, f64::max)
                    }
                };
                let output = &outputs[name.as_str()];
                let items: Vec<&Value> = match output {
                    Value::Array(items) => items.iter().collect(),
                    one => vec![one],
                };
                let function = items
                    .iter()
                    .map(|o| Some((o["started_ms"].as_f64()?, o["finished_ms"].as_f64()?)))
                    .collect::<Option<Vec<_>>>()
                    .filter(|all| !all.is_empty())
                    .map(|all| {
                        all.iter()
                            .fold((f64::INFINITY, f64::NEG_INFINITY), |acc, x| {
                                (acc.0.min(x.0), acc.1.max(x.1))
                            })
                    });
                StepTimes {
                    name,
                    after,
                    recorded_start: ms(&s["started_at"]),
                    recorded_end: ms(&s["finished_at"]),
                    created: fold("created_at", true),
                    started: fold("started_at", true),
                    finished: fold("finished_at", false),
                    function,
                }
            })
            .collect()
    }
}

/// A step that waited, and the dependency that ended last: the times of the hand-over.
struct Hop {
    /// The dependency's function end (its clock), execution end, end in the run record.
    function_end: Option<f64>,
    execution_finished: f64,
    recorded: f64,
    /// The step's execution created, start in the run record, execution started, function
    /// start (its clock).
    created: f64,
    recorded_start: f64,
    execution_started: f64,
    function_start: Option<f64>,
}

fn hops(steps: &[StepTimes]) -> Vec<Hop> {
    let by_name: HashMap<&str, &StepTimes> = steps.iter().map(|s| (s.name.as_str(), s)).collect();
    steps
        .iter()
        .filter(|s| !s.after.is_empty())
        .map(|next| {
            let prev = next
                .after
                .iter()
                .map(|d| by_name[d.as_str()])
                .max_by(|a, b| a.finished.total_cmp(&b.finished))
                .unwrap();
            Hop {
                function_end: prev.function.map(|f| f.1),
                execution_finished: prev.finished,
                recorded: prev.recorded_end,
                created: next.created,
                recorded_start: next.recorded_start,
                execution_started: next.started,
                function_start: next.function.map(|f| f.0),
            }
        })
        .collect()
}

/// `q` of `sorted` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn print_header(indent: &str) {
    println!(
        "{indent}{:<58} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "(ms)", "p50", "p90", "p99", "max", "mean"
    );
}

fn print_row(indent: &str, name: &str, mut values: Vec<f64>) {
    if values.is_empty() {
        return;
    }
    values.sort_by(f64::total_cmp);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    println!(
        "{indent}{name:<58} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        quantile(&values, 0.5),
        quantile(&values, 0.9),
        quantile(&values, 0.99),
        values[values.len() - 1],
        mean
    );
}

/// The hand-over between dependent steps, in rows: the whole gap, then its hops.
fn print_hops(hops: &[Hop]) {
    if hops.is_empty() {
        return;
    }
    let of = |f: &dyn Fn(&Hop) -> Option<f64>| -> Vec<f64> { hops.iter().filter_map(f).collect() };
    println!(
        "    between a step's end and the next step's start ({} hand-overs):",
        hops.len()
    );
    print_header("      ");
    print_row(
        "      ",
        "function end → next function start (function clocks)",
        of(&|h| Some(h.function_start? - h.function_end?)),
    );
    print_row(
        "      ",
        "function end → next step started_at (run record)",
        of(&|h| Some(h.recorded_start - h.function_end?)),
    );
    print_row(
        "      ",
        "execution finished → next execution started (records)",
        of(&|h| Some(h.execution_started - h.execution_finished)),
    );
    println!("      where it goes:");
    print_row(
        "      ",
        "  function end → execution finished (logs, succeeded)",
        of(&|h| Some(h.execution_finished - h.function_end?)),
    );
    print_row(
        "      ",
        "  execution finished → step recorded (router, conductor)",
        of(&|h| Some(h.recorded - h.execution_finished)),
    );
    print_row(
        "      ",
        "  step recorded → next execution created (conductor)",
        of(&|h| Some(h.created - h.recorded)),
    );
    print_row(
        "      ",
        "  next execution created → started (bus, executor queue)",
        of(&|h| Some(h.execution_started - h.created)),
    );
    print_row(
        "      ",
        "  execution started → function start (instantiate)",
        of(&|h| Some(h.function_start? - h.execution_started)),
    );
    print_row(
        "      ",
        "  (next execution created → step started_at in the record)",
        of(&|h| Some(h.recorded_start - h.created)),
    );
}

/// The run's totals: created → finished, steps per second, and where the run's time went
/// around the steps.
fn print_totals(f: &Finished, steps: &[StepTimes], units: usize, unit: &str) {
    let (created, finished) = (f.created(), f.finished());
    let total = finished - created;
    let first_start = steps
        .iter()
        .map(|s| s.started)
        .fold(f64::INFINITY, f64::min);
    let last_start = steps
        .iter()
        .map(|s| s.started)
        .fold(f64::NEG_INFINITY, f64::max);
    let last_end = steps
        .iter()
        .map(|s| s.finished)
        .fold(f64::NEG_INFINITY, f64::max);
    let busy: f64 = f
        .executions
        .values()
        .map(|e| e["duration_us"].as_f64().unwrap_or(0.0) / 1000.0)
        .sum();
    println!(
        "    run created → finished {:>9.1} ms  {:>7.1} {unit}/s  ({:.2} ms per {unit})",
        total,
        units as f64 / (total / 1000.0),
        total / units as f64
    );
    println!(
        "    created → first execution started {:.1} ms, → last started {:.1} ms; last finished → run finished {:.1} ms",
        first_start - created,
        last_start - created,
        finished - last_end
    );
    println!(
        "    inside the functions (sum of {} execution durations) {busy:.1} ms",
        f.executions.len()
    );
    f.work.print(steps.len(), f.executions.len());
}

/// Part 1: chains of `length` `workflow-step` steps, `runs` times.
async fn chain_of_workflow_steps(t: &Target<'_>, length: usize, runs: usize) {
    let names: Vec<String> = (0..length).map(|i| format!("c{i:03}")).collect();
    let steps = names
        .iter()
        .enumerate()
        .map(|(i, n)| step(n, "workflow-step", &names[i.saturating_sub(1)..i]))
        .collect();
    let workflow = format!("chain{length}");
    create(t, &workflow, steps).await;
    println!("  1. a chain of {length} workflow-step steps (no sleep), {runs} runs:");
    let mut all = Vec::new();
    let mut work = Work::default();
    for i in 0..runs {
        let f = run(t, &workflow, json!({})).await;
        work.add(f.work);
        let steps = f.steps();
        let function: Vec<(f64, f64)> = steps.iter().filter_map(|s| s.function).collect();
        let inside: f64 = function.iter().map(|(a, b)| b - a).sum();
        let (created, finished) = (f.created(), f.finished());
        println!(
            "    run {}: created → finished {:>8.1} ms ({:.2} ms per step); first function start → last function end {:.0} ms; inside the functions {inside:.0} ms",
            i + 1,
            finished - created,
            (finished - created) / length as f64,
            function.last().unwrap().1 - function[0].0,
        );
        all.extend(hops(&steps));
    }
    work.print(length * runs, length * runs);
    print_hops(&all);
}

/// Part 2: 200 steps as a layered graph, a chain and one layer; `hello` steps.
async fn shapes_of_200(t: &Target<'_>) {
    let (layers, width) = (20usize, 10usize);
    let name = |l: usize, s: usize| format!("l{l:02}s{s}");
    let mut graph = Vec::new();
    let mut edges = 0;
    for l in 0..layers {
        for s in 0..width {
            let after: Vec<String> = if l == 0 {
                Vec::new()
            } else {
                let mut deps = vec![s, (s + 1) % width];
                if s % 2 == 0 {
                    deps.push((s + 5) % width);
                }
                deps.into_iter().map(|d| name(l - 1, d)).collect()
            };
            edges += after.len();
            graph.push(step(&name(l, s), "hello", &after));
        }
    }
    create(t, "graph200", graph).await;
    let chain: Vec<String> = (0..200).map(|i| format!("c{i:03}")).collect();
    let chain_steps = chain
        .iter()
        .enumerate()
        .map(|(i, n)| step(n, "hello", &chain[i.saturating_sub(1)..i]))
        .collect();
    create(t, "chain200", chain_steps).await;
    let wide = (0..200)
        .map(|i| step(&format!("w{i:03}"), "hello", &[]))
        .collect();
    create(t, "wide200", wide).await;

    println!("  2a. 200 hello steps: {layers} layers × {width}, each on 2–3 steps of the layer before ({edges} edges):");
    let f = run(t, "graph200", json!({})).await;
    let steps = f.steps();
    print_totals(&f, &steps, 200, "step");
    println!(
        "    per layer (critical path {layers} steps): {:.1} ms",
        (f.finished() - f.created()) / layers as f64
    );
    print_hops(&hops(&steps));

    println!("  2b. a chain of 200 hello steps:");
    let f = run(t, "chain200", json!({})).await;
    let steps = f.steps();
    print_totals(&f, &steps, 200, "step");
    let all = hops(&steps);
    let gaps = |part: &[Hop]| -> Vec<f64> {
        part.iter()
            .map(|h| h.execution_started - h.execution_finished)
            .collect()
    };
    print_hops(&all);
    print_header("      ");
    print_row(
        "      ",
        "execution finished → next started: first 50 hand-overs",
        gaps(&all[..50]),
    );
    print_row(
        "      ",
        "execution finished → next started: last 50 hand-overs",
        gaps(&all[all.len() - 50..]),
    );

    println!("  2c. 200 independent hello steps (one layer):");
    let f = run(t, "wide200", json!({})).await;
    let steps = f.steps();
    print_totals(&f, &steps, 200, "step");
    let mut created: Vec<f64> = steps.iter().map(|s| s.created).collect();
    created.sort_by(f64::total_cmp);
    println!(
        "    the conductor created the 200 executions over {:.1} ms (one launch each, in one pass)",
        created[created.len() - 1] - created[0]
    );
}

/// Part 3: a map over `n` items of `workflow-step`, joined by one step.
async fn map_over(t: &Target<'_>, n: usize) {
    create(
        t,
        "map200",
        vec![
            json!({"name": "each", "package": {"name": "workflow-step"}, "map": "/input/items"}),
            step("join", "workflow-step", &["each".to_string()]),
        ],
    )
    .await;
    let items: Vec<usize> = (0..n).collect();
    println!("  3. a map over {n} items (workflow-step), then one step joining them:");
    let f = run(t, "map200", json!({ "items": items })).await;
    let steps = f.steps();
    print_totals(&f, &steps, n, "item");
    let each = steps.iter().find(|s| s.name == "each").unwrap();
    let mut created: Vec<f64> = f
        .executions
        .values()
        .filter(|e| e["handler"] == "workflow.map200.each")
        .map(|e| ms(&e["created_at"]))
        .collect();
    created.sort_by(f64::total_cmp);
    let mut started: Vec<f64> = f
        .executions
        .values()
        .filter(|e| e["handler"] == "workflow.map200.each")
        .map(|e| ms(&e["started_at"]) - f.created())
        .collect();
    started.sort_by(f64::total_cmp);
    println!(
        "    items: executions created over {:.1} ms; started {:.1} ms (first) to {:.1} ms (last) after the run was created; all finished after {:.1} ms",
        created[created.len() - 1] - created[0],
        started[0],
        started[started.len() - 1],
        each.finished - f.created(),
    );
    print_hops(&hops(&steps));
}

/// Warm-up: one run through both packages, so that their components are compiled and every
/// consumer has joined before anything is measured.
async fn warm(t: &Target<'_>) {
    create(
        t,
        "warm",
        vec![
            step("a", "workflow-step", &[]),
            step("b", "hello", &["a".to_string()]),
        ],
    )
    .await;
    let started = Instant::now();
    run(t, "warm", json!({})).await;
    println!(
        "  warm-up run (compiles both components): {:.2?}",
        started.elapsed()
    );
}

async fn scenarios(t: &Target<'_>) {
    t.api.upload_example("workflow-step").await;
    t.api.upload_example("hello").await;
    warm(t).await;
    chain_of_workflow_steps(
        t,
        env_number("FX_BENCH_CHAIN_LENGTH", 50),
        env_number("FX_BENCH_CHAIN_RUNS", 3),
    )
    .await;
    shapes_of_200(t).await;
    map_over(t, 200).await;
}

async fn dev() {
    count_in_process_work();
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    println!("workflows: the platform in this process (embedded bus, SQLite)");
    let started = Instant::now();
    let nothing = String::new;
    scenarios(&Target {
        api: &fx,
        logs: &nothing,
        work: &in_process_work,
    })
    .await;
    println!("  ({:.1?})", started.elapsed());
    fx.stop().await;
}

async fn kafka() {
    let (Ok(kafka), Ok(postgres)) = (
        std::env::var("FX_TEST_KAFKA"),
        std::env::var("FX_TEST_POSTGRES"),
    ) else {
        println!("workflows over Kafka and PostgreSQL: skipped (set FX_TEST_KAFKA and FX_TEST_POSTGRES: eval \"$(bash infra/scripts/start-kafka.sh)\"; eval \"$(bash infra/scripts/start-postgres.sh)\")");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("wfbench{}", Utc::now().timestamp_micros());
    let mut toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{prefix}.\"\npartitions = 4\n\n[backends.state]\nkind = \"postgres\"\nurl = \"{postgres}\"\nschema = \"{prefix}\"\n\n"
    );
    // As the pipeline bench: `FX_BENCH_KAFKA_EXTRA="fetch.wait.max.ms=50"`, librdkafka
    // properties for every client of the platform (the bus's `extra`), to compare tunings.
    let extra = std::env::var("FX_BENCH_KAFKA_EXTRA").unwrap_or_default();
    if !extra.is_empty() {
        toml.push_str("[backends.bus.extra]\n");
        for pair in extra.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .expect("FX_BENCH_KAFKA_EXTRA: key=value");
            toml.push_str(&format!("{key:?} = {value:?}\n"));
        }
        toml.push('\n');
    }
    let mut d = Deployment::new(dir.path(), &toml);
    let log = format!("info,{WORK_LOG}");
    let env = [("FX_LOG", log.as_str())];
    d.start_with_env("server", &[], &env);
    d.wait_ready().await;
    d.start_with_env("gateway", &[], &env);
    d.start_with_env("executor", &[], &env);
    let profile = std::env::var("FX_BENCH_PROFILE").unwrap_or_else(|_| "debug".into());
    let tuning = if extra.is_empty() {
        String::new()
    } else {
        format!(", librdkafka {extra}")
    };
    println!(
        "workflows: server + gateway + executor ({profile} binary) on Kafka ({kafka}{tuning}), state in PostgreSQL"
    );
    let started = Instant::now();
    let logs = || d.all_logs();
    let work = || {
        let mut work = Work::default();
        for i in 0..d.processes.len() {
            work.add(Work::in_text(&d.log_of(i)));
        }
        work
    };
    let api = Api::new(d.base.clone());
    scenarios(&Target {
        api: &api,
        logs: &logs,
        work: &work,
    })
    .await;
    println!("  ({:.1?})", started.elapsed());
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if only.as_deref().is_none_or(|p| p == "dev") {
        dev().await;
    }
    if only.as_deref().is_none_or(|p| p == "kafka") {
        kafka().await;
    }
}
