//! Bounds on what the server does at once: beyond each, 503 with `Retry-After` at once, and
//! health, readiness and metrics always answer.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};

use super::*;

fn settings(change: impl FnOnce(&mut ServerSettings)) -> ServerSettings {
    let mut settings = open();
    change(&mut settings);
    settings
}

fn assert_busy(response: &TestResponse, what: &str) {
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers[header::RETRY_AFTER], "1");
    let message = response.error_message();
    assert!(message.contains(what), "{message}");
}

#[tokio::test]
async fn beyond_the_request_bound_the_answer_is_503_with_retry_after_and_probes_still_answer() {
    let app = TestApp::with_settings(settings(|s| s.max_concurrent_requests = 0)).await;
    assert_busy(&app.get("/api/v1/handlers").await, "requests");
    assert_busy(&app.get("/").await, "requests");
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(probe).await.status, StatusCode::OK, "{probe}");
    }
}

#[tokio::test]
async fn beyond_the_upload_bound_an_upload_is_refused_and_reads_still_answer() {
    let app = TestApp::with_settings(settings(|s| s.max_concurrent_uploads = 0)).await;
    assert_busy(
        &app.upload(package("hello", "1.0.0")).await,
        "package uploads",
    );
    app.get("/api/v1/packages")
        .await
        .assert_status(StatusCode::OK);
}

#[tokio::test]
async fn a_live_stream_holds_its_permit_while_open() {
    let app = TestApp::with_settings(settings(|s| s.max_live_streams = 1)).await;
    let open = || async {
        app.router_call_streaming(
            Request::get("/live/executions")
                .body(Body::empty())
                .unwrap(),
        )
        .await
    };
    let first = open().await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = open().await;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers()[header::RETRY_AFTER], "1");
    drop(first);
    assert_eq!(
        open().await.status(),
        StatusCode::OK,
        "closing frees the permit"
    );
}
