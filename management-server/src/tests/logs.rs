//! `GET /api/v1/handlers/{name}/logs`: a handler's lines in order, paged by `next`, from
//! `since`; bad parameters, unknown handlers and callers who may not read its executions
//! refused.

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use fx_core::execution::{ExecutionId, LogLevel, LogLine};
use fx_core::identity::{Action, Grant, Role};
use fx_core::registry::Expect;
use fx_core::testsupport::HandlerBuilder;
use serde_json::json;

use super::auth::{call, secured, user};
use super::*;

/// Stores handler `name` straight in the registry (no package needed).
async fn put_handler(app: &TestApp, name: &str) {
    let handler = HandlerBuilder::new(name).build();
    app.backends
        .registry
        .put(&handler, Expect::Absent)
        .await
        .unwrap();
}

/// Writes `count` lines of `handler`, one execution per three lines, `micros` apart from `t0`
/// (every other pair sharing a time stamp).
async fn write_lines(app: &TestApp, handler: &str, t0: DateTime<Utc>, count: u32) {
    let lines: Vec<LogLine> = (0..count)
        .map(|i| LogLine {
            execution_id: ExecutionId::derive("/logs-test", &(i / 3).to_string(), handler),
            handler: handler.into(),
            attempt: 1,
            seq: i % 3,
            at: t0 + chrono::Duration::microseconds(i64::from(i / 2) * 10),
            level: LogLevel::Info,
            message: format!("line {i}"),
            fields: [("i".to_string(), i.to_string())].into(),
        })
        .collect();
    app.backends.sink.write_logs(&lines).await.unwrap();
}

fn messages(page: &Value) -> Vec<String> {
    page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_handlers_lines_come_in_order_paged_by_next_without_other_handlers_lines() {
    let app = TestApp::new().await;
    put_handler(&app, "orders").await;
    put_handler(&app, "other").await;
    let t0 = DateTime::from_timestamp_micros(1_796_385_600_000_000).unwrap();
    write_lines(&app, "orders", t0, 7).await;
    write_lines(&app, "other", t0, 3).await;

    let all = app.get("/api/v1/handlers/orders/logs").await;
    all.assert_status(StatusCode::OK);
    let all = all.json();
    assert_eq!(all["next"], Value::Null, "one page holds them all");
    let expected = messages(&all);
    assert_eq!(expected.len(), 7);
    assert!(all["lines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["handler"] == "orders"));
    let ats: Vec<DateTime<Utc>> = all["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "{ats:?}");

    // Paged by two: every line once, in the same order; the last page says there is no more.
    let mut read = Vec::new();
    let mut uri = "/api/v1/handlers/orders/logs?limit=2".to_string();
    loop {
        let page = app.get(&uri).await;
        page.assert_status(StatusCode::OK);
        let page = page.json();
        read.extend(messages(&page));
        match page["next"].as_str() {
            Some(next) => uri = format!("/api/v1/handlers/orders/logs?limit=2&after={next}"),
            None => break,
        }
        assert!(read.len() <= 7, "paging goes on: {read:?}");
    }
    assert_eq!(read, expected);

    // From a time on.
    let since = (t0 + chrono::Duration::microseconds(20)).to_rfc3339();
    let page = app
        .get(&format!(
            "/api/v1/handlers/orders/logs?since={}",
            since.replace('+', "%2B")
        ))
        .await;
    page.assert_status(StatusCode::OK);
    assert_eq!(messages(&page.json()), expected[4..]);
}

#[tokio::test]
async fn bad_parameters_and_unknown_handlers_are_refused() {
    let app = TestApp::new().await;
    put_handler(&app, "orders").await;
    for (query, says) in [
        ("limit=0", "limit 0 is out of range"),
        ("limit=1001", "limit 1001 is out of range"),
        ("after=nope", "log cursor \"nope\""),
        ("since=yesterday", "since \"yesterday\" is not a time"),
    ] {
        let response = app
            .get(&format!("/api/v1/handlers/orders/logs?{query}"))
            .await;
        response.assert_status(StatusCode::BAD_REQUEST);
        let message = response.error_message();
        assert!(message.contains(says), "{query}: {message}");
    }
    let unknown = app.get("/api/v1/handlers/nosuch/logs").await;
    unknown.assert_status(StatusCode::NOT_FOUND);
    assert!(unknown.error_message().contains("nosuch"));
    app.get("/api/v1/handlers/orders/logs?tail=1")
        .await
        .assert_status(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn only_callers_who_may_read_the_handlers_executions_read_its_lines() {
    let app = secured().await;
    put_handler(&app, "team-a-orders").await;
    write_lines(&app, "team-a-orders", Utc::now(), 2).await;
    let reader = user(
        &app,
        "rita",
        &[(Grant::Action(Action::ExecutionRead), "team-a-*")],
    )
    .await;
    let handler_reader = user(
        &app,
        "hank",
        &[(Grant::Action(Action::HandlerRead), "team-a-*")],
    )
    .await;
    let other_team = user(&app, "otto", &[(Grant::Role(Role::Viewer), "team-b-*")]).await;
    let uri = "/api/v1/handlers/team-a-orders/logs";
    let ok = call(&app, Some(&reader), &Method::GET, uri, &json!(null)).await;
    ok.assert_status(StatusCode::OK);
    assert_eq!(ok.json()["lines"].as_array().unwrap().len(), 2);
    for token in [&handler_reader, &other_team] {
        call(&app, Some(token), &Method::GET, uri, &json!(null))
            .await
            .assert_status(StatusCode::FORBIDDEN);
    }
    call(&app, None, &Method::GET, uri, &json!(null))
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
}
