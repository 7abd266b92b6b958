//! Unit tests of the catalogue: schema inference, merge and changes; the observer's bounds;
//! and the store's suite on SQLite.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use super::observer::{Observer, SAMPLED_PER_FLUSH};
use super::schema::{MAX_DEPTH, MAX_FIELDS};
use super::*;
use crate::event::new_json_event;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
}

fn schema_of(values: &[(i64, Value)]) -> Schema {
    let mut schema = Schema::default();
    for (at, value) in values {
        schema.merge(&Schema::of(value, t(*at)));
    }
    schema
}

fn types(schema: &Schema, path: &str) -> Vec<JsonType> {
    schema.fields[path].types.keys().copied().collect()
}

#[test]
fn a_schema_has_every_path_with_its_types() {
    let schema = schema_of(&[(
        0,
        json!({"id": 7, "price": 9.5, "tags": ["a", "b"], "customer": {"name": "F", "vip": true},
               "note": null, "lines": [{"sku": "x", "qty": 1}], "a.b": 1}),
    )]);
    let paths: Vec<&str> = schema.fields.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        vec![
            "$",
            "$.customer",
            "$.customer.name",
            "$.customer.vip",
            "$.id",
            "$.lines",
            "$.lines[*]",
            "$.lines[*].qty",
            "$.lines[*].sku",
            "$.note",
            "$.price",
            "$.tags",
            "$.tags[*]",
            "$[\"a.b\"]",
        ]
    );
    assert_eq!(types(&schema, "$.id"), vec![JsonType::Integer]);
    assert_eq!(types(&schema, "$.price"), vec![JsonType::Number]);
    assert_eq!(types(&schema, "$.note"), vec![JsonType::Null]);
    assert!(!schema.truncated);
    assert!(schema.changes().is_empty(), "one event changes nothing");
    let document = schema.json_schema();
    assert_eq!(document["type"], "object");
    assert_eq!(
        document["properties"]["lines"]["items"]["properties"]["sku"]["type"],
        "string"
    );
    assert_eq!(document["properties"]["a.b"]["type"], "integer");
    assert_eq!(document["properties"]["customer"]["x-seen"], 1);
}

#[test]
fn a_new_field_and_a_type_change_are_flagged_with_when_they_first_appeared() {
    let schema = schema_of(&[
        (0, json!({"id": 1, "total": 3})),
        (10, json!({"id": 2, "total": 4})),
        (
            20,
            json!({"id": "A-3", "total": 5, "customer": {"name": "F", "tier": 1}}),
        ),
        (30, json!({"id": "A-4", "total": 6.5})),
    ]);
    let changes = schema.changes();
    let summary: Vec<(&str, ChangeKind, DateTime<Utc>, Vec<JsonType>)> = changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind, c.at, c.types.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "$.total",
                ChangeKind::TypeChange,
                t(30),
                vec![JsonType::Number]
            ),
            (
                "$.customer",
                ChangeKind::NewField,
                t(20),
                vec![JsonType::Object]
            ),
            (
                "$.id",
                ChangeKind::TypeChange,
                t(20),
                vec![JsonType::String]
            ),
        ]
    );
    assert_eq!(changes[2].before, vec![JsonType::Integer]);
    assert_eq!(schema.last_change(), Some(t(30)));
    assert_eq!(schema.fields["$.customer.name"].first_seen(), Some(t(20)));
    assert_eq!(schema.fields["$.id"].seen, 4);
    assert_eq!(schema.fields["$.customer"].seen, 1);
    let document = schema.json_schema();
    assert_eq!(
        document["properties"]["id"]["type"],
        json!(["integer", "string"])
    );
}

#[test]
fn merging_schemas_does_not_depend_on_their_order() {
    let a = schema_of(&[(0, json!({"x": 1})), (5, json!({"x": 1, "y": true}))]);
    let b = schema_of(&[(3, json!({"x": "s"})), (9, json!({"z": [1]}))]);
    let mut ab = a.clone();
    ab.merge(&b);
    let mut ba = b.clone();
    ba.merge(&a);
    assert_eq!(ab, ba);
    assert_eq!(ab.since(), Some(t(0)));
    let paths: Vec<String> = ab.changes().into_iter().map(|c| c.path).collect();
    assert_eq!(paths, vec!["$.z", "$.y", "$.x"]);
}

#[test]
fn a_schema_survives_json() {
    let schema = schema_of(&[(0, json!({"x": 1})), (5, json!({"x": "s", "y": [null]}))]);
    let text = serde_json::to_string(&schema).unwrap();
    let back: Schema = serde_json::from_str(&text).unwrap();
    assert_eq!(back, schema);
}

#[test]
fn deep_data_is_described_to_the_depth_bound() {
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!({ "a": deep });
    }
    let schema = Schema::of(&deep, t(0));
    assert!(schema.truncated);
    assert_eq!(schema.fields.len(), MAX_DEPTH + 1);
    let mut nested = json!(1);
    for _ in 0..100 {
        nested = json!([nested]);
    }
    let schema = Schema::of(&nested, t(0));
    assert!(schema.truncated);
    assert_eq!(schema.fields.len(), MAX_DEPTH + 1);
}

#[test]
fn wide_and_large_data_stays_within_the_field_bound() {
    let wide: serde_json::Map<String, Value> =
        (0..5_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let schema = Schema::of(&Value::Object(wide), t(0));
    assert!(schema.truncated);
    assert_eq!(schema.fields.len(), MAX_FIELDS);
    // Another schema's fields cannot push it beyond the bound either.
    let mut merged = schema.clone();
    merged.merge(&Schema::of(&json!({"other": 1}), t(5)));
    assert_eq!(merged.fields.len(), MAX_FIELDS);
    // A long array is looked at in its first items only; an array of many distinct objects
    // stops at the field bound.
    let items: Vec<Value> = (0..100_000)
        .map(|i| json!({ format!("f{i}"): i }))
        .collect();
    let started = std::time::Instant::now();
    let schema = Schema::of(&Value::Array(items), t(0));
    assert!(schema.fields.len() <= MAX_FIELDS);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let long_key = "k".repeat(10_000);
    let schema = Schema::of(&json!({ long_key: 1 }), t(0));
    assert!(schema.truncated);
    assert_eq!(schema.fields.len(), 1);
}

fn event(id: usize, source: &str, ty: &str, data: Value) -> cloudevents::Event {
    new_json_event(format!("e{id}"), source, ty, data).unwrap()
}

#[test]
fn the_observer_counts_every_event_and_looks_at_a_few() {
    let observer = Observer::new(100);
    for i in 0..1_000 {
        let data = if i == 500 {
            json!({"n": i, "late": true})
        } else {
            json!({ "n": i })
        };
        observer.observe_at(&event(i, "/s", "tick", data), t(i as i64));
    }
    let observations = observer.take();
    assert_eq!(observations.len(), 1);
    let o = &observations[0];
    assert_eq!(o.count, 1_000);
    assert_eq!((o.first_seen, o.last_seen), (t(0), t(999)));
    assert_eq!(o.hours.values().sum::<u64>(), 1_000);
    assert_eq!(o.schema.fields["$.n"].seen, u64::from(SAMPLED_PER_FLUSH));
    assert!(!o.schema.fields.contains_key("$.late"), "not sampled");
    assert!(observer.take().is_empty(), "taken");
}

#[test]
fn the_observer_holds_a_bounded_number_of_keys_and_drops_the_rest() {
    let observer = Observer::new(10);
    for i in 0..50 {
        observer.observe_at(&event(i, "/s", &format!("t{i}"), json!({})), t(0));
    }
    observer.observe_at(&event(99, "/s", "t0", json!({})), t(1));
    assert_eq!(observer.dropped(), 40);
    let observations = observer.take();
    assert_eq!(observations.len(), 10);
    assert_eq!(observations.iter().map(|o| o.count).sum::<u64>(), 11);
    let long = "x".repeat(MAX_KEY_BYTES);
    observer.observe_at(&event(1, "/s", &long, json!({})), t(0));
    assert_eq!(observer.dropped(), 41);
    // What a failed flush puts back is merged with what came meanwhile.
    observer.observe_at(&event(1, "/s", "t0", json!({})), t(2));
    observer.restore(observations);
    let again = observer.take();
    assert_eq!(again.len(), 10);
    assert_eq!(again.iter().map(|o| o.count).sum::<u64>(), 12);
}

#[test]
fn a_large_sample_is_kept_without_its_data() {
    let observer = Observer::new(10);
    let big = "x".repeat(MAX_SAMPLE_BYTES * 2);
    observer.observe_at(&event(1, "/s", "big", json!({ "blob": big })), t(0));
    let o = observer.take().remove(0);
    assert!(o.sample_truncated);
    let sample = o.sample.unwrap();
    assert_eq!(sample["type"], "big");
    assert!(sample.get("data").is_none());
    assert!(o.schema.fields.contains_key("$.blob"));
}

#[test]
fn an_entry_keeps_a_week_of_hours() {
    let observation = |at: DateTime<Utc>| Observation {
        source: "/s".into(),
        ty: "t".into(),
        first_seen: at,
        last_seen: at,
        count: 1,
        hours: [(hour_of(at), 1)].into(),
        sample: None,
        sample_truncated: false,
        schema: Schema::default(),
    };
    let mut entry = CatalogueEntry::new(&observation(t(0)), t(0));
    let later = t(0) + Duration::days(10);
    entry.merge(&observation(later), later);
    assert_eq!(entry.count, 2);
    assert_eq!(entry.hours.len(), 1, "the hour 10 days ago is gone");
    assert_eq!(entry.hour_counts(later).len(), 1);
    let row = entry.to_row().unwrap();
    assert_eq!(CatalogueEntry::from_row(row).unwrap(), entry);
}

#[tokio::test]
async fn sqlite_store_passes_the_catalogue_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::embedded::SqliteStateStore::open(&dir.path().join("state.sqlite"))
        .await
        .unwrap();
    testsuite::run(&store).await;
}

/// The dispatcher's cost per event (printed; run with `--nocapture` to see it): one hash map
/// lookup under a lock once the key's sampled events of the flush are taken.
#[test]
fn observing_an_event_is_cheap() {
    let observer = Observer::new(10_000);
    let events: Vec<cloudevents::Event> = (0..100)
        .map(|i| {
            event(
                i,
                "/shop",
                &format!("order.t{}", i % 10),
                json!({"id": i, "items": [{"sku": "a", "qty": 1}], "customer": {"name": "F"}}),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let rounds = 1_000;
    for _ in 0..rounds {
        for e in &events {
            observer.observe_at(e, t(0));
        }
    }
    let per_event = started.elapsed() / (rounds * events.len() as u32);
    println!("observing one event: {per_event:?} (100,000 events, 10 keys)");
    assert_eq!(
        observer.take().iter().map(|o| o.count).sum::<u64>(),
        100_000
    );
    assert!(per_event < std::time::Duration::from_micros(50));
}
