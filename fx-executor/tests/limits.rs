//! The executor against the example functions: outcomes, limits and the compile cache.
//! Needs `bash infra/scripts/build-examples.sh` (the test command runs it first).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fx_core::backends::{BackendSettings, Backends};
use fx_core::event::new_json_event;
use fx_core::execution::{ExecutionId, FailureKind, Invocation, ResolvedPackage};
use fx_core::handler::{Filter, Handler, LimitOverrides, Limits, PackageRef};
use fx_core::package::PackageDigest;
use fx_executor::{Executor, ExecutorSettings};
use serde_json::json;

fn example(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/dist/{name}.fxpkg"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run infra/scripts/build-examples.sh first",
            path.display()
        )
    })
}

async fn setup(dir: &Path, package: &str) -> (Backends, Executor, PackageDigest) {
    let backends = BackendSettings::default()
        .build(&dir.join("data"))
        .await
        .unwrap();
    let bytes = example(package);
    let digest = PackageDigest::of(&bytes);
    backends.packages.put(&digest, bytes.into()).await.unwrap();
    let executor = executor(&backends, &dir.join("cache"));
    (backends, executor, digest)
}

fn executor(backends: &Backends, cache: &Path) -> Executor {
    let settings = ExecutorSettings {
        cache_dir: cache.to_path_buf(),
        ..ExecutorSettings::default()
    };
    Executor::new(settings, backends.packages.clone(), backends.bus.clone()).unwrap()
}

fn invocation(
    digest: &PackageDigest,
    event_type: &str,
    id: &str,
    limits: LimitOverrides,
) -> Invocation {
    let event = new_json_event(id, "/tests", event_type, json!({"name": "test"})).unwrap();
    let handler = Handler {
        name: "h".into(),
        description: String::new(),
        filter: Filter::type_is(event_type),
        package: PackageRef {
            name: "p".into(),
            version: "latest".into(),
        },
        pool: "default".into(),
        limits: limits.clone(),
        retry: Default::default(),
        enabled: true,
    };
    Invocation {
        execution_id: ExecutionId::for_event(&event, "h"),
        handler,
        package: ResolvedPackage {
            name: "p".into(),
            version: "1.0.0".into(),
            digest: digest.clone(),
        },
        event,
        attempt: 1,
        limits: Limits::resolve(&LimitOverrides::default(), &limits),
        dispatched_at: chrono::Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_returns_its_greeting_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, executor, digest) = setup(dir.path(), "hello").await;
    let outcome = executor
        .invoke(&invocation(
            &digest,
            "com.example.hello",
            "1",
            Default::default(),
        ))
        .await;
    let output = outcome.result.unwrap();
    assert_eq!(output.len(), 1);
    assert_eq!(
        fx_core::event::attribute(&output[0], "type").as_deref(),
        Some("com.ferrisfx.hello.greeted")
    );
    assert!(outcome
        .logs
        .iter()
        .any(|l| l.message.contains("hello from FerrisFX")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaviour_fails_with_the_limit_or_trap_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, executor, digest) = setup(dir.path(), "misbehave").await;
    let limits = LimitOverrides {
        timeout_ms: Some(300),
        memory_mb: Some(32),
        max_output_bytes: Some(256 * 1024),
        max_log_bytes: Some(64 * 1024),
        ..Default::default()
    };
    let cases = [
        ("fx.test.trap", FailureKind::Trap, "unreachable"),
        (
            "fx.test.loop",
            FailureKind::Timeout,
            "timed out after 300 ms",
        ),
        (
            "fx.test.membomb",
            FailureKind::MemoryLimit,
            "memory limit of 32 MiB exceeded",
        ),
        ("fx.test.recurse", FailureKind::Trap, "stack overflow"),
        (
            "fx.test.output-flood",
            FailureKind::OutputLimit,
            "output exceeded 262144 bytes",
        ),
        (
            "fx.test.log-flood",
            FailureKind::OutputLimit,
            "log volume exceeded 65536 bytes",
        ),
        (
            "fx.test.error",
            FailureKind::FunctionError,
            "requested failure",
        ),
    ];
    let executor = Arc::new(executor);
    let mut tasks = Vec::new();
    for (i, (ty, kind, text)) in cases.into_iter().enumerate() {
        let mut limits = limits.clone();
        if ty == "fx.test.output-flood" {
            // It builds ~64 MiB of events before returning: let it, so that the output cap is
            // what stops it.
            limits.memory_mb = Some(256);
            limits.timeout_ms = Some(20_000);
        }
        let (executor, inv) = (
            executor.clone(),
            invocation(&digest, ty, &format!("bad-{i}"), limits),
        );
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let failure = executor.invoke(&inv).await.result.unwrap_err();
            assert_eq!(failure.kind, kind, "{ty}: {failure:?}");
            assert!(
                failure.message.contains(text),
                "{ty}: {:?} should name {text:?}",
                failure.message
            );
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{ty} took {:?}",
                start.elapsed()
            );
        }));
    }
    for i in 0..100 {
        let (executor, inv) = (
            executor.clone(),
            invocation(&digest, "fx.test.ok", &format!("ok-{i}"), limits.clone()),
        );
        tasks.push(tokio::spawn(async move {
            assert!(executor.invoke(&inv).await.result.is_ok());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_package_invoked_many_times_at_once_is_fetched_and_compiled_once() {
    let dir = tempfile::tempdir().unwrap();
    let (backends, executor, digest) = setup(dir.path(), "hello").await;
    let executor = Arc::new(executor);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (executor, inv) = (
            executor.clone(),
            invocation(
                &digest,
                "com.example.hello",
                &format!("{i}"),
                Default::default(),
            ),
        );
        tasks.push(tokio::spawn(async move {
            executor.invoke(&inv).await.result.is_ok()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let counts = executor.cache_counts();
    assert_eq!((counts.fetches, counts.compiles), (1, 1), "{counts:?}");

    // A second executor on the same cache directory loads the compiled component from disk.
    let second = crate::executor(&backends, &dir.path().join("cache"));
    assert!(second
        .invoke(&invocation(
            &digest,
            "com.example.hello",
            "x",
            Default::default()
        ))
        .await
        .result
        .is_ok());
    let counts = second.cache_counts();
    assert_eq!(
        (counts.fetches, counts.compiles, counts.disk_hits),
        (0, 0, 1),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_match_their_digest_are_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_b, executor, digest) = setup(dir.path(), "hello").await;
    // Corrupt the stored object behind the store's back.
    let stored =
        walk(&dir.path().join("data/packages"), digest.as_str()).expect("stored package file");
    std::fs::write(&stored, b"tampered").unwrap();
    let failure = executor
        .invoke(&invocation(
            &digest,
            "com.example.hello",
            "1",
            Default::default(),
        ))
        .await
        .result
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Package, "{failure:?}");
    assert!(failure.message.contains("digest"), "{}", failure.message);
}

fn walk(dir: &Path, needle: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = walk(&path, needle) {
                return Some(found);
            }
        } else if path.to_string_lossy().contains(needle) {
            return Some(path);
        }
    }
    None
}
