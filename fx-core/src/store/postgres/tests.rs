//! Tests against a real PostgreSQL (`FX_TEST_POSTGRES`, started by
//! `infra/scripts/start-postgres.sh`), each in a fresh schema dropped at the end; and tests of an
//! unreachable database, which need no server.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::rows::{time, SUMMARY_COLUMNS};
use super::testing::{drop_schema, fresh_settings, raw_client};
use super::*;
use chrono::{DateTime, Utc};

use crate::error::ErrorKind;
use crate::package::PackageDigest;
use crate::store::encoding::decode_cursor;
use crate::testsupport::execution;

/// Inserts queued executions in one statement per 10,000 (test data loading only: the store
/// creates executions one by one).
async fn insert_executions(settings: &PostgresSettings, executions: &[Execution]) {
    let client = raw_client(settings).await;
    let sql = format!(
        "INSERT INTO \"{}\".executions (id, handler, status, attempts, event_id, event_source,
            event_type, event, package, output, created_at)
         SELECT id, handler, 'queued', 0, event_id, event_source, event_type, event, NULL, '[]', at
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::timestamptz[]) AS t(id, handler, event_id, event_source, event_type, event, at)",
        settings.schema
    );
    for chunk in executions.chunks(10_000) {
        let summaries: Vec<ExecutionSummary> = chunk.iter().map(ExecutionSummary::from).collect();
        let ids: Vec<&str> = summaries.iter().map(|s| s.id.as_str()).collect();
        let handlers: Vec<&str> = summaries.iter().map(|s| s.handler.as_str()).collect();
        let event_ids: Vec<&str> = summaries.iter().map(|s| s.event_id.as_str()).collect();
        let sources: Vec<&str> = summaries.iter().map(|s| s.event_source.as_str()).collect();
        let types: Vec<&str> = summaries.iter().map(|s| s.event_type.as_str()).collect();
        let events: Vec<String> = chunk
            .iter()
            .map(|e| serde_json::to_string(&e.event).unwrap())
            .collect();
        let ats: Vec<DateTime<Utc>> = chunk.iter().map(|e| e.created_at).collect();
        client
            .execute(
                &sql,
                &[&ids, &handlers, &event_ids, &sources, &types, &events, &ats],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn postgres_store_passes_the_conformance_suite() {
    let Some(settings) = fresh_settings("postgres_store_passes_the_conformance_suite") else {
        return;
    };
    let store = PostgresStateStore::open(&settings).await.unwrap();
    crate::store::testsuite::run(&store).await;
    crate::schedule::testsuite::run(&store).await;
    crate::notify::testsuite::run(&store).await;
    crate::notify::testsuite::deleting_an_execution_deletes_its_notifications(&store).await;
    crate::workflow::testsuite::run(&store).await;
    drop(store);
    drop_schema(&settings).await;
}

#[tokio::test]
async fn postgres_migrations_apply_once_however_often_and_concurrently_opened() {
    let Some(settings) =
        fresh_settings("postgres_migrations_apply_once_however_often_and_concurrently_opened")
    else {
        return;
    };
    // Processes starting together: the advisory lock orders them.
    let opened =
        futures::future::join_all((0..4).map(|_| PostgresStateStore::open(&settings))).await;
    for store in opened {
        store.unwrap();
    }
    drop(PostgresStateStore::open(&settings).await.unwrap());
    let client = raw_client(&settings).await;
    let rows = client
        .query(
            &format!(
                "SELECT version FROM \"{}\".fx_schema_migrations WHERE component = 'state' ORDER BY version",
                settings.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let expected: Vec<i32> = migrations::STATE.iter().map(|m| m.version).collect();
    assert_eq!(versions, expected);
    drop_schema(&settings).await;
}

#[tokio::test]
async fn postgres_schema_from_before_notifications_gets_their_table() {
    let Some(settings) =
        fresh_settings("postgres_schema_from_before_notifications_gets_their_table")
    else {
        return;
    };
    let db = PgDatabase::connect(&settings).await.unwrap();
    migrations::migrate(&db, "state", &migrations::STATE[..6])
        .await
        .unwrap();
    drop(db);
    let store = PostgresStateStore::open(&settings).await.unwrap();
    crate::notify::testsuite::run(&store).await;
    drop(store);
    drop_schema(&settings).await;
}

#[tokio::test]
async fn postgres_refuses_a_schema_newer_than_it_knows() {
    let Some(settings) = fresh_settings("postgres_refuses_a_schema_newer_than_it_knows") else {
        return;
    };
    drop(PostgresStateStore::open(&settings).await.unwrap());
    let client = raw_client(&settings).await;
    client
        .execute(
            &format!(
                "INSERT INTO \"{}\".fx_schema_migrations (component, version, description)
                 VALUES ('state', 999, 'from the future')",
                settings.schema
            ),
            &[],
        )
        .await
        .unwrap();
    let err = PostgresStateStore::open(&settings).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        err.chain().contains("newer than this build"),
        "{}",
        err.chain()
    );
    drop_schema(&settings).await;
}

#[tokio::test]
async fn postgres_state_survives_a_restart() {
    let Some(settings) = fresh_settings("postgres_state_survives_a_restart") else {
        return;
    };
    let store = PostgresStateStore::open(&settings).await.unwrap();
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
        digest: PackageDigest::of(b"p"),
        size: 1,
        manifest,
        uploaded_at: at,
        uploaded_by: Some("me".into()),
    };
    store.add_package_version(&version).await.unwrap();
    store.set_alias("p", "stable", "1.0.0").await.unwrap();
    let before = store.get_execution(&e.id).await.unwrap().unwrap();
    drop(store);

    let store = PostgresStateStore::open(&settings).await.unwrap();
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
    drop(store);
    drop_schema(&settings).await;
}

#[tokio::test]
async fn postgres_paging_through_100000_executions_returns_each_once() {
    let Some(settings) =
        fresh_settings("postgres_paging_through_100000_executions_returns_each_once")
    else {
        return;
    };
    let store = PostgresStateStore::open(&settings).await.unwrap();
    let base = time(1_700_000_000_000_000).unwrap();
    let all: Vec<Execution> = (0..100_000u32)
        .map(|n| {
            // Ten executions share each timestamp, so the id breaks ties.
            let at = base + chrono::Duration::microseconds(i64::from(n / 10));
            execution(n, if n % 2 == 0 { "even" } else { "odd" }, at)
        })
        .collect();
    insert_executions(&settings, &all).await;
    // Some through the store itself, concurrently, so both paths are paged together.
    let extra: Vec<Execution> = (100_000..100_200u32)
        .map(|n| {
            execution(
                n,
                "even",
                base + chrono::Duration::microseconds(i64::from(n % 37)),
            )
        })
        .collect();
    let created = futures::future::join_all(extra.iter().map(|e| store.create_execution(e))).await;
    assert!(created.into_iter().all(|c| c.unwrap() == Created::New));
    // Every seventh even one succeeded.
    for e in all.iter().step_by(14).take(2_000) {
        store
            .apply_state(&StateEvent::Succeeded {
                execution_id: e.id.clone(),
                attempt: 1,
                at: base,
                duration_us: 5,
                output: vec![],
                measurements: None,
            })
            .await
            .unwrap();
    }
    let client = raw_client(&settings).await;
    client
        .batch_execute(&format!("ANALYZE \"{}\".executions", settings.schema))
        .await
        .unwrap();

    let mut ids: BTreeSet<ExecutionId> = all.iter().map(|e| e.id.clone()).collect();
    ids.extend(extra.iter().map(|e| e.id.clone()));
    let started = Instant::now();
    for (handler, status, limit, expected) in [
        (None, None, 500, 100_200),
        (Some("even"), None, 333, 50_200),
        (Some("even"), Some(ExecutionStatus::Succeeded), 97, 2_000),
        (None, Some(ExecutionStatus::Queued), 500, 98_200),
    ] {
        let mut query = ExecutionQuery {
            handler: handler.map(str::to_string),
            status,
            limit: Some(limit),
            ..ExecutionQuery::default()
        };
        let mut seen = Vec::with_capacity(expected);
        loop {
            let page = store.list_executions(&query).await.unwrap();
            assert!(page.items.len() <= limit as usize);
            seen.extend(page.items.into_iter().map(|s| (s.created_at, s.id)));
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(seen.len(), expected, "{handler:?} {status:?}");
        let distinct: BTreeSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(distinct.len(), expected, "every execution exactly once");
        assert!(distinct.is_subset(&ids));
        assert!(
            seen.windows(2).all(|w| w[0] > w[1]),
            "newest first, ties by id"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "paging took {:?}",
        started.elapsed()
    );

    // Every page of every filter reads an index range, never the table sorted.
    let cursor = "(created_at, id) < ('2023-11-14 22:13:20.005+00', 'ffff')";
    for filter in [
        String::new(),
        "WHERE handler = 'even'".into(),
        "WHERE handler = 'even' AND status = 'succeeded'".into(),
        "WHERE status = 'queued'".into(),
        format!("WHERE {cursor}"),
        format!("WHERE handler = 'odd' AND {cursor}"),
    ] {
        let plan = client
            .query(
                &format!(
                    "EXPLAIN SELECT {SUMMARY_COLUMNS} FROM \"{}\".executions {filter}
                     ORDER BY created_at DESC, id DESC LIMIT 51",
                    settings.schema
                ),
                &[],
            )
            .await
            .unwrap();
        let plan: Vec<String> = plan.iter().map(|r| r.get(0)).collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan using executions_"),
            "{filter}: {plan}"
        );
        assert!(!plan.contains("Sort"), "{filter}: {plan}");
    }

    // The text filter's window, sample and index statements, planned without their values (as
    // the store's prepared statements come to be): the window and the sample read a filter's
    // index range and no trigram index; the index statement the trigram indexes and no
    // filter's index.
    if store.text_search.indexed {
        client
            .batch_execute(&format!(
                "SET search_path = \"{}\"; SET plan_cache_mode = force_generic_plan",
                settings.schema
            ))
            .await
            .unwrap();
        let text = ExecutionQuery {
            text: Some("4242".into()),
            ..ExecutionQuery::default()
        };
        let with_handler = ExecutionQuery {
            handler: Some("even".into()),
            ..text.clone()
        };
        for (n, (query, values)) in [(&text, ""), (&with_handler, "'even', ")]
            .into_iter()
            .enumerate()
        {
            let filter = list::Filter::of(query).unwrap();
            for (name, sql, values, reads, never) in [
                (
                    "window",
                    filter.window_sql(),
                    format!("{values}4096, '%4242%', 51"),
                    "Index Scan using executions_",
                    "_trgm",
                ),
                (
                    "sample",
                    filter.sample_sql(),
                    format!("{values}ARRAY['abc', '4242'], 256"),
                    "Index Scan using executions_",
                    "_trgm",
                ),
                (
                    "index",
                    filter.indexed_sql(),
                    format!("{values}'%4242%', '%4242%', 51"),
                    "Bitmap Index Scan on executions_event_id_trgm",
                    "Index Scan using executions_",
                ),
            ] {
                client
                    .batch_execute(&format!("PREPARE {name}_{n} AS {sql}"))
                    .await
                    .unwrap();
                let plan = client
                    .query(&format!("EXPLAIN EXECUTE {name}_{n}({values})"), &[])
                    .await
                    .unwrap();
                let plan: Vec<String> = plan.iter().map(|r| r.get(0)).collect();
                let plan = plan.join("\n");
                assert!(plan.contains(reads), "{name} {query:?}: {plan}");
                assert!(!plan.contains(never), "{name} {query:?}: {plan}");
            }
        }
    }
    drop(store);
    drop_schema(&settings).await;
}

#[tokio::test]
async fn postgres_store_passes_the_text_filter_checks_with_a_small_window() {
    let Some(settings) =
        fresh_settings("postgres_store_passes_the_text_filter_checks_with_a_small_window")
    else {
        return;
    };
    let store = PostgresStateStore::open(&settings)
        .await
        .unwrap()
        .with_text_window(4);
    crate::store::testsuite::text_filter::run(&store).await;
    drop(store);
    drop_schema(&settings).await;
}

/// The store's text index names, sorted.
async fn text_indexes(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    let rows = client
        .query(
            "SELECT indexname::text FROM pg_indexes
             WHERE schemaname = $1 AND indexname LIKE '%\\_trgm' ORDER BY indexname",
            &[&schema],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn postgres_text_index_is_built_at_open_and_again_once_dropped() {
    let test = "postgres_text_index_is_built_at_open_and_again_once_dropped";
    let Some(settings) = fresh_settings(test) else {
        return;
    };
    let client = raw_client(&settings).await;
    let available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'",
            &[],
        )
        .await
        .unwrap();
    if available.is_none() {
        eprintln!("skipped {test}: the test server has no pg_trgm to install");
        return;
    }
    let both = ["executions_event_id_trgm", "executions_event_source_trgm"];
    let store = PostgresStateStore::open(&settings).await.unwrap();
    assert!(store.text_search.indexed);
    assert_eq!(text_indexes(&client, &settings.schema).await, both);
    drop(store);

    // Gone (as when the extension's schema is dropped): the next opens, together, build it
    // again, once.
    client
        .batch_execute(&format!(
            "DROP INDEX \"{}\".executions_event_id_trgm",
            settings.schema
        ))
        .await
        .unwrap();
    let opened =
        futures::future::join_all((0..3).map(|_| PostgresStateStore::open(&settings))).await;
    for store in opened {
        assert!(store.unwrap().text_search.indexed);
    }
    assert_eq!(text_indexes(&client, &settings.schema).await, both);
    drop_schema(&settings).await;
}

#[tokio::test]
async fn postgres_cursors_are_the_embedded_stores() {
    let Some(settings) = fresh_settings("postgres_cursors_are_the_embedded_stores") else {
        return;
    };
    let store = PostgresStateStore::open(&settings).await.unwrap();
    let at = time(1_700_000_000_000_042).unwrap();
    for n in 0..3 {
        store
            .create_execution(&execution(n, "c", at))
            .await
            .unwrap();
    }
    let query = ExecutionQuery {
        handler: Some("c".into()),
        limit: Some(1),
        ..ExecutionQuery::default()
    };
    let page = store.list_executions(&query).await.unwrap();
    let cursor = page.next_cursor.unwrap();
    assert_eq!(
        decode_cursor(&cursor).unwrap(),
        (at.timestamp_micros(), page.items[0].id.as_str().to_string())
    );
    let id = "00000000000000000000000000000000";
    for garbage in [
        "garbage".to_string(),
        // Beyond what chrono represents.
        format!("{}:{id}", i64::MIN),
        // Representable, but before PostgreSQL's first timestamp (4713 BC).
        format!("-400000000000000000:{id}"),
    ] {
        let err = store
            .list_executions(&ExecutionQuery {
                cursor: Some(garbage.clone()),
                ..query.clone()
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{garbage}: {}", err.chain());
        assert!(
            err.message().contains("malformed"),
            "{garbage}: {}",
            err.chain()
        );
    }
    drop(store);
    drop_schema(&settings).await;
}

#[tokio::test]
async fn postgres_open_with_the_database_down_is_unavailable_and_names_it() {
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = PostgresSettings {
        connect_timeout_ms: 2_000,
        ..PostgresSettings::new(format!("postgres://fx:s3cret@127.0.0.1:{port}/fx"))
    };
    let started = Instant::now();
    let err = PostgresStateStore::open(&settings).await.err().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(
        err.message().contains(&format!("127.0.0.1:{port}/fx")),
        "{}",
        err.message()
    );
    assert!(!err.chain().contains("s3cret"), "{}", err.chain());
    let err = crate::sink::postgres::PostgresSink::open(&settings)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
}

#[tokio::test]
async fn postgres_open_against_a_silent_server_fails_within_the_connect_timeout() {
    // Accepts connections (the kernel does) but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let settings = PostgresSettings {
        connect_timeout_ms: 500,
        ..PostgresSettings::new(format!("postgres://fx:s3cret@127.0.0.1:{port}/fx"))
    };
    let started = Instant::now();
    let err = PostgresStateStore::open(&settings).await.err().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(
        err.message().contains(&format!("127.0.0.1:{port}/fx")),
        "{}",
        err.message()
    );
    drop(listener);
}

#[test]
fn backend_settings_choose_postgres_for_state_and_logs() {
    let parsed: crate::backends::BackendSettings = toml::from_str(
        r#"
        [state]
        kind = "postgres"
        url = "postgres://fx:s3cret@db:5432/fx"
        schema = "ferrisfx"

        [sink]
        kind = "postgres"
        url = "postgres://fx:s3cret@db:5432/fx"
        pool_size = 4
        "#,
    )
    .unwrap();
    let crate::backends::StateStoreSettings::Postgres(state) = &parsed.state else {
        panic!("{parsed:?}");
    };
    assert_eq!(state.schema, "ferrisfx");
    assert_eq!(state.pool_size, 16);
    let crate::backends::SinkSettings::Postgres(sink) = &parsed.sink else {
        panic!("{parsed:?}");
    };
    assert_eq!((sink.schema.as_str(), sink.pool_size), ("public", 4));
    assert!(!format!("{parsed:?}").contains("s3cret"));
    let unknown = toml::from_str::<crate::backends::BackendSettings>(
        "[state]\nkind = \"postgres\"\nurl = \"postgres://db/fx\"\npasword = \"typo\"\n",
    );
    assert!(unknown.is_err());
}

/// Whether the pool's connections to the test server are encrypted.
async fn encrypted(settings: &PostgresSettings) -> bool {
    let db = PgDatabase::connect(settings).await.unwrap();
    let client = db.client().await.unwrap();
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The test server's settings with TLS, and its CA and another CA, or `None` (skipped).
fn tls_settings(test: &str) -> Option<(PostgresSettings, String, String)> {
    let url = crate::testenv::backend("FX_TEST_POSTGRES", test)?;
    let ca = crate::testenv::backend("FX_TEST_POSTGRES_CA", test)?;
    let other = crate::testenv::backend("FX_TEST_POSTGRES_OTHER_CA", test)?;
    Some((PostgresSettings::new(url), ca, other))
}

#[tokio::test]
async fn tls_is_used_when_asked_and_the_certificate_is_checked_with_verify_full() {
    let Some((plain, ca, other)) = tls_settings("postgres tls") else {
        return;
    };
    assert!(!encrypted(&plain).await, "disable: no tls");
    let require = PostgresSettings {
        tls_mode: PgTlsMode::Require,
        ..plain.clone()
    };
    assert!(encrypted(&require).await, "require: tls");
    let verified = PostgresSettings {
        tls_mode: PgTlsMode::VerifyFull,
        ca_file: Some(ca.clone().into()),
        ..plain.clone()
    };
    assert!(encrypted(&verified).await, "verify-full: tls");
    // The state store works over it.
    let store = PostgresStateStore::open(&verified).await.unwrap();
    store.ready().await.unwrap();

    // A CA that did not sign the server's certificate: refused, saying why.
    let wrong = PostgresSettings {
        ca_file: Some(other.into()),
        ..verified.clone()
    };
    let err = PgDatabase::connect(&wrong).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    let chain = err.chain().to_lowercase();
    assert!(
        chain.contains("tls") && chain.contains("certificate"),
        "{chain}"
    );
    // The host name is checked too: the certificate names localhost and 127.0.0.1 only (the
    // connection goes to the same server, under another name).
    let url = url::Url::parse(&verified.url).unwrap();
    let other_name = PostgresSettings {
        url: format!(
            "postgres://postgres@db.example.com:{}/fx?hostaddr=127.0.0.1",
            url.port().unwrap()
        ),
        ..verified.clone()
    };
    let err = PgDatabase::connect(&other_name).await.err().unwrap();
    assert!(
        err.chain().to_lowercase().contains("certificate"),
        "{}",
        err.chain()
    );
}

#[tokio::test]
async fn verify_full_needs_a_readable_ca_file() {
    let base = PostgresSettings {
        tls_mode: PgTlsMode::VerifyFull,
        ..PostgresSettings::new("postgres://u@127.0.0.1:1/fx")
    };
    let err = PgDatabase::connect(&base).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.chain().contains("needs ca_file"), "{}", err.chain());
    let dir = tempfile::tempdir().unwrap();
    let missing = PostgresSettings {
        ca_file: Some(dir.path().join("nope.pem")),
        ..base.clone()
    };
    let err = PgDatabase::connect(&missing).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.chain().contains("nope.pem"), "{}", err.chain());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let empty = PostgresSettings {
        ca_file: Some(garbage),
        ..base
    };
    let err = PgDatabase::connect(&empty).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{}", err.chain());
}
