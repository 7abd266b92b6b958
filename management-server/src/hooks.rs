//! `POST /hooks/{name}`: webhook deliveries from GitHub, Stripe, GitLab, Slack or any sender
//! that signs with an HMAC, each checked and turned into a CloudEvent on `fx.events` (see
//! [`fx_core::hook`]).
//!
//! In order: the hook must exist and be enabled (`404`), have a token left in its bucket
//! (`429` with `Retry-After`), send a body within its limit (`413`), carry a valid signature
//! (`401`, counted and audited, never dispatched), and make an event (`400`). Then the event is
//! published and the answer is `202` with its id, source and type. The signature is the
//! credential: the route takes no bearer token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use cloudevents::AttributesReader;
use fx_core::hook::{Bucket, Delivery, Hook, Refusal};
use fx_core::registry::CachedTable;
use fx_core::telemetry::WEBHOOK_DELIVERIES;
use fx_core::ErrorKind;

use crate::error::{ApiError, ApiPath};
use crate::routes::events::Accepted;
use crate::AppState;

/// The route's path template (the auth table and the audit layer name it).
pub const PATH: &str = "/hooks/{name}";

/// The hooks as last read, and each hook's token bucket.
#[derive(Default)]
pub struct HookGate {
    table: CachedTable<Hook>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl HookGate {
    /// Drops the hooks read, so that the next delivery reads them again (after a write).
    pub async fn forget(&self) {
        self.table.forget().await;
    }

    /// Hook `name`, from a table at most [`TABLE_TTL`] old.
    async fn hook(&self, state: &AppState, name: &str) -> fx_core::Result<Option<Hook>> {
        self.table
            .entry(state.backends.hooks.as_ref(), name, |read| {
                // Buckets of hooks that no longer exist go with them: the map stays as large
                // as the registry.
                self.buckets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .retain(|name, _| read.entries.iter().any(|h| &h.entry.name == name));
            })
            .await
    }

    /// Takes a token of `hook`'s bucket; when none is left, how long until one is.
    fn take(&self, hook: &Hook) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets
            .entry(hook.name.clone())
            .or_insert_with(|| Bucket::full(&hook.rate, now))
            .take(&hook.rate, now)
    }
}

/// Counts a delivery's outcome.
fn count(hook: &str, outcome: &'static str) {
    metrics::counter!(WEBHOOK_DELIVERIES, "hook" => hook.to_string(), "outcome" => outcome)
        .increment(1);
}

/// `POST /hooks/{name}`.
pub async fn deliver(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Utc::now();
    let arrived = Instant::now();
    let hook = match state.hooks.hook(&state, &name).await {
        Ok(Some(hook)) if hook.enabled => hook,
        Ok(_) => {
            count("-", "not_found");
            return ApiError::not_found(format!("no webhook {name:?}")).into_response();
        }
        Err(e) => {
            count("-", "unavailable");
            tracing::warn!(hook = %name, error = %e.chain(), "reading the webhooks failed");
            return ApiError::from(e).into_response();
        }
    };
    if let Err(wait) = state.hooks.take(&hook) {
        count(&hook.name, "rate_limited");
        tracing::debug!(hook = %hook.name, "webhook delivery over the rate limit");
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: ErrorKind::Unavailable,
            message: format!(
                "webhook {} takes {} deliveries a second (bursts of {}): retry in {seconds} s",
                hook.name, hook.rate.per_second, hook.rate.burst
            ),
            field: None,
        }
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    // What is accepted must travel on the bus, headers and invocation around it included.
    let room = fx_core::bus::max_payload_bytes(state.backends.bus.max_message_bytes())
        .saturating_sub(fx_core::event::MAX_ATTRIBUTE_BYTES);
    let limit = usize::try_from(hook.max_body_bytes)
        .unwrap_or(usize::MAX)
        .min(room);
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            count(&hook.name, "too_large");
            return ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                kind: ErrorKind::Invalid,
                message: format!(
                    "webhook {} takes bodies of at most {limit} bytes",
                    hook.name
                ),
                field: None,
            }
            .into_response();
        }
    };
    let pairs = header_pairs(&headers);
    let delivery = Delivery {
        headers: &pairs,
        body: &body,
        received,
    };
    let secret = match hook.verify.secret() {
        None => None,
        Some(secret) => match state.vault.value(secret).await {
            Ok(Some(value)) => Some(value),
            Ok(None) => {
                count(&hook.name, "unavailable");
                tracing::error!(hook = %hook.name, secret, "a webhook's signing secret does not exist: create it (ferrisfx secret set); deliveries are refused until then");
                return unavailable(&hook);
            }
            Err(e) => {
                count(&hook.name, "unavailable");
                tracing::error!(hook = %hook.name, secret, error = %e.chain(), "reading a webhook's signing secret failed; deliveries are refused until it can be read");
                return unavailable(&hook);
            }
        },
    };
    let checked = hook.verify(
        &delivery,
        secret.as_ref().map(|s| s.expose().as_bytes()),
        received,
    );
    drop(secret);
    if let Err(refusal) = checked {
        count(&hook.name, "unauthorized");
        tracing::info!(hook = %hook.name, reason = %refusal, "webhook delivery refused: bad signature");
        return ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind: ErrorKind::Unauthenticated,
            message: format!("webhook {}: {refusal}", hook.name),
            field: None,
        }
        .into_response();
    }
    let event = match hook.transform(&delivery) {
        Ok(event) => event,
        Err(refusal) => {
            count(&hook.name, "malformed");
            let message = match &refusal {
                Refusal::Malformed(m) | Refusal::Signature(m) => m,
            };
            return ApiError::invalid(format!("webhook {}: {message}", hook.name)).into_response();
        }
    };
    let parent = delivery
        .header(fx_core::trace::TRACEPARENT)
        .and_then(|traceparent| {
            fx_core::trace::TraceContext::parse(
                traceparent,
                delivery.header(fx_core::trace::TRACESTATE),
            )
        });
    if let Err(e) = crate::routes::events::publish_traced(&state, &event, arrived, parent).await {
        count(&hook.name, "unavailable");
        return ApiError::from(e).into_response();
    }
    count(&hook.name, "accepted");
    let accepted = Accepted {
        id: event.id().to_string(),
        source: event.source().to_string(),
        ty: event.ty().to_string(),
    };
    tracing::debug!(hook = %hook.name, event_id = %accepted.id, event_type = %accepted.ty, "webhook delivery accepted");
    (StatusCode::ACCEPTED, Json(accepted)).into_response()
}

fn unavailable(hook: &Hook) -> Response {
    ApiError::new(
        ErrorKind::Unavailable,
        format!(
            "webhook {} cannot check deliveries now; the server's log says why",
            hook.name
        ),
    )
    .into_response()
}

/// A request's headers as (lowercase name, value) pairs, for [`Delivery`]; values that are
/// not visible ASCII are left out (no signature scheme uses them).
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}
