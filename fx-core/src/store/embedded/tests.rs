//! Tests of the SQLite state store beyond the conformance suite.

use std::collections::BTreeSet;

use super::*;
use crate::error::ErrorKind;
use crate::store::encoding::{decode_cursor, encode_cursor};
use crate::testsupport::execution;

#[tokio::test]
async fn passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap();
    crate::store::testsuite::run(&store).await;
    crate::schedule::testsuite::run(&store).await;
    crate::notify::testsuite::run(&store).await;
    crate::notify::testsuite::deleting_an_execution_deletes_its_notifications(&store).await;
    crate::workflow::testsuite::run(&store).await;
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

#[tokio::test]
async fn passes_the_text_filter_checks_with_a_small_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap()
        .with_text_window(4);
    crate::store::testsuite::text_filter::run(&store).await;
}

/// Executions of handler `h` for events with these ids, a second apart, oldest first.
fn with_event_ids(ids: &[&str]) -> Vec<Execution> {
    let base = time(1_700_000_000_000_000).unwrap();
    ids.iter()
        .enumerate()
        .map(|(n, id)| {
            let event =
                crate::event::new_json_event(*id, "/t", "t", serde_json::json!({})).unwrap();
            let at = base + chrono::Duration::seconds(n as i64);
            crate::testsupport::queued_execution("h", event, at)
        })
        .collect()
}

/// The event ids of the executions whose id or source holds `text` (a page of 50).
async fn event_ids_holding(store: &SqliteStateStore, text: &str) -> Vec<String> {
    let page = store
        .list_executions(&ExecutionQuery {
            text: Some(text.into()),
            ..ExecutionQuery::default()
        })
        .await
        .unwrap();
    page.items.into_iter().map(|s| s.event_id).collect()
}

/// FTS5's own check of an external content table against its content.
fn text_index_is_consistent(conn: &Connection) {
    conn.execute(
        "INSERT INTO executions_text (executions_text, rank) VALUES ('integrity-check', 1)",
        [],
    )
    .unwrap();
}

#[tokio::test]
async fn the_text_index_follows_inserts_deletes_and_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap()
        .with_text_window(2);
    let all = with_event_ids(&["alpha-1", "alpha-2", "beta-3", "gamma-4", "gamma-5"]);
    store.create_executions(&all).await.unwrap();
    assert_eq!(
        event_ids_holding(&store, "ALPHA").await,
        ["alpha-2", "alpha-1"]
    );
    // Retention's delete; then a new execution, which takes the newest one's rowid.
    let gone = [all[0].id.clone(), all[4].id.clone()];
    store.delete_executions(&gone).await.unwrap();
    let fresh = with_event_ids(&["x", "x", "x", "x", "x", "delta-alpha-6"]);
    store.create_execution(&fresh[5]).await.unwrap();
    assert_eq!(
        event_ids_holding(&store, "alpha").await,
        ["delta-alpha-6", "alpha-2"]
    );
    assert!(event_ids_holding(&store, "gamma-5").await.is_empty());
    // The store never changes an event id or source; the index follows if anything does.
    let renamed = all[2].id.clone();
    store
        .call(move |conn| {
            conn.execute(
                "UPDATE executions SET event_id = 'epsilon-3' WHERE id = ?1",
                params![renamed.as_str()],
            )
            .unwrap();
            text_index_is_consistent(conn);
            Ok(())
        })
        .await
        .unwrap();
    assert!(event_ids_holding(&store, "beta").await.is_empty());
    assert_eq!(event_ids_holding(&store, "epsilon").await, ["epsilon-3"]);
    // State changes leave it alone.
    store
        .apply_state(&StateEvent::Started {
            execution_id: all[1].id.clone(),
            attempt: 1,
            at: time(1_700_000_100_000_000).unwrap(),
            executor: "x".into(),
        })
        .await
        .unwrap();
    store
        .call(|conn| {
            text_index_is_consistent(conn);
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_text_index_leaves_case_beyond_ascii_as_like_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStateStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap()
        .with_text_window(1);
    // The trigram index folds `È` to `è`; `LIKE` keeps them apart (ASCII case only).
    let all = with_event_ids(&["crème-1", "CRÈME-2", "CRèME-3", "x", "x"]);
    store.create_executions(&all).await.unwrap();
    assert_eq!(
        event_ids_holding(&store, "crème").await,
        ["CRèME-3", "crème-1"]
    );
    assert_eq!(event_ids_holding(&store, "CRÈME").await, ["CRÈME-2"]);
    assert_eq!(event_ids_holding(&store, "rÈm").await, ["CRÈME-2"]);
}

#[tokio::test]
async fn a_file_from_before_notifications_gets_their_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    let conn = Connection::open(&path).unwrap();
    for sql in &MIGRATIONS[..8] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 8).unwrap();
    drop(conn);
    let store = SqliteStateStore::open(&path).await.unwrap();
    crate::notify::testsuite::run(&store).await;
}

#[tokio::test]
async fn a_file_from_before_the_text_index_gets_it_for_its_executions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sqlite");
    // A file at schema version 6, with executions.
    let conn = Connection::open(&path).unwrap();
    for sql in &MIGRATIONS[..6] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 6).unwrap();
    for e in with_event_ids(&["old-needle-1", "old-2", "old-needle-3", "old-4", "old-5"]) {
        NewExecution::of(&e).unwrap().insert(&conn).unwrap();
    }
    drop(conn);
    let store = SqliteStateStore::open(&path)
        .await
        .unwrap()
        .with_text_window(2);
    assert_eq!(
        event_ids_holding(&store, "NEEDLE").await,
        ["old-needle-3", "old-needle-1"]
    );
    store
        .call(|conn| {
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, MIGRATIONS.len() as i64);
            text_index_is_consistent(conn);
            Ok(())
        })
        .await
        .unwrap();
}
