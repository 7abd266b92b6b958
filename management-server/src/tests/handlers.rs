use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::json;

use super::*;

async fn put_with_revision(app: &TestApp, body: &Value, revision: Option<&str>) -> TestResponse {
    let mut request = Request::put(format!(
        "/api/v1/handlers/{}",
        body["name"].as_str().unwrap()
    ))
    .header(header::CONTENT_TYPE, "application/json");
    if let Some(revision) = revision {
        request = request.header(header::IF_MATCH, revision);
    }
    app.call(request.body(Body::from(body.to_string())).unwrap())
        .await
}

#[tokio::test]
async fn handler_lifecycle_uses_revisions_for_check_and_set() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;

    let created = app
        .create_handler("greeter", "hello", "com.example.hello")
        .await;
    assert_eq!(created["handler"]["name"], "greeter");
    let first_revision = created["revision"].as_u64().unwrap();

    let again = app
        .send_json(
            Method::POST,
            "/api/v1/handlers",
            &handler_json("greeter", "hello", "com.example.other"),
        )
        .await;
    again.assert_status(StatusCode::CONFLICT);

    let got = app.get("/api/v1/handlers/greeter").await;
    got.assert_status(StatusCode::OK);
    assert_eq!(got.json()["revision"], first_revision);
    assert_eq!(got.headers[header::ETAG], format!("\"{first_revision}\""));
    assert_eq!(got.json()["handler"]["pool"], "default");

    let mut changed = handler_json("greeter", "hello", "com.example.hi");
    changed["description"] = json!("greets on hi");
    let updated = put_with_revision(&app, &changed, Some(&first_revision.to_string())).await;
    updated.assert_status(StatusCode::OK);
    let second_revision = updated.json()["revision"].as_u64().unwrap();
    assert!(second_revision > first_revision);

    let stale = put_with_revision(&app, &changed, Some(&format!("\"{first_revision}\""))).await;
    stale.assert_status(StatusCode::CONFLICT);
    assert_eq!(stale.json()["error"]["kind"], "conflict");

    let bad = put_with_revision(&app, &changed, Some("yesterday")).await;
    bad.assert_status(StatusCode::BAD_REQUEST);
    assert!(bad.error_message().contains("If-Match"));

    let list = app.get("/api/v1/handlers").await;
    list.assert_status(StatusCode::OK);
    let list = list.json();
    assert_eq!(
        list["handlers"][0]["handler"]["description"],
        "greets on hi"
    );
    assert_eq!(list["invalid"], json!([]));

    let deleted = app
        .call(
            Request::delete("/api/v1/handlers/greeter")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    deleted.assert_status(StatusCode::NO_CONTENT);
    app.get("/api/v1/handlers/greeter")
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let again = app
        .call(
            Request::delete("/api/v1/handlers/greeter")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    again.assert_status(StatusCode::NOT_FOUND);
    assert!(again.error_message().contains("greeter"));
}

#[tokio::test]
async fn put_without_if_match_creates_or_replaces() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    let body = handler_json("greeter", "hello", "com.example.hello");
    put_with_revision(&app, &body, None)
        .await
        .assert_status(StatusCode::OK);
    put_with_revision(&app, &body, None)
        .await
        .assert_status(StatusCode::OK);
    let list = app.get("/api/v1/handlers").await.json();
    assert_eq!(list["handlers"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn handler_of_an_unknown_package_is_refused() {
    let app = TestApp::new().await;
    let response = app
        .send_json(
            Method::POST,
            "/api/v1/handlers",
            &handler_json("greeter", "hello", "com.example.hello"),
        )
        .await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(
        response.error_message(),
        "package hello@latest does not exist: upload it first"
    );
    let list = app.get("/api/v1/handlers").await.json();
    assert_eq!(list["handlers"], json!([]));

    app.upload_ok("hello", "1.0.0").await;
    let mut pinned = handler_json("greeter", "hello", "com.example.hello");
    pinned["package"]["version"] = json!("2.0.0");
    let response = put_with_revision(&app, &pinned, None).await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(response
        .error_message()
        .contains("hello@2.0.0 does not exist"));
}

#[tokio::test]
async fn invalid_handlers_are_refused_with_the_reason() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;

    let bad_name = handler_json("Bad Name", "hello", "com.example.hello");
    let response = app
        .send_json(Method::POST, "/api/v1/handlers", &bad_name)
        .await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("handler name"),
        "{}",
        response.text()
    );

    let mut unknown_field = handler_json("greeter", "hello", "com.example.hello");
    unknown_field["colour"] = json!("red");
    let response = app
        .send_json(Method::POST, "/api/v1/handlers", &unknown_field)
        .await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("unknown field `colour`"),
        "{}",
        response.text()
    );

    let mut empty_prefix = handler_json("greeter", "hello", "x");
    empty_prefix["filter"] = json!({"prefix": {"attribute": "type", "value": ""}});
    let response = app
        .send_json(Method::POST, "/api/v1/handlers", &empty_prefix)
        .await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("empty prefix"),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn path_and_body_must_name_the_same_handler() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    let response = app
        .send_json(
            Method::PUT,
            "/api/v1/handlers/one",
            &handler_json("two", "hello", "com.example.hello"),
        )
        .await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("differs"),
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn create_update_and_delete_are_kept_in_the_history_newest_first() {
    let app = TestApp::new().await;
    app.upload_ok("hello", "1.0.0").await;
    let never = app.get("/api/v1/handlers/nobody/history").await;
    never.assert_status(StatusCode::OK);
    assert_eq!(never.json(), json!([]));

    let created = app
        .call(
            Request::post("/api/v1/handlers")
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-fx-user", "ada")
                .body(Body::from(
                    handler_json("keeper", "hello", "com.example.a").to_string(),
                ))
                .unwrap(),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    let first = created.json()["revision"].as_u64().unwrap();
    let changed = handler_json("keeper", "hello", "com.example.b");
    let updated = put_with_revision(&app, &changed, None).await;
    updated.assert_status(StatusCode::OK);
    let second = updated.json()["revision"].as_u64().unwrap();
    app.call(
        Request::delete("/api/v1/handlers/keeper")
            .header("x-fx-user", "bob")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);

    let history = app.get("/api/v1/handlers/keeper/history").await;
    history.assert_status(StatusCode::OK);
    let history = history.json();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    let revisions: Vec<u64> = history
        .iter()
        .map(|c| c["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, vec![second + 1, second, first], "newest first");
    assert_eq!(history[0]["handler"], Value::Null, "the delete");
    assert_eq!(history[0]["by"], "bob");
    assert_eq!(
        history[1]["handler"]["filter"]["exact"]["value"],
        "com.example.b"
    );
    assert_eq!(history[1]["by"], Value::Null);
    assert_eq!(
        history[2]["handler"]["filter"]["exact"]["value"],
        "com.example.a"
    );
    assert_eq!(history[2]["by"], "ada");
    assert!(history.iter().all(|c| c["name"] == "keeper"));
}

#[tokio::test]
async fn an_output_limit_the_bus_cannot_carry_is_refused_and_a_retry_policy_beyond_a_day_too() {
    let app = TestApp::with_bus_limit(1_000_000).await;
    app.upload_ok("hello", "1.0.0").await;
    let mut body = handler_json("big", "hello", "t.big");
    body["limits"] = json!({"max_output_bytes": 64 * 1024 * 1024});
    let response = app.send_json(Method::POST, "/api/v1/handlers", &body).await;
    response.assert_status(StatusCode::BAD_REQUEST);
    let message = response.error_message();
    assert!(message.contains("max_output_bytes"), "{message}");
    assert!(message.contains("1000000"), "{message}");
    // Within what the bus carries, created; without an explicit limit too.
    body["limits"] = json!({"max_output_bytes": 256 * 1024});
    app.send_json(Method::POST, "/api/v1/handlers", &body)
        .await
        .assert_status(StatusCode::CREATED);
    app.create_handler("plain", "hello", "t.plain").await;

    let mut body = handler_json("patient", "hello", "t.patient");
    body["retry"] =
        json!({"max_attempts": 3, "backoff_ms": 1000, "max_backoff_ms": 1_000_000_000_000u64});
    let response = app.send_json(Method::POST, "/api/v1/handlers", &body).await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("retry.max_backoff_ms"),
        "{}",
        response.text()
    );
}
