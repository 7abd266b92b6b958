//! Walking-skeleton benchmark: prints
//! - warm invocation latency (p50 / p99) of `hello` with a 1 KiB event: compiled component
//!   cached, a fresh store and instance per invocation;
//! - events per second through the whole embedded path (HTTP in, gateway, executor, state
//!   router, SQLite), from the first POST until every execution is recorded.
//!
//! Run: `bash infra/scripts/build-examples.sh && cargo bench -p fx-tests --bench skeleton`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use fx_core::event::new_json_event;
use fx_core::execution::{ExecutionId, Invocation, ResolvedPackage};
use fx_core::limits::Limits;
use fx_core::package::PackageDigest;
use fx_core::testsupport::HandlerBuilder;
use fx_executor::{Executor, ExecutorSettings};
use fx_tests::{example_package, TestPlatform};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn warm_invocation_latency() {
    let dir = tempfile::tempdir().unwrap();
    let backends = fx_core::backends::BackendSettings::default()
        .build(dir.path())
        .await
        .unwrap();
    let bytes = example_package("hello");
    let digest = PackageDigest::of(&bytes);
    backends.packages.put(&digest, bytes.into()).await.unwrap();
    let settings = ExecutorSettings {
        cache_dir: dir.path().join("cache"),
        ..ExecutorSettings::default()
    };
    let executor =
        Executor::new(settings, backends.packages.clone(), backends.bus.clone()).unwrap();
    let name = "x".repeat(1000);
    let event = new_json_event(
        "bench-1",
        "/bench",
        "com.example.hello",
        json!({ "name": name }),
    )
    .unwrap();
    let invocation = Invocation {
        execution_id: ExecutionId::for_event(&event, "hello"),
        handler: HandlerBuilder::new("hello")
            .event_type("com.example.hello")
            .package("hello")
            .build(),
        package: ResolvedPackage {
            name: "hello".into(),
            version: "1.0.0".into(),
            digest,
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
    };
    let cold = Instant::now();
    assert!(executor.invoke(&invocation).await.result.is_ok());
    let cold = cold.elapsed();
    for _ in 0..200 {
        executor.invoke(&invocation).await;
    }
    let n = 3000;
    let mut run = Vec::with_capacity(n);
    let mut end_to_end = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let outcome = executor.invoke(&invocation).await;
        end_to_end.push(start.elapsed());
        assert!(outcome.result.is_ok());
        run.push(outcome.duration);
    }
    run.sort();
    end_to_end.sort();
    println!("hello, 1 KiB event, fresh instance per invocation ({n} runs):");
    println!("  first invocation (fetch + compile):   {cold:?}");
    println!(
        "  instantiate + call          p50 {:>9.1?}  p99 {:>9.1?}",
        percentile(&run, 0.5),
        percentile(&run, 0.99)
    );
    println!(
        "  invoke() incl. cache lookup p50 {:>9.1?}  p99 {:>9.1?}",
        percentile(&end_to_end, 0.5),
        percentile(&end_to_end, 0.99)
    );
}

async fn embedded_path_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), true).await;
    // Warm up: compile once.
    fx.emit("warm", "com.example.hello", json!({"name": "warm"}))
        .await;
    fx.wait_finished("hello", 1, Duration::from_secs(60)).await;
    let n = 2000usize;
    let start = Instant::now();
    let fx = Arc::new(fx);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let fx = fx.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..n).step_by(8) {
                fx.emit(
                    &format!("bench-{i}"),
                    "com.example.hello",
                    json!({"name": i}),
                )
                .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let posted = start.elapsed();
    loop {
        let count = count_succeeded(&fx).await;
        if count > n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "only {count} of {n} finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = start.elapsed();
    println!("embedded path, {n} events over HTTP (8 concurrent posters), hello handler:");
    println!("  all posted after {posted:.2?}; all recorded succeeded after {total:.2?}");
    println!(
        "  throughput: {:.0} events/s",
        n as f64 / total.as_secs_f64()
    );
    match Arc::try_unwrap(fx) {
        Ok(fx) => fx.stop().await,
        Err(_) => panic!("platform still shared"),
    }
}

async fn count_succeeded(fx: &TestPlatform) -> usize {
    let mut count = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => {
                format!("/api/v1/executions?handler=hello&status=succeeded&limit=500&cursor={c}")
            }
            None => "/api/v1/executions?handler=hello&status=succeeded&limit=500".to_string(),
        };
        let (_, v) = fx.get(&path).await;
        count += v["items"].as_array().map_or(0, Vec::len);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return count,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    warm_invocation_latency().await;
    embedded_path_throughput().await;
}
