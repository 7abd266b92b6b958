//! Bounds on what the server does at once: requests, package uploads and live streams. Beyond
//! a bound a request is answered at once with `503 Service Unavailable` and `Retry-After`,
//! rather than queued without end (memory) or left to time out. Health, readiness and metrics
//! are never refused: a busy server must not be restarted by its liveness probe.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::{ApiError, AppState, ServerSettings};

/// Seconds a refused client is asked to wait.
const RETRY_AFTER_S: u32 = 1;

/// The permits of each bound.
#[derive(Debug)]
pub struct ServerLimits {
    requests: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    streams: Arc<Semaphore>,
}

impl ServerLimits {
    /// The bounds `settings` ask for.
    pub fn new(settings: &ServerSettings) -> Self {
        ServerLimits {
            requests: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
            uploads: Arc::new(Semaphore::new(settings.max_concurrent_uploads)),
            streams: Arc::new(Semaphore::new(settings.max_live_streams)),
        }
    }
}

/// The answer beyond a bound: 503 in the API's error shape, with `Retry-After`.
fn busy(what: &str, most: usize) -> Response {
    metrics::counter!(fx_core::telemetry::SERVER_BUSY, "bound" => what.to_string()).increment(1);
    let mut response = ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: fx_core::ErrorKind::Unavailable,
        message: format!(
            "the server is handling {most} {what} at once, its bound; retry in {RETRY_AFTER_S} s"
        ),
        field: None,
    }
    .shed();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    response
}

/// Paths never refused.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Every request but health, readiness and metrics holds a request permit until its response
/// is ready.
pub async fn requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let Ok(_permit) = state.limits.requests.clone().try_acquire_owned() else {
        return busy("requests", state.settings.max_concurrent_requests);
    };
    next.run(request).await
}

/// A package upload holds an upload permit until it is stored.
pub async fn uploads(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let Ok(_permit) = state.limits.uploads.clone().try_acquire_owned() else {
        return busy("package uploads", state.settings.max_concurrent_uploads);
    };
    next.run(request).await
}

/// A live stream holds a stream permit for as long as its body is open.
pub async fn streams(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(permit) = state.limits.streams.clone().try_acquire_owned() else {
        return busy("live streams", state.settings.max_live_streams);
    };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(body))
}
