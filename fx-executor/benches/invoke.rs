//! Executor benchmark: prints the latency of one invocation of `hello` (1 KiB event, compiled
//! component cached, a fresh store and instance each time) run one at a time, the throughput
//! of many at once, and the cost of the compile cache's cold paths.
//!
//! Run: `bash infra/scripts/build-examples.sh && cargo bench -p fx-executor --bench invoke`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fx_core::bus::embedded::EmbeddedBus;
use fx_core::event::new_json_event;
use fx_core::execution::{ExecutionId, Invocation, ResolvedPackage};
use fx_core::handler::{Filter, Handler, Limits, PackageRef};
use fx_core::objects::local::LocalPackageStore;
use fx_core::objects::PackageStore;
use fx_core::package::PackageDigest;
use fx_executor::{Executor, ExecutorSettings};
use serde_json::json;

const SEQUENTIAL: usize = 2_000;
const CONCURRENT: usize = 4_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn invocation(digest: &PackageDigest) -> Invocation {
    let event = new_json_event(
        "bench-1",
        "/bench",
        "com.example.hello",
        json!({ "name": "x".repeat(1000) }),
    )
    .unwrap();
    Invocation {
        execution_id: ExecutionId::for_event(&event, "hello"),
        handler: Handler {
            name: "hello".into(),
            description: String::new(),
            filter: Filter::type_is("com.example.hello"),
            package: PackageRef {
                name: "hello".into(),
                version: "latest".into(),
            },
            pool: "default".into(),
            limits: Default::default(),
            retry: Default::default(),
            enabled: true,
            reuse_instances: false,
        },
        package: ResolvedPackage {
            name: "hello".into(),
            version: "1.0.0".into(),
            digest: digest.clone(),
        },
        event,
        attempt: 1,
        limits: Limits::DEFAULT,
        dispatched_at: chrono::Utc::now(),
        attempt_base: 0,
        not_before: None,
    }
}

fn executor(packages: &Arc<LocalPackageStore>, cache: &Path) -> Executor {
    let settings = ExecutorSettings {
        cache_dir: cache.to_path_buf(),
        ..ExecutorSettings::default()
    };
    Executor::new(settings, packages.clone(), Arc::new(EmbeddedBus::new(16))).unwrap()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dist/hello.fxpkg");
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
    let inv = invocation(&digest);

    let cold = executor(&packages, &dir.path().join("cache"));
    let start = Instant::now();
    cold.invoke(&inv).await.result.unwrap();
    println!(
        "first invocation (fetch + compile + run): {:?}",
        start.elapsed()
    );
    drop(cold);
    let executor = Arc::new(executor(&packages, &dir.path().join("cache")));
    let start = Instant::now();
    executor.invoke(&inv).await.result.unwrap();
    println!(
        "first invocation of a new executor (compiled component from disk + run): {:?}",
        start.elapsed()
    );

    let mut total = Vec::with_capacity(SEQUENTIAL);
    let mut run = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let start = Instant::now();
        let outcome = executor.invoke(&inv).await;
        total.push(start.elapsed());
        run.push(outcome.duration);
        outcome.result.unwrap();
    }
    total.sort();
    run.sort();
    println!(
        "hello, one at a time ({SEQUENTIAL}): invoke p50 {:?} p99 {:?}; instantiate + call p50 {:?} p99 {:?}",
        percentile(&total, 0.5),
        percentile(&total, 0.99),
        percentile(&run, 0.5),
        percentile(&run, 0.99),
    );

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(CONCURRENT);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        executor.settings().max_concurrency,
    ));
    for _ in 0..CONCURRENT {
        let (executor, inv, permit) = (
            executor.clone(),
            inv.clone(),
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
    let elapsed = start.elapsed();
    println!(
        "hello, {} at once ({CONCURRENT}): {:.0} invocations/s",
        executor.settings().max_concurrency,
        CONCURRENT as f64 / elapsed.as_secs_f64()
    );
}
