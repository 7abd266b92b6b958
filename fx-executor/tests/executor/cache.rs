//! The compile cache: fetch and compile a package once, keep it on disk, verify what is fetched.

use std::sync::Arc;

use fx_core::execution::FailureKind;
use fx_core::package::PackageDigest;

use crate::support::{example, invocation, Fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_package_invoked_fifty_times_at_once_is_fetched_and_compiled_once() {
    let fx = Fixture::new();
    let digest = fx.add_example("hello");
    let executor = Arc::new(fx.executor());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (executor, inv) = (
            executor.clone(),
            invocation(
                &digest,
                "com.example.hello",
                &i.to_string(),
                Default::default(),
            ),
        );
        tasks.push(tokio::spawn(async move { executor.invoke(&inv).await }));
    }
    for t in tasks {
        t.await.unwrap().result.unwrap();
    }
    let counts = executor.cache_counts();
    assert_eq!((counts.fetches, counts.compiles), (1, 1), "{counts:?}");
    assert_eq!(fx.packages.get_count(), 1);

    // Later invocations are answered from memory.
    let again = invocation(&digest, "com.example.hello", "again", Default::default());
    executor.invoke(&again).await.result.unwrap();
    let counts = executor.cache_counts();
    assert_eq!((counts.fetches, counts.compiles), (1, 1), "{counts:?}");
    assert!(counts.memory_hits >= 1, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_executor_on_the_same_cache_dir_loads_the_compiled_component() {
    let fx = Fixture::new();
    let digest = fx.add_example("hello");
    let inv = invocation(&digest, "com.example.hello", "1", Default::default());
    let first = fx.executor();
    first.invoke(&inv).await.result.unwrap();
    assert_eq!(first.cache_counts().compiles, 1);
    drop(first);

    let second = fx.executor();
    second.invoke(&inv).await.result.unwrap();
    let counts = second.cache_counts();
    assert_eq!(
        (counts.fetches, counts.compiles, counts.disk_hits),
        (0, 0, 1),
        "{counts:?}"
    );
    assert_eq!(fx.packages.get_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_match_their_digest_fail_as_package_and_never_run() {
    let fx = Fixture::new();
    let hello = example("hello");
    let digest = PackageDigest::of(&hello);
    // A valid package of another function, stored under hello's digest.
    fx.packages.insert_unchecked(&digest, example("misbehave"));
    let executor = fx.executor();
    let outcome = executor
        .invoke(&invocation(
            &digest,
            "com.example.hello",
            "1",
            Default::default(),
        ))
        .await;
    let failure = outcome.result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Package, "{failure:?}");
    assert!(failure.message.contains("digest"), "{}", failure.message);
    assert!(
        failure.message.contains(digest.as_str()),
        "{}",
        failure.message
    );
    assert!(outcome.logs.is_empty());
    let counts = executor.cache_counts();
    assert_eq!((counts.fetches, counts.compiles), (1, 0), "{counts:?}");
    // Nothing of it was kept.
    let cached = std::fs::read_dir(fx.cache_dir().join("packages"))
        .unwrap()
        .count()
        + std::fs::read_dir(fx.cache_dir().join("compiled"))
            .unwrap()
            .count();
    assert_eq!(cached, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_is_not_cached() {
    let fx = Fixture::new();
    let hello = example("hello");
    let digest = PackageDigest::of(&hello);
    let executor = fx.executor();
    let inv = invocation(&digest, "com.example.hello", "1", Default::default());
    let failure = executor.invoke(&inv).await.result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Package, "{failure:?}");
    assert!(failure.message.contains("not found"), "{}", failure.message);

    fx.packages.add(hello);
    executor.invoke(&inv).await.result.unwrap();
    let counts = executor.cache_counts();
    assert_eq!((counts.fetches, counts.compiles), (2, 1), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_that_is_not_a_function_fails_as_package() {
    let fx = Fixture::new();
    let digest = fx.packages.add(b"not an archive".to_vec());
    let failure = fx
        .executor()
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
    assert!(
        failure.message.contains(digest.short()),
        "{}",
        failure.message
    );
}

/// Both tiers of the cache stay within their bounds in bytes, dropping the least recently
/// used package: a package pushed out of memory and off the disk is fetched and compiled
/// again when it is needed next, and the evictions are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_evicts_the_least_recently_used_package_beyond_its_bounds() {
    let fx = Fixture::new();
    let hello = fx.add_example("hello");
    let misbehave = fx.add_example("misbehave");
    let executor = fx.executor_with(|s| {
        s.cache_memory_mb = 0;
        s.cache_disk_mb = 0;
    });
    let run =
        |digest: &PackageDigest, ty: &str, id: &str| invocation(digest, ty, id, Default::default());
    executor
        .invoke(&run(&hello, "com.example.hello", "1"))
        .await
        .result
        .unwrap();
    executor
        .invoke(&run(&misbehave, "fx.test.ok", "2"))
        .await
        .result
        .unwrap();
    let counts = executor.cache_counts();
    assert_eq!(counts.compiles, 2, "{counts:?}");
    assert!(
        counts.memory_evictions >= 1,
        "hello left memory: {counts:?}"
    );
    assert!(
        counts.disk_evictions >= 2,
        "hello's files left the disk: {counts:?}"
    );
    let files: Vec<String> = ["packages", "compiled"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(fx.cache_dir().join(sub)).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().all(|f| f.starts_with(&misbehave.to_string())),
        "only the package in use stays on disk: {files:?}"
    );
    // Hello is needed again: fetched and compiled again, and misbehave goes in its turn.
    let outcome = executor
        .invoke(&run(&hello, "com.example.hello", "3"))
        .await;
    outcome.result.unwrap();
    let counts = executor.cache_counts();
    assert_eq!((counts.fetches, counts.compiles), (3, 3), "{counts:?}");
    assert_eq!(executor.cached_in_memory().0, 1, "one package in memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_reports_its_cold_start_compile_instantiate_and_call_phases() {
    let fx = Fixture::new();
    let digest = fx.add_example("hello");
    let inv = invocation(&digest, "com.example.hello", "1", Default::default());
    let first = fx.executor();
    let cold = first.invoke(&inv).await;
    cold.result.as_ref().unwrap();
    let phases = cold.phases;
    let start = phases.cold_start.expect("a cold start");
    let (fetch, compile) = (phases.load.fetch.unwrap(), phases.load.compile.unwrap());
    assert!(compile.duration() > std::time::Duration::ZERO);
    assert!(start.start <= fetch.start && fetch.end <= compile.start && compile.end <= start.end);
    let (made, call) = (phases.instantiate.unwrap(), phases.call.unwrap());
    assert!(
        start.end <= made.start && made.end <= call.start,
        "{phases:?}"
    );
    assert!(
        made.duration() > std::time::Duration::ZERO && call.duration() > std::time::Duration::ZERO
    );

    // Warm in memory: no cold start, still an instance and a call.
    let warm = first.invoke(&inv).await.phases;
    assert_eq!(warm.cold_start, None);
    assert!(warm.instantiate.is_some() && warm.call.is_some());
    drop(first);

    // A new executor on the same cache: the cold start loads the compiled component.
    let from_disk = fx.executor().invoke(&inv).await.phases;
    assert!(from_disk.cold_start.is_some() && from_disk.load.deserialize.is_some());
    assert_eq!((from_disk.load.fetch, from_disk.load.compile), (None, None));
}
