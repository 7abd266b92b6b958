use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::Utc;
use fx_core::event::new_json_event;
use fx_core::execution::{
    Execution, ExecutionId, Failure, FailureKind, LogLevel, LogLine, ResolvedPackage, StateEvent,
};
use fx_core::package::PackageDigest;
use fx_core::testsupport::queued_execution;
use serde_json::json;

use super::*;

/// Records a queued execution of `handler` for a new event with `data`.
pub async fn seed_execution(
    app: &TestApp,
    handler: &str,
    event_id: &str,
    data: Value,
) -> ExecutionId {
    let event = new_json_event(event_id, "/shop", "com.example.order", data).unwrap();
    let execution = Execution {
        package: Some(ResolvedPackage {
            name: "hello".into(),
            version: "1.0.0".into(),
            digest: PackageDigest::of(b"hello"),
        }),
        ..queued_execution(handler, event, Utc::now())
    };
    let id = execution.id.clone();
    app.backends
        .state
        .create_execution(&execution)
        .await
        .unwrap();
    id
}

/// Runs one failed attempt of `id` with two log lines.
pub async fn fail_execution(app: &TestApp, id: &ExecutionId, handler: &str, reason: &str) {
    let state = &app.backends.state;
    state
        .apply_state(&StateEvent::Started {
            execution_id: id.clone(),
            attempt: 1,
            at: Utc::now(),
            executor: "test".into(),
        })
        .await
        .unwrap();
    state
        .apply_state(&StateEvent::Failed {
            execution_id: id.clone(),
            attempt: 1,
            at: Utc::now(),
            duration_us: 1_500,
            failure: Failure {
                kind: FailureKind::FunctionError,
                message: reason.into(),
            },
            retry_at: None,
            measurements: None,
            dead_letter: None,
        })
        .await
        .unwrap();
    let line = |seq: u32, level: LogLevel, message: &str| LogLine {
        execution_id: id.clone(),
        handler: handler.into(),
        attempt: 1,
        seq,
        at: Utc::now(),
        level,
        message: message.into(),
        fields: BTreeMap::from([("order".to_string(), "7".to_string())]),
    };
    app.backends
        .sink
        .write_logs(&[
            line(0, LogLevel::Info, "looking up order"),
            line(1, LogLevel::Error, "order service said no"),
        ])
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_execution_is_404_and_malformed_id_400() {
    let app = TestApp::new().await;
    let unknown = ExecutionId::derive("/s", "1", "h");
    let response = app.get(&format!("/api/v1/executions/{unknown}")).await;
    response.assert_status(StatusCode::NOT_FOUND);
    assert_eq!(response.json()["error"]["kind"], "not_found");

    let response = app.get("/api/v1/executions/not-an-id").await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("32 lowercase hex"),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn execution_detail_has_the_execution_and_its_logs() {
    let app = TestApp::new().await;
    let id = seed_execution(&app, "greeter", "order-7", json!({"n": 7})).await;
    fail_execution(&app, &id, "greeter", "order 7 is cursed").await;

    let response = app.get(&format!("/api/v1/executions/{id}")).await;
    response.assert_status(StatusCode::OK);
    let detail = response.json();
    assert_eq!(detail["execution"]["id"], id.as_str());
    assert_eq!(detail["execution"]["status"], "failed");
    assert_eq!(detail["execution"]["error"]["message"], "order 7 is cursed");
    assert_eq!(detail["logs"][1]["message"], "order service said no");
    assert_eq!(detail["logs"][1]["level"], "error");
}

#[tokio::test]
async fn execution_list_filters_and_pages() {
    let app = TestApp::new().await;
    for n in 0..3 {
        seed_execution(&app, "greeter", &format!("e-{n}"), json!({})).await;
    }
    let failed = seed_execution(&app, "other", "e-x", json!({})).await;
    fail_execution(&app, &failed, "other", "boom").await;

    let all = app.get("/api/v1/executions").await;
    all.assert_status(StatusCode::OK);
    assert_eq!(all.json()["items"].as_array().unwrap().len(), 4);

    let greeter = app
        .get("/api/v1/executions?handler=greeter&limit=2")
        .await
        .json();
    assert_eq!(greeter["items"].as_array().unwrap().len(), 2);
    let cursor = greeter["next_cursor"].as_str().unwrap();
    let query = serde_urlencoded::to_string([("handler", "greeter"), ("cursor", cursor)]).unwrap();
    let rest = app.get(&format!("/api/v1/executions?{query}")).await.json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["handler"], "greeter");

    let failed_only = app.get("/api/v1/executions?status=failed").await.json();
    assert_eq!(failed_only["items"][0]["id"], failed.as_str());
    assert_eq!(failed_only["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_execution_filters_are_400() {
    let app = TestApp::new().await;
    let response = app.get("/api/v1/executions?status=sleeping").await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(response.error_message().contains("sleeping"));

    let response = app.get("/api/v1/executions?limit=lots").await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["error"]["kind"], "invalid");

    let response = app.get("/api/v1/executions?since=yesterday").await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(response
        .error_message()
        .contains("since \"yesterday\" is not a time"));
}

#[tokio::test]
async fn executions_filter_by_time_and_text_in_the_api_and_the_page() {
    let app = TestApp::new().await;
    let before = Utc::now() - chrono::Duration::seconds(1);
    seed_execution(&app, "greeter", "order-41", json!({})).await;
    let wanted = seed_execution(&app, "greeter", "order-42", json!({})).await;
    let after = Utc::now() + chrono::Duration::seconds(1);

    let query = serde_urlencoded::to_string([
        ("since", before.to_rfc3339()),
        ("until", after.to_rfc3339()),
        ("text", "ORDER-42".to_string()),
    ])
    .unwrap();
    let found = app.get(&format!("/api/v1/executions?{query}")).await.json();
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["id"], wanted.as_str());

    // What an HTML datetime-local field sends: no zone, taken as UTC.
    let later = (after + chrono::Duration::seconds(60)).format("%Y-%m-%dT%H:%M");
    let none = app
        .get(&format!("/api/v1/executions?since={later}"))
        .await
        .json();
    assert_eq!(none["items"].as_array().unwrap().len(), 0, "{none}");

    let page = app.get("/executions?text=order-42").await;
    page.assert_status(StatusCode::OK);
    let html = page.text();
    assert!(html.contains(wanted.as_str()), "the page lists the match");
    assert!(!html.contains("order-41"), "and not the other one");
    assert!(
        html.contains(r#"value="order-42""#),
        "the filter stays filled in"
    );
}
