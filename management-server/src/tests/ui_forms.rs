//! The UI's forms and live streams over the router: handler form, test events, alias moves,
//! server-sent events, and the static files the pages load.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use super::executions::seed_execution;
use super::*;

async fn post_form(app: &TestApp, uri: &str, form: &[(&str, &str)]) -> TestResponse {
    app.call(
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn handler_form_refuses_an_invalid_filter_with_the_reason_and_saves_a_valid_one() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    let mut form = vec![
        ("name", "greeter"),
        ("combine", "all"),
        ("cond.0.attribute", "Type!"),
        ("cond.0.op", "exact"),
        ("cond.0.value", "com.example.hello"),
        ("package", "hello"),
        ("version", "latest"),
        ("enabled", "on"),
    ];
    let refused = post_form(&app, "/handlers/new", &form).await;
    refused.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().contains("id=\"filter-error\""));
    assert!(refused.text().contains("not a cloudevents attribute name"));
    app.get("/api/v1/handlers/greeter")
        .await
        .assert_status(StatusCode::NOT_FOUND);

    form[2] = ("cond.0.attribute", "type");
    let preview = post_form(&app, "/handlers/preview", &form).await;
    preview.assert_status(StatusCode::OK);
    assert!(
        preview.text().contains("handler-json"),
        "{}",
        preview.text()
    );

    let saved = post_form(&app, "/handlers/new", &form).await;
    saved.assert_status(StatusCode::SEE_OTHER);
    assert_eq!(saved.headers[header::LOCATION], "/handlers?saved=greeter");
    let stored = app.get("/api/v1/handlers/greeter").await;
    stored.assert_status(StatusCode::OK);
    assert_eq!(
        stored.json()["handler"]["filter"],
        json!({"exact": {"attribute": "type", "value": "com.example.hello"}})
    );

    let again = post_form(&app, "/handlers/new", &form).await;
    again.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.text().contains("exists"));

    let disabled = post_form(&app, "/handlers/greeter/toggle", &[]).await;
    disabled.assert_status(StatusCode::SEE_OTHER);
    let stored = app.get("/api/v1/handlers/greeter").await.json();
    assert_eq!(stored["handler"]["enabled"], false, "{stored}");
    assert!(app.get("/handlers").await.text().contains(">Enable<"));

    let edit = app.get("/handlers/greeter/edit").await;
    edit.assert_status(StatusCode::OK);
    assert!(edit.text().contains("com.example.hello"));
    let deleted = post_form(&app, "/handlers/greeter/delete", &[]).await;
    deleted.assert_status(StatusCode::SEE_OTHER);
    app.get("/api/v1/handlers/greeter")
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn alias_form_moves_latest_back_and_refuses_an_unknown_version() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    app.upload_ok("hello", "2.0.0").await;
    let moved = post_form(
        &app,
        "/packages/hello/aliases",
        &[("alias", "latest"), ("version", "1.0.0")],
    )
    .await;
    moved.assert_status(StatusCode::SEE_OTHER);
    let package = app.get("/api/v1/packages/hello").await;
    assert_eq!(package.json()["aliases"]["latest"], "1.0.0");

    let refused = post_form(
        &app,
        "/packages/hello/aliases",
        &[("alias", "latest"), ("version", "9.9.9")],
    )
    .await;
    refused.assert_status(StatusCode::NOT_FOUND);
    assert!(refused.text().contains("hello@9.9.9 does not exist"));
}

#[tokio::test]
async fn send_form_checks_the_json_and_follows_the_matching_handlers_executions() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    app.create_handler("greeter", "hello", "com.example.hello")
        .await;
    let bad = post_form(
        &app,
        "/send",
        &[
            ("type", "com.example.hello"),
            ("source", "/ui"),
            ("data", "{nope"),
        ],
    )
    .await;
    bad.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().contains("not valid JSON"));

    let sent = post_form(
        &app,
        "/send",
        &[
            ("type", "com.example.hello"),
            ("source", "/ui"),
            ("id", "ui-1"),
            ("data", "{\"name\": \"x\"}"),
        ],
    )
    .await;
    sent.assert_status(StatusCode::OK);
    let id = fx_core::execution::ExecutionId::derive("/ui", "ui-1", "greeter");
    let text = sent.text();
    assert!(text.contains("Sent event"));
    assert!(text.contains(&format!("ids={id}")), "{text}");
}

#[tokio::test]
async fn live_stream_sends_the_rendered_rows() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    app.create_handler("greeter", "hello", "com.example.hello")
        .await;
    let id = seed_execution(&app, "greeter", "live-1", json!({})).await;
    let response = app
        .router_call_streaming(
            Request::get(format!("/live/executions?ids={id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("a first event")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(text.starts_with("event: rows"), "{text}");
    assert!(text.contains(id.as_str()), "{text}");
}

#[tokio::test]
async fn htmx_and_the_ui_script_are_served_from_the_binary() {
    let app = TestApp::new().await;
    for path in ["/static/htmx.min.js", "/static/app.js"] {
        let response = app.get(path).await;
        response.assert_status(StatusCode::OK);
        assert!(response.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
    }
    let page = app.get("/").await.text();
    assert!(page.contains("/static/htmx.min.js") && page.contains("/static/app.js"));
    assert!(!page.contains("https://"), "no CDN");
}

#[tokio::test]
async fn dashboard_counts_the_last_hour_by_status_and_handler() {
    let app = TestApp::new().await;
    let empty = app.get("/dashboard").await;
    empty.assert_status(StatusCode::OK);
    assert!(empty.text().contains("No executions in the last hour"));

    seed_execution(&app, "greeter", "d-1", json!({})).await;
    let failed = seed_execution(&app, "greeter", "d-2", json!({})).await;
    super::executions::fail_execution(&app, &failed, "greeter", "broken").await;
    let html = app.get("/dashboard").await.text();
    assert!(html.contains("2 executions"), "{html}");
    assert!(html.contains("1 failed"), "{html}");
    assert!(html.contains("greeter"), "{html}");
    assert!(html.contains("100.0 %"), "one finished, failed: {html}");
    assert!(app.get("/").await.text().contains("id=\"dashboard\""));
}

#[tokio::test]
async fn handler_form_saves_config_and_refuses_grants_the_package_does_not_declare() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    let mut form = vec![
        ("name", "greeter"),
        ("combine", "all"),
        ("cond.0.attribute", "type"),
        ("cond.0.op", "exact"),
        ("cond.0.value", "com.example.hello"),
        ("package", "hello"),
        ("version", "latest"),
        ("enabled", "on"),
        ("config", "greeting=Howdy"),
        ("max_output_bytes", "4096"),
        ("http_allow", "api.example.com"),
    ];
    // The package declares neither wasi:http nor any secret.
    let refused = post_form(&app, "/handlers/new", &form).await;
    refused.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .text()
            .contains("does not declare the wasi:http capability"),
        "{}",
        refused.text()
    );
    form[10] = ("http_allow", "");
    form.push(("secrets", "api-token"));
    let refused = post_form(&app, "/handlers/new", &form).await;
    refused.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().contains("grants secret(s) api-token"));

    form.pop();
    let saved = post_form(&app, "/handlers/new", &form).await;
    saved.assert_status(StatusCode::SEE_OTHER);
    let stored = app.get("/api/v1/handlers/greeter").await.json();
    assert_eq!(stored["handler"]["config"], json!({"greeting": "Howdy"}));
    assert_eq!(stored["handler"]["limits"]["max_output_bytes"], 4096);
    // Editing shows them again.
    let edit = app.get("/handlers/greeter/edit").await.text();
    assert!(edit.contains("greeting=Howdy"), "{edit}");
}
