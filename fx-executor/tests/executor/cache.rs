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
