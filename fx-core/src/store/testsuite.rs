//! The conformance suite of the state store port, run by every backend's tests.
//!
//! Package and handler names carry a unique suffix and listings are filtered by them, so the
//! suite also runs against a shared database.

// Test code that lives in the library so that every backend (in any crate) can run it; a
// failed check panics, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{Created, HandlerChange, StateStore};
use crate::error::ErrorKind;
use crate::event::new_json_event;
use crate::execution::{
    CacheLookup, Execution, ExecutionId, ExecutionQuery, ExecutionStatus, Failure, FailureKind,
    LogLevel, LogLine, Measurements, ResolvedPackage, StateEvent,
};
use crate::handler::{Handler, PackageRef};
use crate::package::{Manifest, PackageDigest, PackageVersion};
use crate::testsupport::{queued_execution, unique, HandlerBuilder};

pub mod text_filter;

/// Runs every check against `store`.
pub async fn run(store: &dyn StateStore) {
    package_versions_are_immutable_and_follow_latest(store).await;
    aliases_point_at_existing_versions(store).await;
    references_resolve_to_exact_versions_then_aliases(store).await;
    concurrent_uploads_of_one_version_have_one_winner(store).await;
    executions_are_created_once(store).await;
    concurrent_creates_of_one_execution_have_one_winner(store).await;
    state_events_apply_once_and_in_attempt_order(store).await;
    a_terminal_state_without_a_start_is_applied(store).await;
    state_of_an_unknown_execution_is_ignored(store).await;
    a_batch_of_states_applies_as_one_by_one(store).await;
    a_batch_of_creates_finds_what_one_by_one_finds(store).await;
    expired_executions_are_found_oldest_first_and_deleted(store).await;
    executions_list_newest_first_filtered_and_paged(store).await;
    executions_filter_by_time_range_and_text(store).await;
    text_filter::run(store).await;
    a_retrying_attempt_is_not_terminal_and_the_next_attempt_runs(store).await;
    of_two_transitions_at_once_one_wins(store).await;
    handler_history_is_recorded_once_and_listed_newest_first(store).await;
}

/// Now, to the microsecond (what every store keeps).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn version(name: &str, version: &str, uploaded_at: DateTime<Utc>) -> PackageVersion {
    let manifest =
        Manifest::parse(&format!("name = \"{name}\"\nversion = \"{version}\"\n")).unwrap();
    PackageVersion {
        name: name.to_string(),
        version: version.to_string(),
        digest: PackageDigest::of(format!("{name}@{version}").as_bytes()),
        size: 1234,
        manifest,
        uploaded_at,
        uploaded_by: Some("conformance".into()),
    }
}

fn execution(handler: &str, n: u32, created_at: DateTime<Utc>) -> Execution {
    let event = new_json_event(
        format!("{handler}-{n}"),
        "/conformance",
        "com.example.conformance",
        serde_json::json!({ "n": n }),
    )
    .unwrap();
    Execution {
        package: Some(ResolvedPackage {
            name: "hello".into(),
            version: "1.0.0".into(),
            digest: PackageDigest::of(b"hello"),
        }),
        ..queued_execution(handler, event, created_at)
    }
}

fn started(id: &ExecutionId, attempt: u32, at: DateTime<Utc>) -> StateEvent {
    StateEvent::Started {
        execution_id: id.clone(),
        attempt,
        at,
        executor: "conformance".into(),
    }
}

fn failed(id: &ExecutionId, attempt: u32, at: DateTime<Utc>, message: &str) -> StateEvent {
    StateEvent::Failed {
        execution_id: id.clone(),
        attempt,
        at,
        duration_us: 10,
        failure: Failure {
            kind: FailureKind::Trap,
            message: message.to_string(),
        },
        retry_at: None,
        measurements: None,
        dead_letter: None,
    }
}

fn succeeded(id: &ExecutionId, attempt: u32, at: DateTime<Utc>) -> StateEvent {
    let output = new_json_event("out-1", "/fn", "com.example.out", serde_json::json!({})).unwrap();
    StateEvent::Succeeded {
        execution_id: id.clone(),
        attempt,
        at,
        duration_us: 20,
        output: vec![output],
        measurements: Some(Measurements {
            executor: "conformance".into(),
            queue_wait_us: 1500,
            compile_cache: Some(CacheLookup::Disk),
            peak_memory_bytes: 1 << 20,
            fuel_used: Some(42),
        }),
    }
}

async fn package_versions_are_immutable_and_follow_latest(store: &dyn StateStore) {
    let name = unique("pkg");
    let t = now();
    let v1 = version(&name, "1.0.0", t);
    store.add_package_version(&v1).await.unwrap();
    assert_eq!(
        store.get_package_version(&name, "1.0.0").await.unwrap(),
        Some(v1.clone())
    );
    assert_eq!(
        store.get_package_version(&name, "9.9.9").await.unwrap(),
        None
    );

    let err = store.add_package_version(&v1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.message(),
        format!("package {name} version 1.0.0 already exists")
    );

    let v2 = version(&name, "2.0.0", t + chrono::Duration::seconds(1));
    store.add_package_version(&v2).await.unwrap();
    let listed = store.list_package_versions(Some(&name)).await.unwrap();
    assert_eq!(listed, vec![v2.clone(), v1.clone()], "newest first");
    let all = store.list_package_versions(None).await.unwrap();
    assert!(all.contains(&v1) && all.contains(&v2));

    let latest = PackageRef {
        name: name.clone(),
        version: "latest".into(),
    };
    let resolved = store.resolve_package(&latest).await.unwrap();
    assert_eq!(resolved, v2, "latest follows the newest upload");
    let aliases = store.list_aliases(&name).await.unwrap();
    assert_eq!(aliases.len(), 1);
    assert_eq!(
        (aliases[0].alias.as_str(), aliases[0].version.as_str()),
        ("latest", "2.0.0")
    );

    // A lower version uploaded later does not move `latest` down; a higher one moves it up.
    let fix = version(&name, "1.0.1", t + chrono::Duration::seconds(2));
    store.add_package_version(&fix).await.unwrap();
    assert_eq!(
        store.resolve_package(&latest).await.unwrap(),
        v2,
        "latest never moves down on upload"
    );
    let v10 = version(&name, "10.0.0", t + chrono::Duration::seconds(3));
    store.add_package_version(&v10).await.unwrap();
    assert_eq!(store.resolve_package(&latest).await.unwrap(), v10);
}

async fn aliases_point_at_existing_versions(store: &dyn StateStore) {
    let name = unique("alias");
    store
        .add_package_version(&version(&name, "1.0.0", now()))
        .await
        .unwrap();
    store
        .add_package_version(&version(&name, "1.1.0", now()))
        .await
        .unwrap();

    let err = store.set_alias(&name, "stable", "3.0.0").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = store.set_alias(&name, "1bad", "1.0.0").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let err = store
        .set_alias(&unique("nopkg"), "stable", "1.0.0")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    store.set_alias(&name, "stable", "1.0.0").await.unwrap();
    store.set_alias(&name, "stable", "1.1.0").await.unwrap();
    // Rollback: latest moves back by hand.
    store.set_alias(&name, "latest", "1.0.0").await.unwrap();
    let aliases: Vec<_> = store
        .list_aliases(&name)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.package, a.alias, a.version))
        .collect();
    assert_eq!(
        aliases,
        vec![
            (name.clone(), "latest".into(), "1.0.0".into()),
            (name.clone(), "stable".into(), "1.1.0".into()),
        ]
    );
    assert!(store
        .list_aliases(&unique("nopkg"))
        .await
        .unwrap()
        .is_empty());
}

async fn references_resolve_to_exact_versions_then_aliases(store: &dyn StateStore) {
    let name = unique("resolve");
    let v1 = version(&name, "1.0.0", now());
    store.add_package_version(&v1).await.unwrap();
    let reference = |v: &str| PackageRef {
        name: name.clone(),
        version: v.into(),
    };
    assert_eq!(
        store.resolve_package(&reference("1.0.0")).await.unwrap(),
        v1
    );
    assert_eq!(
        store.resolve_package(&reference("latest")).await.unwrap(),
        v1
    );

    let err = store
        .resolve_package(&reference("2.0.0"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains(&format!("{name}@2.0.0")), "{err}");
    let err = store.resolve_package(&reference("beta")).await.unwrap_err();
    assert!(err.message().contains(&format!("{name}@beta")), "{err}");
    let missing = PackageRef {
        name: unique("none"),
        version: "latest".into(),
    };
    assert_eq!(
        store.resolve_package(&missing).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

async fn concurrent_uploads_of_one_version_have_one_winner(store: &dyn StateStore) {
    let name = unique("race");
    let v = version(&name, "1.0.0", now());
    let results = futures::future::join_all((0..8).map(|_| store.add_package_version(&v))).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one upload wins: {results:?}");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    }
    assert_eq!(
        store.list_package_versions(Some(&name)).await.unwrap(),
        vec![v]
    );
}

async fn executions_are_created_once(store: &dyn StateStore) {
    let handler = unique("create");
    let e = execution(&handler, 1, now());
    assert_eq!(store.get_execution(&e.id).await.unwrap(), None);
    assert_eq!(store.create_execution(&e).await.unwrap(), Created::New);
    assert_eq!(store.get_execution(&e.id).await.unwrap(), Some(e.clone()));
    assert_eq!(
        store.create_execution(&e).await.unwrap(),
        Created::Existing(ExecutionStatus::Queued)
    );
    store.apply_state(&started(&e.id, 1, now())).await.unwrap();
    assert_eq!(
        store.create_execution(&e).await.unwrap(),
        Created::Existing(ExecutionStatus::Running),
        "a redelivered event finds the running execution"
    );
}

async fn concurrent_creates_of_one_execution_have_one_winner(store: &dyn StateStore) {
    let handler = unique("create-race");
    let e = execution(&handler, 1, now());
    let results = futures::future::join_all((0..8).map(|_| store.create_execution(&e))).await;
    let results: Vec<Created> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        results.iter().filter(|c| **c == Created::New).count(),
        1,
        "{results:?}"
    );
    assert!(results
        .iter()
        .all(|c| matches!(c, Created::New | Created::Existing(ExecutionStatus::Queued))));
    let page = store
        .list_executions(&ExecutionQuery {
            handler: Some(handler),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

async fn state_events_apply_once_and_in_attempt_order(store: &dyn StateStore) {
    let handler = unique("state");
    let e = execution(&handler, 1, now());
    store.create_execution(&e).await.unwrap();
    let get = || async { store.get_execution(&e.id).await.unwrap().unwrap() };
    let t1 = now();

    store.apply_state(&started(&e.id, 1, t1)).await.unwrap();
    let running = get().await;
    assert_eq!(
        (running.status, running.attempts),
        (ExecutionStatus::Running, 1)
    );
    assert_eq!(running.started_at, Some(t1));
    // A replayed start changes nothing.
    store
        .apply_state(&started(&e.id, 1, t1 + chrono::Duration::seconds(5)))
        .await
        .unwrap();
    assert_eq!(get().await, running);

    let t2 = t1 + chrono::Duration::seconds(1);
    store
        .apply_state(&failed(&e.id, 1, t2, "boom"))
        .await
        .unwrap();
    let first_failure = get().await;
    assert_eq!(first_failure.status, ExecutionStatus::Failed);
    assert_eq!(first_failure.error.as_ref().unwrap().message, "boom");
    assert_eq!(
        (first_failure.finished_at, first_failure.duration_us),
        (Some(t2), Some(10))
    );
    // Replays of the first attempt, its start or its end, change nothing.
    store.apply_state(&started(&e.id, 1, t2)).await.unwrap();
    store
        .apply_state(&failed(&e.id, 1, t2, "boom again"))
        .await
        .unwrap();
    store.apply_state(&succeeded(&e.id, 1, t2)).await.unwrap();
    assert_eq!(get().await, first_failure);

    // A retry starts, then a late event of attempt 1 arrives: ignored.
    let t3 = t2 + chrono::Duration::seconds(1);
    store.apply_state(&started(&e.id, 2, t3)).await.unwrap();
    store
        .apply_state(&failed(&e.id, 1, t3, "late"))
        .await
        .unwrap();
    let retrying = get().await;
    assert_eq!(
        (retrying.status, retrying.attempts),
        (ExecutionStatus::Running, 2)
    );
    assert_eq!(retrying.started_at, Some(t3));
    assert_eq!(retrying.finished_at, None);

    let t4 = t3 + chrono::Duration::seconds(1);
    let done = succeeded(&e.id, 2, t4);
    store.apply_state(&done).await.unwrap();
    let success = get().await;
    assert_eq!(
        (success.status, success.attempts),
        (ExecutionStatus::Succeeded, 2)
    );
    assert_eq!(success.output.len(), 1);
    assert_eq!(success.error, None);
    assert_eq!(
        (success.finished_at, success.duration_us),
        (Some(t4), Some(20))
    );
    // Replays after the end, of any state of this or an earlier attempt, change nothing.
    for replay in [
        done,
        started(&e.id, 2, t4),
        failed(&e.id, 2, t4, "x"),
        started(&e.id, 1, t4),
    ] {
        store.apply_state(&replay).await.unwrap();
    }
    let log = StateEvent::Log(LogLine {
        execution_id: e.id.clone(),
        handler: handler.clone(),
        attempt: 2,
        seq: 0,
        at: t4,
        level: LogLevel::Info,
        message: "ignored by the state store".into(),
        fields: Default::default(),
    });
    store.apply_state(&log).await.unwrap();
    assert_eq!(get().await, success);

    // Every attempt is kept as first reported, oldest first, with its measurements.
    let history: Vec<_> = success
        .attempt_history
        .iter()
        .map(|r| {
            (
                r.attempt,
                r.status,
                r.finished_at,
                r.failure.as_ref().map(|f| f.message.as_str()),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            (1, ExecutionStatus::Failed, t2, Some("boom")),
            (2, ExecutionStatus::Succeeded, t4, None),
        ]
    );
    let measured = success.attempt_history[1].measurements.as_ref().unwrap();
    assert_eq!(
        (
            measured.queue_wait_us,
            measured.compile_cache,
            measured.fuel_used
        ),
        (1500, Some(CacheLookup::Disk), Some(42))
    );
    assert_eq!(success.attempt_history[0].measurements, None);
}

async fn a_terminal_state_without_a_start_is_applied(store: &dyn StateStore) {
    let handler = unique("nostart");
    let e = execution(&handler, 1, now());
    store.create_execution(&e).await.unwrap();
    let at = now();
    store
        .apply_state(&failed(&e.id, 3, at, "lost starts"))
        .await
        .unwrap();
    let stored = store.get_execution(&e.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.attempts),
        (ExecutionStatus::Failed, 3)
    );
    assert_eq!(
        stored.started_at,
        Some(at - chrono::Duration::microseconds(10))
    );
    // The start arriving late is older news.
    store.apply_state(&started(&e.id, 3, at)).await.unwrap();
    assert_eq!(store.get_execution(&e.id).await.unwrap().unwrap(), stored);
}

async fn state_of_an_unknown_execution_is_ignored(store: &dyn StateStore) {
    let id = ExecutionId::derive("/conformance", &unique("ghost"), "nobody");
    store.apply_state(&started(&id, 1, now())).await.unwrap();
    store.apply_state(&succeeded(&id, 1, now())).await.unwrap();
    assert_eq!(store.get_execution(&id).await.unwrap(), None);
}

async fn a_batch_of_states_applies_as_one_by_one(store: &dyn StateStore) {
    let handler = unique("batch");
    let t = now();
    let (a, b, c) = (
        execution(&handler, 1, t),
        execution(&handler, 2, t),
        execution(&handler, 3, t),
    );
    for e in [&a, &b, &c] {
        store.create_execution(e).await.unwrap();
    }
    let ghost = ExecutionId::derive("/conformance", &unique("ghost"), "nobody");
    let at = |ms: i64| t + chrono::Duration::milliseconds(ms);
    let batch = vec![
        started(&a.id, 1, at(1)),
        started(&b.id, 1, at(1)),
        started(&ghost, 1, at(1)),
        failed(&b.id, 1, at(2), "first try"),
        succeeded(&a.id, 1, at(3)),
        // A replay and a late start of a finished attempt change nothing.
        succeeded(&a.id, 1, at(4)),
        started(&a.id, 1, at(5)),
        started(&b.id, 2, at(6)),
        succeeded(&b.id, 2, at(7)),
        StateEvent::Log(crate::execution::LogLine {
            execution_id: c.id.clone(),
            handler: handler.clone(),
            attempt: 1,
            at: at(8),
            level: crate::execution::LogLevel::Info,
            message: "logs are not the state store's".into(),
            fields: Default::default(),
            seq: 0,
        }),
    ];
    store.apply_states(&batch).await.unwrap();
    let a_stored = store.get_execution(&a.id).await.unwrap().unwrap();
    // A start and the end of its attempt in one batch record the start reported, not one
    // inferred from the run time.
    assert_eq!(
        (
            a_stored.status,
            a_stored.attempts,
            a_stored.started_at,
            a_stored.finished_at
        ),
        (ExecutionStatus::Succeeded, 1, Some(at(1)), Some(at(3)))
    );
    let b_stored = store.get_execution(&b.id).await.unwrap().unwrap();
    assert_eq!(
        (b_stored.status, b_stored.attempts, b_stored.started_at),
        (ExecutionStatus::Succeeded, 2, Some(at(6)))
    );
    assert_eq!(b_stored.attempt_history.len(), 2, "{b_stored:?}");
    assert_eq!(
        store.get_execution(&c.id).await.unwrap().unwrap().status,
        ExecutionStatus::Queued
    );
    assert_eq!(store.get_execution(&ghost).await.unwrap(), None);
    // The same batch again: nothing changes.
    store.apply_states(&batch).await.unwrap();
    assert_eq!(store.get_execution(&a.id).await.unwrap().unwrap(), a_stored);
    assert_eq!(store.get_execution(&b.id).await.unwrap().unwrap(), b_stored);
    store.apply_states(&[]).await.unwrap();
}

async fn a_batch_of_creates_finds_what_one_by_one_finds(store: &dyn StateStore) {
    let handler = unique("batch-create");
    let t = now();
    let (running, queued, fresh, other) = (
        execution(&handler, 1, t),
        execution(&handler, 2, t),
        execution(&handler, 3, t),
        execution(&handler, 4, t),
    );
    store.create_execution(&running).await.unwrap();
    store
        .apply_state(&started(
            &running.id,
            1,
            t + chrono::Duration::milliseconds(1),
        ))
        .await
        .unwrap();
    store.create_execution(&queued).await.unwrap();
    // Out of id order, with an event delivered twice in one batch.
    let batch = [
        other.clone(),
        running.clone(),
        fresh.clone(),
        queued.clone(),
        fresh.clone(),
    ];
    let created = store.create_executions(&batch).await.unwrap();
    assert_eq!(
        created,
        vec![
            Created::New,
            Created::Existing(ExecutionStatus::Running),
            Created::New,
            Created::Existing(ExecutionStatus::Queued),
            Created::Existing(ExecutionStatus::Queued),
        ]
    );
    for e in [&fresh, &other] {
        let stored = store.get_execution(&e.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.created_at, &stored.event),
            (ExecutionStatus::Queued, e.created_at, &e.event)
        );
    }
    // Again: everything exists now.
    let again = store.create_executions(&batch).await.unwrap();
    assert!(
        again.iter().all(|c| matches!(c, Created::Existing(_))),
        "{again:?}"
    );
    assert_eq!(store.create_executions(&[]).await.unwrap(), vec![]);
}

async fn expired_executions_are_found_oldest_first_and_deleted(store: &dyn StateStore) {
    let handler = unique("retention");
    // Long ago, so that no other check's executions are older.
    let old = DateTime::from_timestamp(978_307_200, 0).unwrap(); // 2001-01-01
    let day = chrono::Duration::days(1);
    let (first, second, running) = (
        execution(&handler, 1, old),
        execution(&handler, 2, old + chrono::Duration::seconds(1)),
        execution(&handler, 3, old),
    );
    let recent = execution(&handler, 4, now());
    for e in [&first, &second, &running, &recent] {
        store.create_execution(e).await.unwrap();
    }
    store
        .apply_states(&[
            succeeded(&second.id, 1, now()),
            failed(&first.id, 1, now(), "old failure"),
            started(&running.id, 1, now()),
            succeeded(&recent.id, 1, now()),
        ])
        .await
        .unwrap();
    let ours = |ids: Vec<ExecutionId>| -> Vec<ExecutionId> {
        ids.into_iter()
            .filter(|id| [&first.id, &second.id, &running.id, &recent.id].contains(&id))
            .collect()
    };
    let expired = ours(store.expired_executions(old + day, 1000).await.unwrap());
    assert_eq!(
        expired,
        vec![first.id.clone(), second.id.clone()],
        "finished and old only, oldest first"
    );
    assert_eq!(
        store.expired_executions(old + day, 1).await.unwrap().len(),
        1
    );
    assert_eq!(store.delete_executions(&expired).await.unwrap(), 2);
    assert_eq!(store.get_execution(&first.id).await.unwrap(), None);
    assert_eq!(store.get_execution(&second.id).await.unwrap(), None);
    assert!(store.get_execution(&running.id).await.unwrap().is_some());
    assert!(store.get_execution(&recent.id).await.unwrap().is_some());
    assert_eq!(store.delete_executions(&expired).await.unwrap(), 0);
    assert_eq!(store.delete_executions(&[]).await.unwrap(), 0);
    assert!(ours(store.expired_executions(old + day, 1000).await.unwrap()).is_empty());
}

async fn executions_list_newest_first_filtered_and_paged(store: &dyn StateStore) {
    let handler = unique("list");
    let other = unique("list-other");
    let base = now();
    let mut all = Vec::new();
    for n in 0..7 {
        // Pairs share a timestamp: the id orders them.
        let e = execution(
            &handler,
            n,
            base + chrono::Duration::microseconds(i64::from(n / 2)),
        );
        store.create_execution(&e).await.unwrap();
        all.push(e);
    }
    store
        .create_execution(&execution(&other, 0, base))
        .await
        .unwrap();
    store
        .apply_state(&started(&all[0].id, 1, base))
        .await
        .unwrap();
    store
        .apply_state(&succeeded(&all[0].id, 1, base))
        .await
        .unwrap();

    let mut expected: Vec<_> = all.iter().map(|e| (e.created_at, e.id.clone())).collect();
    expected.sort_by(|a, b| b.cmp(a));
    let mut query = ExecutionQuery {
        handler: Some(handler.clone()),
        limit: Some(3),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.list_executions(&query).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|s| (s.created_at, s.id.clone())));
        assert!(page.items.iter().all(|s| s.handler == handler));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(pages, 3, "3 + 3 + 1, and no cursor after the last page");
    assert_eq!(seen, expected);

    let summary = store
        .list_executions(&ExecutionQuery {
            handler: Some(handler.clone()),
            status: Some(ExecutionStatus::Succeeded),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(summary.items.len(), 1);
    assert_eq!(summary.next_cursor, None);
    let item = &summary.items[0];
    assert_eq!(item.id, all[0].id);
    assert_eq!((item.attempts, item.duration_us), (1, Some(20)));
    assert_eq!(item.event_id, format!("{handler}-0"));
    assert_eq!(
        (item.event_source.as_str(), item.event_type.as_str()),
        ("/conformance", "com.example.conformance")
    );

    let queued = store
        .list_executions(&ExecutionQuery {
            handler: Some(handler.clone()),
            status: Some(ExecutionStatus::Queued),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.items.len(), 6);
    let ids: BTreeSet<_> = queued.items.iter().map(|s| &s.id).collect();
    assert!(!ids.contains(&all[0].id));

    let err = store
        .list_executions(&ExecutionQuery {
            cursor: Some("garbage".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
}

fn handler(name: &str, event_type: &str) -> Handler {
    HandlerBuilder::new(name)
        .description(format!("runs on {event_type}"))
        .event_type(event_type)
        .package("hello")
        .version("latest")
        .build()
}

async fn executions_filter_by_time_range_and_text(store: &dyn StateStore) {
    let handler = unique("window");
    let base = now();
    let at = |seconds: i64| base + chrono::Duration::seconds(seconds);
    let mut ids = Vec::new();
    for n in 0..5u32 {
        let e = execution(&handler, n, at(i64::from(n) * 10));
        store.create_execution(&e).await.unwrap();
        ids.push(e.id.clone());
    }
    let list = |query: ExecutionQuery| async move {
        let page = store.list_executions(&query).await.unwrap();
        page.items.into_iter().map(|e| e.id).collect::<Vec<_>>()
    };
    let query = |since: Option<i64>, until: Option<i64>, text: Option<&str>| ExecutionQuery {
        handler: Some(handler.clone()),
        since: since.map(at),
        until: until.map(at),
        text: text.map(str::to_string),
        ..Default::default()
    };
    // [10 s, 30 s): executions 1 and 2, newest first.
    assert_eq!(
        list(query(Some(10), Some(30), None)).await,
        [ids[2].clone(), ids[1].clone()]
    );
    assert_eq!(list(query(Some(40), None, None)).await, [ids[4].clone()]);
    assert_eq!(list(query(None, Some(1), None)).await, [ids[0].clone()]);
    // Text in the event id (`<handler>-<n>`), ASCII case ignored; in the source.
    let id_text = format!("{}-3", handler.to_uppercase());
    assert_eq!(
        list(query(None, None, Some(&id_text))).await,
        [ids[3].clone()]
    );
    assert_eq!(list(query(None, None, Some("/conformance"))).await.len(), 5);
    // `%` and `_` are plain characters, not wildcards.
    assert!(list(query(None, None, Some("%"))).await.is_empty());
    assert!(list(query(None, None, Some("_"))).await.is_empty());
}

async fn a_retrying_attempt_is_not_terminal_and_the_next_attempt_runs(store: &dyn StateStore) {
    let e = execution(&unique("retry"), 0, now());
    store.create_execution(&e).await.unwrap();
    let base = now();
    store.apply_state(&started(&e.id, 1, base)).await.unwrap();
    let mut failed = failed(&e.id, 1, base, "first");
    if let StateEvent::Failed { retry_at, .. } = &mut failed {
        *retry_at = Some(base + chrono::Duration::seconds(1));
    }
    store.apply_state(&failed).await.unwrap();
    let stored = store.get_execution(&e.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::Retrying);
    assert_eq!(stored.error.unwrap().message, "first");
    store.apply_state(&started(&e.id, 2, base)).await.unwrap();
    store.apply_state(&succeeded(&e.id, 2, base)).await.unwrap();
    let stored = store.get_execution(&e.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.attempts),
        (ExecutionStatus::Succeeded, 2)
    );
    // The retried attempt's failure arriving again changes nothing.
    store.apply_state(&failed).await.unwrap();
    let stored = store.get_execution(&e.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ExecutionStatus::Succeeded);
    let statuses: Vec<_> = stored
        .attempt_history
        .iter()
        .map(|r| (r.attempt, r.status, r.retry_at.is_some()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (1, ExecutionStatus::Retrying, true),
            (2, ExecutionStatus::Succeeded, false)
        ]
    );
}

async fn of_two_transitions_at_once_one_wins(store: &dyn StateStore) {
    let e = execution(&unique("redrive"), 0, now());
    store.create_execution(&e).await.unwrap();
    let at = now();
    store.apply_state(&started(&e.id, 1, at)).await.unwrap();
    store.apply_state(&failed(&e.id, 1, at, "x")).await.unwrap();
    let (failed, queued) = (ExecutionStatus::Failed, ExecutionStatus::Queued);
    let (a, b) = tokio::join!(
        store.transition(&e.id, 1, failed, queued),
        store.transition(&e.id, 1, failed, queued)
    );
    assert_eq!(
        [a.unwrap(), b.unwrap()].iter().filter(|won| **won).count(),
        1
    );
    let stored = store.get_execution(&e.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.attempts), (queued, 1));
    // The wrong attempt count or status changes nothing.
    assert!(!store.transition(&e.id, 2, queued, failed).await.unwrap());
    assert!(!store.transition(&e.id, 1, failed, queued).await.unwrap());
    // The next attempt starts from `queued`.
    store.apply_state(&started(&e.id, 2, now())).await.unwrap();
    let stored = store.get_execution(&e.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.attempts),
        (ExecutionStatus::Running, 2)
    );
}

async fn handler_history_is_recorded_once_and_listed_newest_first(store: &dyn StateStore) {
    let name = unique("history");
    let other = unique("history-other");
    assert!(store.handler_history(&name).await.unwrap().is_empty());
    let t = now();
    let change =
        |revision: u64, handler: Option<Handler>, seconds: i64, by: Option<&str>| HandlerChange {
            name: name.clone(),
            revision,
            handler,
            at: t + chrono::Duration::seconds(seconds),
            by: by.map(str::to_string),
        };
    let created = change(3, Some(handler(&name, "com.example.a")), 0, Some("ada"));
    let updated = change(7, Some(handler(&name, "com.example.b")), 1, None);
    let deleted = change(8, None, 2, Some("bob"));
    // Recorded out of order, and the update twice: the second record (different contents,
    // same revision) changes nothing.
    store.record_handler_change(&updated).await.unwrap();
    store.record_handler_change(&created).await.unwrap();
    store.record_handler_change(&deleted).await.unwrap();
    store.record_handler_change(&updated).await.unwrap();
    let mut replay = updated.clone();
    replay.by = Some("mallory".into());
    store.record_handler_change(&replay).await.unwrap();
    store
        .record_handler_change(&HandlerChange {
            name: other.clone(),
            ..created.clone()
        })
        .await
        .unwrap();

    let history = store.handler_history(&name).await.unwrap();
    assert_eq!(
        history,
        vec![deleted.clone(), updated.clone(), created.clone()],
        "newest first, each change once"
    );
    assert_eq!(history[0].handler, None, "a delete has no handler");
    assert_eq!(store.handler_history(&other).await.unwrap().len(), 1);

    let results =
        futures::future::join_all((0..8).map(|_| store.record_handler_change(&deleted))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(store.handler_history(&name).await.unwrap().len(), 3);

    let err = store
        .record_handler_change(&change(u64::MAX, None, 3, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
}
