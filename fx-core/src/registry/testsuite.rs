//! The conformance suite of the handler registry port, run by every backend's tests.
//!
//! Handler names carry a unique suffix and checks look only at their own handlers, so the
//! suite also runs against a shared registry.

// Test code that lives in the library so that every backend (in any crate) can run it; a
// failed check panics, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use super::{Expect, HandlerRegistry};
use crate::error::ErrorKind;
use crate::handler::{Filter, Handler};
use crate::limits::LimitOverrides;
use crate::testsupport::{unique, HandlerBuilder};

/// Runs every check against `registry`.
pub async fn run(registry: &dyn HandlerRegistry) {
    put_get_and_table_round_trip(registry).await;
    expectations_guard_writes(registry).await;
    deletes_honour_expectations(registry).await;
    invalid_handlers_are_refused(registry).await;
    watch_returns_on_change_or_after_the_wait(registry).await;
    concurrent_creates_of_one_name_have_one_winner(registry).await;
}

fn handler(name: &str) -> Handler {
    HandlerBuilder::new(name)
        .description("conformance")
        .filter(Filter::All(vec![
            Filter::type_is("com.example.hello"),
            Filter::Not(Box::new(Filter::type_is("com.example.bye"))),
        ]))
        .package("hello")
        .version("1.0.0")
        .limits(LimitOverrides {
            memory_mb: Some(32),
            ..LimitOverrides::default()
        })
        .build()
}

async fn put_get_and_table_round_trip(registry: &dyn HandlerRegistry) {
    let name = unique("roundtrip");
    let h = handler(&name);
    assert_eq!(registry.get(&name).await.unwrap(), None);
    let revision = registry.put(&h, Expect::Absent).await.unwrap();
    let stored = registry.get(&name).await.unwrap().expect("stored handler");
    assert_eq!(stored.handler, h);
    assert_eq!(stored.revision, revision);

    let table = registry.table().await.unwrap();
    assert!(
        table.revision >= revision,
        "the table's revision covers every write"
    );
    let listed = table
        .handlers
        .iter()
        .find(|s| s.handler.name == name)
        .unwrap();
    assert_eq!(listed, &stored);
    let names: Vec<&str> = table
        .handlers
        .iter()
        .map(|s| s.handler.name.as_str())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "handlers are sorted by name");

    let mut changed = h.clone();
    changed.enabled = false;
    let next = registry.put(&changed, Expect::Any).await.unwrap();
    assert!(next > revision, "every write bumps the revision");
    assert_eq!(registry.get(&name).await.unwrap().unwrap().handler, changed);
    registry.delete(&name, Expect::Any).await.unwrap();
}

async fn expectations_guard_writes(registry: &dyn HandlerRegistry) {
    let name = unique("expect");
    let h = handler(&name);
    let err = registry.put(&h, Expect::Revision(1)).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "updating a missing handler: {err}"
    );

    let first = registry.put(&h, Expect::Absent).await.unwrap();
    let err = registry.put(&h, Expect::Absent).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "creating twice: {err}");
    assert!(err.message().contains(&name), "{err}");

    let second = registry.put(&h, Expect::Revision(first)).await.unwrap();
    assert!(second > first);
    let err = registry.put(&h, Expect::Revision(first)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "a stale revision: {err}");
    assert_eq!(registry.get(&name).await.unwrap().unwrap().revision, second);
    registry.delete(&name, Expect::Any).await.unwrap();
}

async fn deletes_honour_expectations(registry: &dyn HandlerRegistry) {
    let name = unique("delete");
    let err = registry.delete(&name, Expect::Any).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let first = registry.put(&handler(&name), Expect::Absent).await.unwrap();
    let second = registry.put(&handler(&name), Expect::Any).await.unwrap();
    let err = registry
        .delete(&name, Expect::Revision(first))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let err = registry.delete(&name, Expect::Absent).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    registry
        .delete(&name, Expect::Revision(second))
        .await
        .unwrap();
    assert_eq!(registry.get(&name).await.unwrap(), None);
    let table = registry.table().await.unwrap();
    assert!(table.handlers.iter().all(|s| s.handler.name != name));
    assert!(table.revision > second, "a delete bumps the revision");
    let err = registry.delete(&name, Expect::Any).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

async fn invalid_handlers_are_refused(registry: &dyn HandlerRegistry) {
    let mut h = handler(&unique("invalid"));
    h.limits.memory_mb = Some(1_000_000);
    let err = registry.put(&h, Expect::Any).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("memory_mb"), "{err}");
    assert_eq!(registry.get(&h.name).await.unwrap(), None);

    h = handler("Not A Name");
    let err = registry.put(&h, Expect::Any).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
}

async fn watch_returns_on_change_or_after_the_wait(registry: &dyn HandlerRegistry) {
    let name = unique("watch");
    let now = registry.table().await.unwrap().revision;

    // Past revisions answer at once.
    let started = Instant::now();
    if now > 0 {
        let table = registry
            .watch(now - 1, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(table.revision >= now);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // A write while watching ends the wait.
    let watching = registry.watch(now, Duration::from_secs(30));
    let writing = async { registry.put(&handler(&name), Expect::Absent).await.unwrap() };
    let started = Instant::now();
    let (table, revision) = tokio::join!(watching, writing);
    let table = table.unwrap();
    assert!(table.revision > now);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "watch did not wake on a write"
    );
    // The table may predate later writes of other clients, never this one's revision bump.
    let current = registry
        .watch(revision - 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(current.handlers.iter().any(|s| s.handler.name == name));

    // With no change, watch returns the current table once the wait is over.
    let quiet = registry.table().await.unwrap().revision;
    let started = Instant::now();
    let table = registry
        .watch(u64::MAX - 1, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "watch returned before its wait"
    );
    assert!(table.revision >= quiet);
    registry.delete(&name, Expect::Any).await.unwrap();
}

async fn concurrent_creates_of_one_name_have_one_winner(registry: &dyn HandlerRegistry) {
    let name = unique("race");
    let results = futures::future::join_all((0..8).map(|i| {
        let mut h = handler(&name);
        h.description = format!("writer {i}");
        async move { (i, registry.put(&h, Expect::Absent).await) }
    }))
    .await;
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one create wins: {results:?}");
    for (_, result) in &results {
        if let Err(err) = result {
            assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        }
    }
    let (winner, revision) = winners[0];
    let stored = registry.get(&name).await.unwrap().unwrap();
    assert_eq!(stored.handler.description, format!("writer {winner}"));
    assert_eq!(&stored.revision, revision.as_ref().unwrap());
    registry.delete(&name, Expect::Any).await.unwrap();
}

/// Runs the checks of a registry of schedules: the same backends, another collection.
pub async fn run_schedules(registry: &dyn super::Registry<crate::schedule::Schedule>) {
    use crate::schedule::Schedule;
    let name = unique("nightly");
    let schedule: Schedule = serde_json::from_value(serde_json::json!({
        "name": name,
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "data": {"report": "daily"},
        "missed": "once",
    }))
    .unwrap();
    let revision = registry.put(&schedule, Expect::Absent).await.unwrap();
    let stored = registry.get(&name).await.unwrap().unwrap();
    assert_eq!(
        (stored.entry.clone(), stored.revision),
        (schedule.clone(), revision)
    );
    let table = registry.table().await.unwrap();
    assert!(table.revision >= revision);
    assert!(table.entries.iter().any(|s| s.entry == schedule));
    // The JSON shape of the API: {"schedule": {...}, "revision": N}.
    let json = serde_json::to_value(&stored).unwrap();
    assert_eq!(json["schedule"]["name"], name.as_str());
    assert_eq!(json["revision"], revision);
    // Check-and-set, as for handlers.
    let err = registry.put(&schedule, Expect::Absent).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("schedule"), "{err}");
    let mut paused = schedule.clone();
    paused.paused = true;
    let err = registry
        .put(&paused, Expect::Revision(revision + 1_000_000))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // A watch sees the change.
    let watcher = registry.watch(table.revision, Duration::from_secs(10));
    let (seen, written) = tokio::join!(watcher, async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        registry.put(&paused, Expect::Revision(revision)).await
    });
    let written = written.unwrap();
    let seen = seen.unwrap();
    assert!(seen.revision >= written);
    assert!(seen.entries.iter().any(|s| s.entry == paused));
    // An invalid schedule is refused before it is stored.
    let mut bad = schedule.clone();
    bad.cron = Some("not cron".into());
    let err = registry.put(&bad, Expect::Any).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    registry
        .delete(&name, Expect::Revision(written))
        .await
        .unwrap();
    assert!(registry.get(&name).await.unwrap().is_none());
    let err = registry.delete(&name, Expect::Any).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

/// Runs the checks of a registry of webhooks: the same backends, another collection.
pub async fn run_hooks(registry: &dyn super::Registry<crate::hook::Hook>) {
    use crate::hook::Hook;
    let name = unique("github");
    let hook: Hook = serde_json::from_value(serde_json::json!({
        "name": name,
        "verify": {"kind": "github", "secret": "github-hook"},
        "transform": {"kind": "github"},
        "rate": {"per_second": 5.0, "burst": 10},
    }))
    .unwrap();
    let revision = registry.put(&hook, Expect::Absent).await.unwrap();
    let stored = registry.get(&name).await.unwrap().unwrap();
    assert_eq!(
        (stored.entry.clone(), stored.revision),
        (hook.clone(), revision)
    );
    let json = serde_json::to_value(&stored).unwrap();
    assert_eq!(json["hook"]["name"], name.as_str());
    let table = registry.table().await.unwrap();
    assert!(table.entries.iter().any(|h| h.entry == hook));
    let err = registry.put(&hook, Expect::Absent).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let mut bad = hook.clone();
    bad.rate.burst = 0;
    let err = registry.put(&bad, Expect::Any).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let mut disabled = hook.clone();
    disabled.enabled = false;
    let written = registry
        .put(&disabled, Expect::Revision(revision))
        .await
        .unwrap();
    assert!(!registry.get(&name).await.unwrap().unwrap().entry.enabled);
    registry
        .delete(&name, Expect::Revision(written))
        .await
        .unwrap();
    assert!(registry.get(&name).await.unwrap().is_none());
}
