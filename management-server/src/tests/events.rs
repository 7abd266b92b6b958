use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use cloudevents::AttributesReader;
use fx_core::bus::{topics, Subscription};
use fx_core::event::{data_json, decode_message, Event, STRUCTURED_CONTENT_TYPE};
use serde_json::json;

use super::*;

async fn subscribe(app: &TestApp) -> Box<dyn Subscription> {
    app.backends
        .bus
        .subscribe(topics::EVENTS, "api-test")
        .await
        .unwrap()
}

async fn next_event(subscription: &mut Box<dyn Subscription>) -> Event {
    let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("no event on fx.events within 5 s")
        .unwrap()
        .expect("the bus closed");
    decode_message(&delivery.message).unwrap()
}

fn binary_event(uri: &str, id: Option<&str>, content_type: &str, body: &str) -> Request<Body> {
    let mut request = Request::post(uri)
        .header("ce-specversion", "1.0")
        .header("ce-source", "/shop")
        .header("ce-type", "com.example.order")
        .header("ce-tenant", "acme")
        .header(header::CONTENT_TYPE, content_type);
    if let Some(id) = id {
        request = request.header("ce-id", id);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn structured_event(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, STRUCTURED_CONTENT_TYPE)
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn binary_mode_event_is_accepted_and_published() {
    let app = TestApp::new().await;
    let mut events = subscribe(&app).await;
    let response = app
        .call(binary_event(
            "/api/v1/events",
            Some("order-1"),
            "application/json",
            r#"{"total": 42}"#,
        ))
        .await;
    response.assert_status(StatusCode::ACCEPTED);
    assert_eq!(
        response.json(),
        json!({"id": "order-1", "source": "/shop", "type": "com.example.order"})
    );

    let event = next_event(&mut events).await;
    assert_eq!(event.id(), "order-1");
    assert_eq!(event.ty(), "com.example.order");
    assert_eq!(
        fx_core::event::attribute(&event, "tenant").as_deref(),
        Some("acme")
    );
    assert_eq!(data_json(&event), Some(json!({"total": 42})));
}

#[tokio::test]
async fn structured_mode_event_is_accepted_at_both_paths() {
    let app = TestApp::new().await;
    let mut events = subscribe(&app).await;
    for (uri, id) in [("/events", "s-1"), ("/api/v1/events", "s-2")] {
        let body = json!({
            "specversion": "1.0",
            "id": id,
            "source": "/cli",
            "type": "com.example.hello",
            "datacontenttype": "application/json",
            "data": {"name": "Ferris"},
        });
        let response = app.call(structured_event(uri, &body.to_string())).await;
        response.assert_status(StatusCode::ACCEPTED);
        assert_eq!(response.json()["id"], id);

        let event = next_event(&mut events).await;
        assert_eq!(event.id(), id);
        assert_eq!(event.source().to_string(), "/cli");
        assert_eq!(data_json(&event), Some(json!({"name": "Ferris"})));
    }
}

#[tokio::test]
async fn malformed_events_are_refused_naming_the_problem() {
    let app = TestApp::new().await;

    let missing_id = app
        .call(binary_event(
            "/api/v1/events",
            None,
            "application/json",
            "{}",
        ))
        .await;
    missing_id.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        missing_id.error_message().contains("\"id\""),
        "{}",
        missing_id.text()
    );

    let missing_id = app
        .call(structured_event(
            "/events",
            r#"{"specversion":"1.0","source":"/s","type":"t"}"#,
        ))
        .await;
    missing_id.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        missing_id.error_message().contains("\"id\""),
        "{}",
        missing_id.text()
    );

    let bad_json = app.call(structured_event("/events", "{not json")).await;
    bad_json.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        bad_json.error_message().contains("malformed json"),
        "{}",
        bad_json.text()
    );

    let bad_data = app
        .call(binary_event(
            "/events",
            Some("1"),
            "application/json",
            "{oops",
        ))
        .await;
    bad_data.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        bad_data.error_message().contains("not json"),
        "{}",
        bad_data.text()
    );

    let not_an_event = app
        .call(
            Request::post("/events")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("hello"))
                .unwrap(),
        )
        .await;
    not_an_event.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        not_an_event.error_message().contains("not a cloudevent"),
        "{}",
        not_an_event.text()
    );

    let batch = app
        .call(
            Request::post("/events")
                .header(header::CONTENT_TYPE, "application/cloudevents-batch+json")
                .body(Body::from("[]"))
                .unwrap(),
        )
        .await;
    batch.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        batch
            .error_message()
            .contains("unsupported structured content type"),
        "{}",
        batch.text()
    );
}

#[tokio::test]
async fn values_a_backend_would_refuse_get_400_and_nothing_is_published() {
    let app = TestApp::new().await;
    let mut published = subscribe(&app).await;
    // The event that stopped every gateway: a NUL in the id, structured mode.
    let nul_id = app
        .call(structured_event(
            "/events",
            r#"{"specversion":"1.0","id":"a\u0000b","source":"/s","type":"t"}"#,
        ))
        .await;
    nul_id.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        nul_id.error_message().contains("control character"),
        "{}",
        nul_id.text()
    );
    let long_type = format!(
        r#"{{"specversion":"1.0","id":"1","source":"/s","type":"{}"}}"#,
        "t".repeat(fx_core::event::MAX_ATTRIBUTE_BYTES + 1)
    );
    let response = app.call(structured_event("/events", &long_type)).await;
    response.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        response.error_message().contains("\"type\""),
        "{}",
        response.text()
    );
    let bad_extension = app
        .call(structured_event(
            "/api/v1/events",
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","Tenant-Id":"x"}"#,
        ))
        .await;
    bad_extension.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        bad_extension
            .error_message()
            .contains("extension attribute name"),
        "{}",
        bad_extension.text()
    );
    // A good event after them is the first (and only) one on the bus.
    let ok = app
        .call(structured_event(
            "/events",
            r#"{"specversion":"1.0","id":"good","source":"/s","type":"t"}"#,
        ))
        .await;
    ok.assert_status(StatusCode::ACCEPTED);
    assert_eq!(next_event(&mut published).await.id(), "good");
}

#[tokio::test]
async fn oversized_event_is_refused_with_413() {
    let app = TestApp::with_settings(ServerSettings {
        max_event_bytes: 100,
        ..open()
    })
    .await;
    let body = format!("\"{}\"", "x".repeat(200));
    let response = app
        .call(binary_event(
            "/events",
            Some("1"),
            "application/json",
            &body,
        ))
        .await;
    response.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json()["error"]["kind"], "invalid");
}

#[tokio::test]
async fn an_event_too_large_for_an_invocation_on_the_bus_is_refused_with_413_naming_the_bus() {
    // Kafka's default message size.
    let app = TestApp::with_bus_limit(1_000_000).await;
    let room = fx_core::bus::max_payload_bytes(1_000_000);
    let big = format!("\"{}\"", "x".repeat(room + 1));
    let response = app
        .call(binary_event(
            "/events",
            Some("big"),
            "application/json",
            &big,
        ))
        .await;
    response.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    let message = response.error_message();
    assert!(message.contains("1000000"), "{message}");
    assert!(message.contains(&room.to_string()), "{message}");
    // Just below it, accepted.
    let fits = format!("\"{}\"", "x".repeat(room - 1024));
    app.call(binary_event(
        "/events",
        Some("fits"),
        "application/json",
        &fits,
    ))
    .await
    .assert_status(StatusCode::ACCEPTED);
}

/// The ingress stamps each event with the registry revision it saw, one that includes every
/// handler the API confirmed before the event came (the gateway matches against no older table).
#[tokio::test]
async fn an_accepted_event_carries_the_registry_revision_that_has_the_handler_created_before_it() {
    let app = TestApp::new().await;
    let mut events = subscribe(&app).await;
    app.upload_ok("hello", "1.0.0").await;
    let mut previous = 0;
    for n in 0..3 {
        app.create_handler(&format!("h{n}"), "hello", &format!("t.{n}"))
            .await;
        let revision = app.backends.registry.revision().await.unwrap();
        assert!(revision > previous, "each handler bumps the revision");
        previous = revision;
        app.call(binary_event(
            "/api/v1/events",
            Some(&format!("e{n}")),
            "application/json",
            "{}",
        ))
        .await
        .assert_status(StatusCode::ACCEPTED);
        let delivery = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("no event on fx.events within 5 s")
            .unwrap()
            .expect("the bus closed");
        assert_eq!(
            delivery.message.header(topics::REGISTRY_REVISION_HEADER),
            Some(revision.to_string().as_str()),
        );
    }
}
