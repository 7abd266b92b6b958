//! The conformance suite of the event catalogue port, run by both state stores' tests.

// Test code in the library so that every backend can run it; a failed check panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use serde_json::{json, Value};

use super::observer::Observer;
use super::{CatalogueLimits, CatalogueQuery, ChangeKind, EventCatalogue, Observation};
use crate::event::new_json_event;
use crate::testsupport::unique;

/// The observations of `events` ((source, type, data) each), all seen at `at`.
pub fn observe(events: &[(&str, &str, Value)], at: DateTime<Utc>) -> Vec<Observation> {
    let observer = Observer::new(10_000);
    for (i, (source, ty, data)) in events.iter().enumerate() {
        let event = new_json_event(format!("e{i}"), *source, *ty, data.clone()).unwrap();
        observer.observe_at(&event, at);
    }
    let mut observations = observer.take();
    observations.sort_by(|a, b| (&a.source, &a.ty).cmp(&(&b.source, &b.ty)));
    observations
}

fn start() -> DateTime<Utc> {
    Utc::now().duration_trunc(Duration::seconds(1)).unwrap()
}

/// Runs every check against `catalogue`.
pub async fn run(catalogue: &dyn EventCatalogue) {
    flushes_merge_counts_times_samples_and_schemas(catalogue).await;
    a_list_filters_by_source_and_type(catalogue).await;
    new_keys_beyond_the_bound_are_refused_and_counted(catalogue).await;
    entries_not_seen_for_long_are_forgotten(catalogue).await;
    concurrent_flushes_of_one_key_lose_nothing(catalogue).await;
}

async fn flushes_merge_counts_times_samples_and_schemas(catalogue: &dyn EventCatalogue) {
    let source = format!("/{}", unique("orders"));
    let t0 = start();
    let limits = CatalogueLimits::default();
    let first = observe(
        &[
            (&source, "order.created", json!({"id": 1, "total": 9.5})),
            (&source, "order.created", json!({"id": 2, "total": 3})),
            (&source, "order.paid", json!({"id": 1})),
        ],
        t0,
    );
    let recorded = catalogue.record(&first, &limits, t0).await.unwrap();
    assert_eq!(recorded.entries, 2);
    assert_eq!(recorded.dropped_keys, 0);
    let t1 = t0 + Duration::seconds(5);
    let second = observe(
        &[(
            &source,
            "order.created",
            json!({"id": "A-3", "total": 1, "coupon": "X"}),
        )],
        t1,
    );
    catalogue.record(&second, &limits, t1).await.unwrap();
    let entry = catalogue
        .catalogue_entry(&source, "order.created")
        .await
        .unwrap()
        .expect("the entry exists");
    assert_eq!(entry.count, 3);
    assert_eq!(entry.first_seen, t0);
    assert_eq!(entry.last_seen, t1);
    assert_eq!(
        entry.hour_counts(t1).iter().map(|h| h.count).sum::<u64>(),
        3
    );
    assert_eq!(entry.sample.as_ref().unwrap()["data"]["coupon"], "X");
    let fields = &entry.schema.fields;
    assert!(fields.contains_key("$.id") && fields.contains_key("$.total"));
    let changes = entry.schema.changes();
    assert!(
        changes
            .iter()
            .any(|c| c.path == "$.coupon" && c.kind == ChangeKind::NewField && c.at == t1),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.path == "$.id" && c.kind == ChangeKind::TypeChange && c.at == t1),
        "{changes:?}"
    );
    assert!(catalogue
        .catalogue_entry(&source, "order.refunded")
        .await
        .unwrap()
        .is_none());
}

async fn a_list_filters_by_source_and_type(catalogue: &dyn EventCatalogue) {
    let tag = unique("listed");
    let (a, b) = (format!("/{tag}/a"), format!("/{tag}/b"));
    let t0 = start();
    let observations = observe(
        &[
            (&a, "com.example.Ping", json!({})),
            (&a, "com.example.pong", json!({})),
            (&b, "com.example.ping", json!({})),
        ],
        t0,
    );
    catalogue
        .record(&observations, &CatalogueLimits::default(), t0)
        .await
        .unwrap();
    let listed = |source: Option<&str>, ty: Option<&str>| CatalogueQuery {
        source: source.map(str::to_string),
        ty: ty.map(str::to_string),
        limit: None,
    };
    let keys = |summaries: Vec<super::CatalogueSummary>| -> Vec<(String, String)> {
        summaries.into_iter().map(|s| (s.source, s.ty)).collect()
    };
    let all = catalogue
        .list_catalogue(&listed(Some(&tag), None), t0)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|s| s.count == 1 && s.last_24h == 1));
    let pings = catalogue
        .list_catalogue(&listed(Some(&tag.to_uppercase()), Some("PING")), t0)
        .await
        .unwrap();
    assert_eq!(
        keys(pings),
        vec![
            (a.clone(), "com.example.Ping".to_string()),
            (b.clone(), "com.example.ping".to_string())
        ]
    );
    let one = catalogue
        .list_catalogue(
            &CatalogueQuery {
                limit: Some(1),
                ..listed(Some(&tag), None)
            },
            t0,
        )
        .await
        .unwrap();
    assert_eq!(keys(one), vec![(a, "com.example.Ping".to_string())]);
}

async fn new_keys_beyond_the_bound_are_refused_and_counted(catalogue: &dyn EventCatalogue) {
    let t0 = start();
    let stored = catalogue
        .list_catalogue(
            &CatalogueQuery {
                limit: Some(super::MAX_LIST),
                ..CatalogueQuery::default()
            },
            t0,
        )
        .await
        .unwrap()
        .len() as u64;
    let limits = CatalogueLimits {
        max_entries: stored + 2,
        ..CatalogueLimits::default()
    };
    let source = format!("/{}", unique("bounded"));
    let events: Vec<(&str, String, Value)> = (0..5)
        .map(|i| (source.as_str(), format!("t{i}"), json!({ "i": i })))
        .collect();
    let events: Vec<(&str, &str, Value)> = events
        .iter()
        .map(|(s, t, d)| (*s, t.as_str(), d.clone()))
        .collect();
    let recorded = catalogue
        .record(&observe(&events, t0), &limits, t0)
        .await
        .unwrap();
    assert_eq!(recorded.entries, 2);
    assert_eq!(recorded.dropped_keys, 3);
    assert_eq!(recorded.dropped_events, 3);
    // A key already there still counts when the catalogue is full.
    let again = catalogue
        .record(&observe(&events, t0), &limits, t0)
        .await
        .unwrap();
    assert_eq!((again.entries, again.dropped_keys), (2, 3));
    let entry = catalogue.catalogue_entry(&source, "t0").await.unwrap();
    assert_eq!(entry.unwrap().count, 2);
    assert!(catalogue
        .catalogue_entry(&source, "t4")
        .await
        .unwrap()
        .is_none());
}

async fn entries_not_seen_for_long_are_forgotten(catalogue: &dyn EventCatalogue) {
    let now = start();
    let limits = CatalogueLimits::default();
    let source = format!("/{}", unique("stale"));
    let long_ago = now - limits.forget_after - Duration::hours(1);
    let old = observe(&[(&source, "old", json!(1))], long_ago);
    catalogue.record(&old, &limits, now).await.unwrap();
    assert!(catalogue
        .catalogue_entry(&source, "old")
        .await
        .unwrap()
        .is_some());
    let fresh = observe(&[(&source, "fresh", json!(1))], now);
    let recorded = catalogue.record(&fresh, &limits, now).await.unwrap();
    assert!(recorded.forgotten >= 1);
    assert!(catalogue
        .catalogue_entry(&source, "old")
        .await
        .unwrap()
        .is_none());
    assert!(catalogue
        .catalogue_entry(&source, "fresh")
        .await
        .unwrap()
        .is_some());
}

async fn concurrent_flushes_of_one_key_lose_nothing(catalogue: &dyn EventCatalogue) {
    let source = format!("/{}", unique("raced"));
    let t0 = start();
    let limits = CatalogueLimits::default();
    let flushes: Vec<Vec<Observation>> = (0..8)
        .map(|i| {
            observe(
                &[(&source, "raced", json!({ format!("f{i}"): i }))],
                t0 + Duration::milliseconds(i),
            )
        })
        .collect();
    let results = futures::future::join_all(
        flushes
            .iter()
            .map(|observations| catalogue.record(observations, &limits, t0)),
    )
    .await;
    for result in results {
        result.unwrap();
    }
    let entry = catalogue
        .catalogue_entry(&source, "raced")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.count, 8);
    for i in 0..8 {
        assert!(entry.schema.fields.contains_key(&format!("$.f{i}")));
    }
}
