//! `POST /api/v1/events` (and `POST /events`): CloudEvents over HTTP, published to
//! `fx.events`. Binary mode (`ce-` headers, the body is the data) and structured mode
//! (`application/cloudevents+json`) are accepted.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, MethodRouter};
use axum::Json;
use bytes::Bytes;
use cloudevents::AttributesReader;
use fx_core::bus::topics;
use fx_core::event::{decode_binding, encode_message};
use serde::{Deserialize, Serialize};

use fx_core::identity::{Action, Resource};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::{AppState, ServerSettings};

/// The header prefix of binary-mode attributes over HTTP.
pub const HTTP_PREFIX: &str = "ce-";

/// The answer to an accepted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The event's `id`.
    pub id: String,
    /// The event's `source`.
    pub source: String,
    /// The event's `type`.
    #[serde(rename = "type")]
    pub ty: String,
}

/// The route that accepts events, with its body limit.
pub fn ingress(settings: &ServerSettings) -> MethodRouter<AppState> {
    let limit = usize::try_from(settings.max_event_bytes).unwrap_or(usize::MAX);
    post(ingest).layer(DefaultBodyLimit::max(limit))
}

/// Decodes one CloudEvent and publishes it to `fx.events`: 202 with its id, source and type,
/// 400 with the reason when it is not a valid event.
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let arrived = std::time::Instant::now();
    let body = body?;
    // What is accepted must travel on: an event too large for an invocation on this bus is
    // refused here, with the reason, not accepted and failed later.
    let room = fx_core::bus::max_payload_bytes(state.backends.bus.max_message_bytes());
    let attributes: usize = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with(HTTP_PREFIX))
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if body.len().saturating_add(attributes) > room {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: fx_core::ErrorKind::Invalid,
            message: format!(
                "the event is {} bytes; the event bus carries events of at most {room} bytes (its messages hold {} bytes, with room for the invocation around the event)",
                body.len() + attributes,
                state.backends.bus.max_message_bytes()
            ),
            field: None,
        });
    }
    let mut pairs = Vec::with_capacity(headers.len());
    for (name, value) in &headers {
        let name = name.as_str();
        let relevant = name.starts_with(HTTP_PREFIX) || name == "content-type";
        match value.to_str() {
            Ok(value) => pairs.push((name, value)),
            Err(_) if relevant => {
                return Err(ApiError::invalid(format!(
                    "header {name} is not visible ascii (percent-encode attribute values)"
                )))
            }
            Err(_) => {}
        }
    }
    let event = decode_binding(HTTP_PREFIX, pairs, &body)?;
    caller.check(Action::EventEmit, Resource::Named(event.ty()))?;
    let accepted = Accepted {
        id: event.id().to_string(),
        source: event.source().to_string(),
        ty: event.ty().to_string(),
    };
    let parent = fx_core::trace::TraceContext::parse(
        header_text(&headers, fx_core::trace::TRACEPARENT).unwrap_or_default(),
        header_text(&headers, fx_core::trace::TRACESTATE),
    );
    publish_traced(&state, &event, arrived, parent).await?;
    tracing::debug!(event_id = %accepted.id, source = %accepted.source, event_type = %accepted.ty, "event accepted");
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Publishes an accepted `event` (that arrived at `arrived`) to `fx.events`, stamped with the
/// handler registry's revision as of its arrival: every handler the API confirmed before the
/// event came is in that revision, and the gateway does not match the event against an older
/// table.
pub async fn publish(
    state: &AppState,
    event: &cloudevents::Event,
    arrived: std::time::Instant,
) -> fx_core::Result<()> {
    publish_traced(state, event, arrived, None).await
}

/// As [`publish`], in a trace: the event's own distributed-tracing extension (its origin's
/// context) if it has one, else `parent` (the request's W3C `traceparent` header), else a new
/// trace. The ingress span is recorded, and the event travels on with its context in the
/// extension, so that gateway, executor and chained functions continue the trace.
pub async fn publish_traced(
    state: &AppState,
    event: &cloudevents::Event,
    arrived: std::time::Instant,
    parent: Option<fx_core::trace::TraceContext>,
) -> fx_core::Result<()> {
    let parent = fx_core::trace::TraceContext::of_event(event).or(parent);
    let mut span = state.backends.tracer.start(
        "fx.ingress",
        fx_core::trace::SpanKind::Server,
        parent.as_ref(),
    );
    span.set("cloudevents.event_id", event.id().to_string());
    span.set("cloudevents.event_type", event.ty().to_string());
    span.set("cloudevents.event_source", event.source().to_string());
    let traced;
    let event = match span.context() {
        Some(context) => {
            traced = context.applied(event.clone());
            &traced
        }
        None => event,
    };
    let published = publish_untraced(state, event, arrived).await;
    if let Err(e) = &published {
        span.fail(e.chain());
    }
    span.end();
    published
}

/// The text of header `name`, when it is visible ASCII.
pub fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

async fn publish_untraced(
    state: &AppState,
    event: &cloudevents::Event,
    arrived: std::time::Instant,
) -> fx_core::Result<()> {
    let revision = match state.revisions.since(arrived).await {
        Ok(revision) => revision,
        Err((last, e)) => {
            tracing::warn!(error = %e.chain(), revision = last, "reading the handler registry's revision failed; stamping the event with the last one read");
            last
        }
    };
    let message =
        encode_message(event).with_header(topics::REGISTRY_REVISION_HEADER, revision.to_string());
    state.backends.bus.publish(topics::EVENTS, message).await
}
