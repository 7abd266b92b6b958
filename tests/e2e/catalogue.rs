//! The event catalogue end to end (issue 19): a mixed stream sent over HTTP (structured and
//! binary mode, JSON and text data) shows in `/api/v1/catalogue` with the right types, counts,
//! schemas and matching handlers; an event with a new field is flagged; huge and deep data
//! and a flood of distinct keys stay within the bounds.

use std::time::Duration;

use fx_core::testsupport::poll_until;
use fx_tests::{Api, TestPlatform};
use serde_json::{json, Value};

/// Sends a structured-mode CloudEvent from `source`, asserting it was accepted.
async fn emit(api: &Api, source: &str, ty: &str, id: &str, data: Value) {
    let event = json!({
        "specversion": "1.0", "id": id, "source": source, "type": ty,
        "datacontenttype": "application/json", "data": data,
    });
    let (status, v) = api
        .post_raw(
            "/events",
            &[("content-type", "application/cloudevents+json")],
            event.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 202, "event {id} refused: {v}");
}

/// Sends a binary-mode CloudEvent with a text body, asserting it was accepted.
async fn emit_text(api: &Api, source: &str, ty: &str, id: &str, body: &str) {
    let (status, v) = api
        .post_raw(
            "/events",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", id),
                ("ce-source", source),
                ("ce-type", ty),
                ("content-type", "text/plain"),
            ],
            body.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(status, 202, "event {id} refused: {v}");
}

/// The catalogue's entries as (source, type) → count.
async fn counts(api: &Api) -> Vec<(String, String, u64)> {
    let (status, v) = api.get("/api/v1/catalogue").await;
    assert_eq!(status, 200, "{v}");
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Waits until the catalogue holds exactly `expected` (source, type, count), sorted, besides
/// the events the functions emit (`/functions/…`).
async fn until_catalogue_is(api: &Api, expected: &[(&str, &str, u64)]) {
    let expected: Vec<(String, String, u64)> = expected
        .iter()
        .map(|(s, t, c)| (s.to_string(), t.to_string(), *c))
        .collect();
    let expected = &expected;
    poll_until(
        "the catalogue shows the stream",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move {
            let mut found = counts(api).await;
            found.retain(|(source, _, _)| !source.starts_with("/functions/"));
            if &found == expected {
                Ok(())
            } else {
                Err(format!("found {found:?}"))
            }
        },
    )
    .await
}

async fn entry(api: &Api, source: &str, ty: &str) -> Value {
    // The sources and types of this test need no escaping but the slash.
    let query = format!("source={}&type={ty}", source.replace('/', "%2F"));
    let (status, v) = api.get(&format!("/api/v1/catalogue/entry?{query}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn field_types(entry: &Value, path: &str) -> Vec<String> {
    entry["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no field {path} in {:#}", entry["fields"]))["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_catalogue_after_a_mixed_stream_shows_types_counts_and_schema_and_flags_a_new_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = fx_tests::open_settings();
    settings.data_dir = dir.path().to_path_buf();
    settings.example = false;
    settings.gateway.catalogue.flush_interval_ms = 100;
    settings.gateway.catalogue.max_entries = 10;
    let fx = TestPlatform::start_with(settings).await;
    fx.upload_example("hello").await;
    fx.handler("on-orders", "hello", "order.created", json!({}))
        .await;

    // A mixed stream: three JSON types from two sources, one with text data, interleaved.
    for i in 0..30 {
        let items = json!([{"sku": format!("S{i}"), "qty": i % 3 + 1}]);
        emit(
            &fx,
            "/shop",
            "order.created",
            &format!("c{i}"),
            json!({"id": i, "total": i as f64 + 0.5, "items": items}),
        )
        .await;
        if i % 3 == 0 {
            emit(
                &fx,
                "/shop",
                "order.paid",
                &format!("p{i}"),
                json!({"id": i, "paid": true}),
            )
            .await;
        }
        if i % 5 == 0 {
            emit(
                &fx,
                "/auth",
                "user.signed_up",
                &format!("u{i}"),
                json!({"email": "a@b.c", "plan": null}),
            )
            .await;
            emit_text(&fx, "/logs", "log.line", &format!("l{i}"), "GET / 200").await;
        }
    }
    until_catalogue_is(
        &fx,
        &[
            ("/auth", "user.signed_up", 6),
            ("/logs", "log.line", 6),
            ("/shop", "order.created", 30),
            ("/shop", "order.paid", 10),
        ],
    )
    .await;
    let created = entry(&fx, "/shop", "order.created").await;
    assert_eq!(field_types(&created, "$"), vec!["object"]);
    assert_eq!(field_types(&created, "$.id"), vec!["integer"]);
    assert_eq!(field_types(&created, "$.total"), vec!["number"]);
    assert_eq!(field_types(&created, "$.items[*].sku"), vec!["string"]);
    assert_eq!(
        created["schema"]["properties"]["items"]["items"]["properties"]["qty"]["type"],
        "integer"
    );
    assert_eq!(created["changes"], json!([]), "nothing changed yet");
    assert_eq!(
        created["handlers"],
        json!([{"name": "on-orders", "enabled": true}])
    );
    assert_eq!(created["sample"]["type"], "order.created");
    let hours: u64 = created["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hours, 30);
    // What the handler's function emits is catalogued too.
    poll_until(
        "the function's events are catalogued",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let found = counts(&fx).await;
            let greeted = found.iter().any(|(s, t, n)| {
                s == "/functions/hello" && t == "com.ferrisfx.hello.greeted" && *n == 30
            });
            if greeted {
                Ok(())
            } else {
                Err(format!("found {found:?}"))
            }
        },
    )
    .await;
    let signed_up = entry(&fx, "/auth", "user.signed_up").await;
    assert_eq!(field_types(&signed_up, "$.plan"), vec!["null"]);
    assert_eq!(signed_up["handlers"], json!([]));
    let lines = entry(&fx, "/logs", "log.line").await;
    assert_eq!(field_types(&lines, "$"), vec!["string"]);

    // A new field appears, and `id` becomes a string too: both flagged, with their time.
    let before = chrono::Utc::now();
    emit(
        &fx,
        "/shop",
        "order.created",
        "c-new",
        json!({"id": "A-31", "total": 1.5, "items": [], "coupon": {"code": "SPRING"}}),
    )
    .await;
    until_catalogue_is(
        &fx,
        &[
            ("/auth", "user.signed_up", 6),
            ("/logs", "log.line", 6),
            ("/shop", "order.created", 31),
            ("/shop", "order.paid", 10),
        ],
    )
    .await;
    let created = entry(&fx, "/shop", "order.created").await;
    let changes = created["changes"].as_array().unwrap();
    let flagged: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), c["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        flagged,
        vec![("$.coupon", "new_field"), ("$.id", "type_change")],
        "{changes:#?}"
    );
    for change in changes {
        let at: chrono::DateTime<chrono::Utc> = change["at"].as_str().unwrap().parse().unwrap();
        assert!(at >= before, "{change}");
    }
    assert_eq!(field_types(&created, "$.id"), vec!["integer", "string"]);
    assert_eq!(field_types(&created, "$.coupon.code"), vec!["string"]);
    let page = fx
        .get_text("/catalogue/entry?source=%2Fshop&type=order.created")
        .await
        .1;
    assert!(page.contains("new field") && page.contains("$.coupon"));
    // The CLI shows the same as tables.
    let cli = |args: &'static [&'static str]| {
        let (base, config) = (fx.base.clone(), dir.path().to_path_buf());
        async move {
            let out = tokio::process::Command::new(fx_tests::processes::ferrisfx_binary())
                .args(args)
                .env("FX_SERVER", base)
                .env("FX_CONFIG_DIR", config)
                .env_remove("FX_TOKEN")
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let list = cli(&["catalogue", "list", "--source", "/shop"]).await;
    assert!(list.starts_with("SOURCE"), "{list}");
    assert_eq!(
        list.lines().count(),
        3,
        "order.created and order.paid: {list}"
    );
    let shown = cli(&[
        "catalogue",
        "show",
        "--source",
        "/shop",
        "--type",
        "order.created",
    ])
    .await;
    assert!(shown.contains("new field    $.coupon"), "{shown}");
    assert!(shown.contains("type change  $.id"), "{shown}");

    // Huge and deep data: the schema stops at its bounds, the sample drops the data.
    let mut deep = json!("bottom");
    for _ in 0..40 {
        deep = json!({ "level": deep });
    }
    let wide: serde_json::Map<String, Value> = (0..3_000)
        .map(|i| (format!("k{i}"), json!("x".repeat(20))))
        .collect();
    emit(
        &fx,
        "/bulk",
        "bulk.loaded",
        "b1",
        json!({"deep": deep, "wide": wide}),
    )
    .await;
    let bulk = poll_until(
        "the bulk event is catalogued",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let query = "/api/v1/catalogue/entry?source=%2Fbulk&type=bulk.loaded";
            match fx.get(query).await {
                (200, v) => Ok(v),
                (status, v) => Err(format!("{status}: {v}")),
            }
        },
    )
    .await;
    assert_eq!(bulk["truncated"], true);
    assert!(bulk["fields"].as_array().unwrap().len() <= fx_core::catalogue::schema::MAX_FIELDS);
    assert_eq!(bulk["sample_truncated"], true);
    assert!(bulk["sample"].get("data").is_none());

    // A flood of distinct keys: the catalogue keeps its 10 entries (6 so far), the rest are
    // counted as dropped.
    for i in 0..40 {
        emit(
            &fx,
            "/flood",
            &format!("flood.t{i}"),
            &format!("f{i}"),
            json!({}),
        )
        .await;
    }
    poll_until(
        "the flood is counted as dropped",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let (_, metrics) = fx.get_text("/metrics").await;
            let dropped: f64 = metrics
                .lines()
                .filter(|l| l.starts_with("fx_catalogue_dropped_events_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            if dropped >= 35.0 {
                Ok(())
            } else {
                Err(format!("dropped {dropped}"))
            }
        },
    )
    .await;
    let entries = counts(&fx).await;
    assert_eq!(entries.len(), 10, "{entries:?}");
    fx.stop().await;
}
