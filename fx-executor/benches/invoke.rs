//! Executor benchmark: the cost of one invocation of a Rust echo function (`misbehave`'s
//! `fx.test.echo-size`, a 1 KiB event) in every mode the executor has, against a process
//! spawned per event doing the same echo, in one table:
//!
//! - fresh instance (a new `Store`, instantiate, call) with the pooling allocator and epoch
//!   interruption on, and the same with on-demand allocation;
//! - a warm instance reused from the last event (`reuse_instances`);
//! - cold start from a package never compiled (fetch from the local store, compile, run) and
//!   from the compiled cache on disk (a new executor: deserialize, link, run);
//! - a process per event: `cat` spawned, the event written to its stdin and read back;
//! - invocations per second with every core busy (fresh instances, `max_concurrency` at once).
//!
//! Run: `bash infra/scripts/build-examples.sh && cargo bench -p fx-executor --bench invoke`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fx_core::bus::embedded::EmbeddedBus;
use fx_core::event::{new_json_event, Event};
use fx_core::execution::{ExecutionId, Invocation, ResolvedPackage};
use fx_core::limits::Limits;
use fx_core::objects::local::LocalPackageStore;
use fx_core::objects::PackageStore;
use fx_core::package::PackageDigest;
use fx_core::testsupport::HandlerBuilder;
use fx_executor::{Allocator, Executor, ExecutorSettings};
use serde_json::json;

/// Invocations measured one at a time per mode.
const SEQUENTIAL: usize = 5_000;
/// Processes spawned for the baseline.
const PROCESSES: usize = 300;
/// Cold starts measured per kind.
const COLD: usize = 20;
/// Invocations for the throughput figure.
const CONCURRENT: usize = 20_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A 1 KiB event for the echo.
fn event(id: &str) -> Event {
    new_json_event(
        id,
        "/bench",
        "fx.test.echo-size",
        json!({ "payload": "x".repeat(1000) }),
    )
    .unwrap()
}

fn invocation(digest: &PackageDigest, reuse: bool) -> Invocation {
    let event = event("bench-1");
    Invocation {
        execution_id: ExecutionId::for_event(&event, "echo"),
        handler: HandlerBuilder::new("echo")
            .event_type("fx.test.echo-size")
            .package("misbehave")
            .reuse_instances(reuse)
            .build(),
        package: ResolvedPackage {
            name: "misbehave".into(),
            version: "1.0.0".into(),
            digest: digest.clone(),
        },
        event,
        attempt: 1,
        limits: Limits::DEFAULT,
        dispatched_at: chrono::Utc::now(),
        attempt_base: 0,
        publish_output: true,
        trace: None,
        not_before: None,
        grants: Default::default(),
    }
}

fn executor(packages: &Arc<LocalPackageStore>, cache: &Path, allocator: Allocator) -> Executor {
    let settings = ExecutorSettings {
        cache_dir: cache.to_path_buf(),
        allocator,
        ..ExecutorSettings::default()
    };
    Executor::new(settings, packages.clone(), Arc::new(EmbeddedBus::new(16))).unwrap()
}

/// p50 and p99 of the instantiate + call time (as the executor measures it) of `inv`, run
/// one at a time.
async fn one_at_a_time(executor: &Executor, inv: &Invocation) -> (Duration, Duration) {
    let mut runs = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let outcome = executor.invoke(inv).await;
        outcome.result.unwrap();
        runs.push(outcome.duration);
    }
    runs.sort();
    (percentile(&runs, 0.5), percentile(&runs, 0.99))
}

/// The baseline: a process per event, the 1 KiB event through its stdin and stdout.
fn process_per_event() -> (Duration, Duration) {
    let payload = serde_json::to_vec(&event("bench-1")).unwrap();
    let mut runs = Vec::with_capacity(PROCESSES);
    for _ in 0..PROCESSES {
        let start = Instant::now();
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning cat");
        child.stdin.take().unwrap().write_all(&payload).unwrap();
        let mut echoed = Vec::with_capacity(payload.len());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut echoed)
            .unwrap();
        child.wait().unwrap();
        runs.push(start.elapsed());
        assert_eq!(echoed.len(), payload.len());
    }
    runs.sort();
    (percentile(&runs, 0.5), percentile(&runs, 0.99))
}

fn row(what: &str, p50: Duration, p99: Duration, note: &str) {
    println!(
        "| {what} | {:.1} µs | {:.1} µs | {note} |",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dist/misbehave.fxpkg");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run infra/scripts/build-examples.sh first",
            path.display()
        )
    });
    let digest = PackageDigest::of(&bytes);
    let packages = Arc::new(
        LocalPackageStore::open(&dir.path().join("packages"))
            .await
            .unwrap(),
    );
    packages.put(&digest, bytes.into()).await.unwrap();
    let fresh = invocation(&digest, false);
    let warm = invocation(&digest, true);

    // Cold starts: a new cache directory each time (compile), then a new executor on a
    // compiled cache (deserialize from disk). Each figure is the first invocation of a new
    // executor: building the executor comes before the clock starts, and the one before is
    // dropped (its engine and pool freed) before that.
    let mut compiled = Vec::new();
    let mut from_disk = Vec::new();
    for n in 0..COLD {
        let cache = dir.path().join(format!("cache-{n}"));
        let cold = executor(&packages, &cache, Allocator::Pooling);
        let start = Instant::now();
        cold.invoke(&fresh).await.result.unwrap();
        compiled.push(start.elapsed());
        drop(cold);
        let again = executor(&packages, &cache, Allocator::Pooling);
        let start = Instant::now();
        again.invoke(&fresh).await.result.unwrap();
        from_disk.push(start.elapsed());
    }
    compiled.sort();
    from_disk.sort();

    let pooled = Arc::new(executor(
        &packages,
        &dir.path().join("cache-0"),
        Allocator::Pooling,
    ));
    let on_demand = executor(&packages, &dir.path().join("cache-0"), Allocator::OnDemand);
    pooled.invoke(&fresh).await.result.unwrap();
    on_demand.invoke(&fresh).await.result.unwrap();
    let (fresh_p50, fresh_p99) = one_at_a_time(&pooled, &fresh).await;
    let (demand_p50, demand_p99) = one_at_a_time(&on_demand, &fresh).await;
    let (warm_p50, warm_p99) = one_at_a_time(&pooled, &warm).await;
    let (process_p50, process_p99) = process_per_event();

    let start = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(
        pooled.settings().max_concurrency,
    ));
    let mut tasks = Vec::with_capacity(CONCURRENT);
    for _ in 0..CONCURRENT {
        let (executor, inv, permit) = (
            pooled.clone(),
            fresh.clone(),
            slots.clone().acquire_owned().await.unwrap(),
        );
        tasks.push(tokio::spawn(async move {
            let ok = executor.invoke(&inv).await.result.is_ok();
            drop(permit);
            ok
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let throughput = CONCURRENT as f64 / start.elapsed().as_secs_f64();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("Rust echo, 1 KiB event, {cores} cores ({SEQUENTIAL} invocations per row, {PROCESSES} processes, {COLD} cold starts)");
    println!();
    println!("| mode | p50 | p99 | note |");
    println!("| --- | --- | --- | --- |");
    row(
        "fresh instance, pooling allocator",
        fresh_p50,
        fresh_p99,
        "Store + instantiate + call, epoch interruption and fuel on",
    );
    row(
        "fresh instance, on-demand allocation",
        demand_p50,
        demand_p99,
        "the same without the pool",
    );
    row(
        "warm instance reused",
        warm_p50,
        warm_p99,
        "call only (`reuse_instances`)",
    );
    row(
        "cold start, not compiled",
        percentile(&compiled, 0.5),
        percentile(&compiled, 0.99),
        "compile + write the cache + run",
    );
    row(
        "cold start, compiled cache",
        percentile(&from_disk, 0.5),
        percentile(&from_disk, 0.99),
        "new executor: deserialize from disk + link + run",
    );
    row(
        "process per event (baseline)",
        process_p50,
        process_p99,
        "`cat` spawned, event through stdin/stdout",
    );
    println!();
    println!(
        "process per event / fresh instance (p50): {:.0}x",
        process_p50.as_secs_f64() / fresh_p50.as_secs_f64()
    );
    println!(
        "throughput, fresh instances, {} at once on {cores} cores: {throughput:.0} invocations/s",
        pooled.settings().max_concurrency
    );
}
