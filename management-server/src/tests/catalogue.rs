//! The event catalogue's API and pages, over a catalogue seeded as a gateway would.

use axum::http::StatusCode;
use chrono::{Duration, DurationRound as _, Utc};
use fx_core::catalogue::testsuite::observe;
use fx_core::catalogue::CatalogueLimits;
use serde_json::json;

use super::*;

/// Seeds two kinds of events, the second flush bringing a new field and a type change.
async fn seeded() -> TestApp {
    let app = TestApp::new().await;
    let t0 = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let catalogue = &app.backends.catalogue;
    let first = observe(
        &[
            ("/shop", "order.created", json!({"id": 1, "total": 3})),
            ("/shop", "order.created", json!({"id": 2, "total": 4})),
            ("/crm", "customer.updated", json!({"name": "F"})),
        ],
        t0,
    );
    let limits = CatalogueLimits::default();
    catalogue.record(&first, &limits, t0).await.unwrap();
    let t1 = t0 + Duration::seconds(1);
    let second = observe(
        &[(
            "/shop",
            "order.created",
            json!({"id": "A-3", "total": 5, "coupon": "SPRING"}),
        )],
        t1,
    );
    catalogue.record(&second, &limits, t1).await.unwrap();
    app.upload_ok("pkg", "1.0.0").await;
    app.create_handler("on-orders", "pkg", "order.created")
        .await;
    app
}

#[tokio::test]
async fn the_catalogue_lists_entries_and_shows_one_with_its_schema_changes_and_handlers() {
    let app = seeded().await;
    let list = app.get("/api/v1/catalogue").await;
    list.assert_status(StatusCode::OK);
    let entries = list.json()["entries"].as_array().unwrap().clone();
    let keys: Vec<(String, String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("/crm".into(), "customer.updated".into(), 1),
            ("/shop".into(), "order.created".into(), 3)
        ]
    );
    assert!(entries[1]["last_change"].is_string());
    let filtered = app.get("/api/v1/catalogue?type=ORDER").await.json();
    assert_eq!(filtered["entries"].as_array().unwrap().len(), 1);

    let entry = app
        .get("/api/v1/catalogue/entry?source=%2Fshop&type=order.created")
        .await;
    entry.assert_status(StatusCode::OK);
    let entry = entry.json();
    assert_eq!(entry["count"], 3);
    assert_eq!(
        entry["handlers"],
        json!([{"name": "on-orders", "enabled": true}])
    );
    assert_eq!(entry["sample"]["data"]["coupon"], "SPRING");
    assert_eq!(
        entry["schema"]["properties"]["id"]["type"],
        json!(["integer", "string"])
    );
    let changes: Vec<(String, String)> = entry["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("$.coupon".into(), "new_field".into()),
            ("$.id".into(), "type_change".into())
        ]
    );
    let hours: u64 = entry["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["count"].as_u64().unwrap())
        .sum();
    assert_eq!(hours, 3);

    let missing = app
        .get("/api/v1/catalogue/entry?source=%2Fshop&type=order.nosuch")
        .await;
    missing.assert_status(StatusCode::NOT_FOUND);
    let unnamed = app.get("/api/v1/catalogue/entry?type=order.created").await;
    unnamed.assert_status(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_catalogue_pages_flag_changes_and_feed_the_forms_suggestions() {
    let app = seeded().await;
    let list = app.get("/catalogue").await;
    list.assert_status(StatusCode::OK);
    let text = list.text();
    assert!(text.contains("order.created") && text.contains("customer.updated"));
    assert!(
        text.contains("change-recent"),
        "the recent change is flagged"
    );

    let page = app
        .get("/catalogue/entry?source=%2Fshop&type=order.created")
        .await;
    page.assert_status(StatusCode::OK);
    let text = page.text();
    assert!(text.contains("new field"), "{text}");
    assert!(text.contains("type change"));
    assert!(text.contains("$.coupon"));
    assert!(text.contains("on-orders"));
    assert!(text.contains("/handlers/new?type=order.created"));

    let form = app.get("/handlers/new?type=customer.updated").await.text();
    assert!(
        form.contains(r#"<option value="order.created">"#),
        "types suggested"
    );
    assert!(
        form.contains(r#"<option value="/crm">"#),
        "sources suggested"
    );
    assert!(
        form.contains(r#"value="customer.updated""#),
        "the type prefilled"
    );

    let send = app
        .get("/send?type=order.created&source=%2Fshop")
        .await
        .text();
    assert!(send.contains(r#"<option value="/shop">"#));
    assert!(send.contains("SPRING"), "the sample's data prefilled");
}
