//! Tests of the SQLite state store beyond the conformance suite.

use std::collections::BTreeSet;

use super::*;
use crate::error::ErrorKind;
use crate::testsupport::execution;

#[tokio::test]
async fn passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap();
    crate::store::testsuite::run(&store).await;
}

#[tokio::test]
async fn paging_through_a_thousand_executions_returns_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap();
    let base = time(1_700_000_000_000_000).unwrap();
    let mut created = BTreeSet::new();
    for n in 0..1000 {
        // Ten executions share each timestamp, so the id breaks ties.
        let at = base + chrono::Duration::microseconds(i64::from(n / 10));
        let e = execution(n, if n % 2 == 0 { "even" } else { "odd" }, at);
        assert_eq!(store.create_execution(&e).await.unwrap(), Created::New);
        created.insert(e.id);
    }
    for (handler, size, expected) in [(None, 1000, 1000), (Some("even"), 500, 500)] {
        let mut query = ExecutionQuery {
            handler: handler.map(str::to_string),
            limit: Some(37),
            ..ExecutionQuery::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.list_executions(&query).await.unwrap();
            assert!(page.items.len() <= 37);
            seen.extend(page.items);
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(seen.len(), expected);
        let ids: BTreeSet<_> = seen.iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids.len(), size, "every execution exactly once");
        assert!(ids.is_subset(&created));
        let order: Vec<_> = seen.iter().map(|s| (s.created_at, s.id.clone())).collect();
        let mut sorted = order.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(order, sorted, "newest first, ties by id");
    }
    // An exact final page has no next cursor.
    let query = ExecutionQuery {
        limit: Some(500),
        ..ExecutionQuery::default()
    };
    let first = store.list_executions(&query).await.unwrap();
    let second = store
        .list_executions(&ExecutionQuery {
            cursor: first.next_cursor,
            ..query
        })
        .await
        .unwrap();
    assert_eq!(second.items.len(), 500);
    assert_eq!(second.next_cursor, None);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let store = SqliteStateStore::open(&path).await.unwrap();
    let e = execution(1, "h", time(1_700_000_000_123_456).unwrap());
    store.create_execution(&e).await.unwrap();
    let at = time(1_700_000_001_000_000).unwrap();
    store
        .apply_state(&StateEvent::Started {
            execution_id: e.id.clone(),
            attempt: 1,
            at,
            executor: "x".into(),
        })
        .await
        .unwrap();
    let manifest = crate::package::Manifest::parse("name = \"p\"\nversion = \"1.0.0\"\n").unwrap();
    let version = PackageVersion {
        name: "p".into(),
        version: "1.0.0".into(),
        digest: crate::package::PackageDigest::of(b"p"),
        size: 1,
        manifest,
        uploaded_at: at,
        uploaded_by: Some("me".into()),
    };
    store.add_package_version(&version).await.unwrap();
    store.set_alias("p", "stable", "1.0.0").await.unwrap();
    let before = store.get_execution(&e.id).await.unwrap().unwrap();
    drop(store);

    let store = SqliteStateStore::open(&path).await.unwrap();
    assert_eq!(store.get_execution(&e.id).await.unwrap().unwrap(), before);
    assert_eq!(before.status, ExecutionStatus::Running);
    assert_eq!(
        store.get_package_version("p", "1.0.0").await.unwrap(),
        Some(version)
    );
    assert_eq!(store.list_aliases("p").await.unwrap().len(), 2);
    assert_eq!(
        store.create_execution(&e).await.unwrap(),
        Created::Existing(ExecutionStatus::Running)
    );
}

#[tokio::test]
async fn the_schema_is_versioned_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    drop(SqliteStateStore::open(&path).await.unwrap());
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "user_version", version + 1)
        .unwrap();
    drop(conn);
    let err = SqliteStateStore::open(&path).await.err().unwrap();
    assert!(
        err.chain().contains("newer than this build"),
        "{}",
        err.chain()
    );
}

#[test]
fn cursors_round_trip_and_garbage_is_invalid() {
    let id = ExecutionId::derive("/s", "1", "h");
    let cursor = encode_cursor(42, &id);
    assert_eq!(
        decode_cursor(&cursor).unwrap(),
        (42, id.as_str().to_string())
    );
    for bad in ["", "42", "x:y", "42:NOTHEX", "42:' OR 1=1 --"] {
        assert_eq!(
            decode_cursor(bad).unwrap_err().kind(),
            ErrorKind::Invalid,
            "{bad}"
        );
    }
}
