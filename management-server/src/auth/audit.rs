//! The audit log, written in one place: a layer around the guard records every request that
//! changes something (any method but `GET`, `HEAD` and `OPTIONS`; events count only when
//! refused), allowed or refused, with the
//! principal, the action of the route (from [`super::table`]), the resource, the client's
//! address and the outcome. A handler names the resource more precisely (`payments@1.2.0`)
//! by putting an [`AuditResource`] in its response.
//!
//! Refusals of requests without a valid credential are recorded at most
//! [`MAX_UNAUTHENTICATED_PER_MINUTE`] a minute, so that a flood of bad tokens cannot grow the
//! log without bound; the rest are counted in the log's warning.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use fx_core::identity::{clip_detail, AuditOutcome, AuditRecord};

use super::table::{self, Requirement, Target};
use crate::AppState;

/// The sign-in route, audited as `login`.
pub const LOGIN_PATH: &str = "/api/v1/login";

/// Refused unauthenticated requests (and refused sign-ins) recorded a minute, at most.
pub const MAX_UNAUTHENTICATED_PER_MINUTE: u64 = 60;

/// Who the guard found, for the audit layer (put in the response by the guard).
#[derive(Debug, Clone)]
pub struct AuditWho(pub String);

/// The resource a handler acted on, more precise than its path (put in its response).
#[derive(Debug, Clone)]
pub struct AuditResource(pub String);

/// Counts recorded unauthenticated refusals per minute.
#[derive(Default)]
pub struct Throttle {
    window: Mutex<Option<Instant>>,
    recorded: AtomicU64,
    dropped: AtomicU64,
}

impl Throttle {
    /// Whether one more unauthenticated refusal may be recorded now.
    fn admit(&self) -> bool {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if window.is_none_or(|start| start.elapsed() >= Duration::from_secs(60)) {
            *window = Some(Instant::now());
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "unauthenticated requests refused last minute and not written to the audit log"
                );
            }
            self.recorded.store(0, Ordering::Relaxed);
        }
        if self.recorded.fetch_add(1, Ordering::Relaxed) < MAX_UNAUTHENTICATED_PER_MINUTE {
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// The layer: runs the request, then records it when it was a change.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let path = request.uri().path().to_string();
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "local".into());
    let response = next.run(request).await;

    let status = response.status();
    let outcome = if status.is_success() || status.is_redirection() {
        AuditOutcome::Ok
    } else if status == axum::http::StatusCode::UNAUTHORIZED
        || status == axum::http::StatusCode::FORBIDDEN
    {
        AuditOutcome::Denied
    } else {
        AuditOutcome::Failed
    };
    let principal = response
        .extensions()
        .get::<AuditWho>()
        .map(|w| w.0.clone())
        .unwrap_or_else(|| "anonymous".into());
    let requirement = table::requirement(&method, &template);
    let action = match requirement {
        Some(Requirement::Allowed(action, _)) => action.name().to_string(),
        _ if template == LOGIN_PATH || template == "/login" => "login".to_string(),
        _ if template == "/logout" => "logout".to_string(),
        _ if template == crate::hooks::PATH => "hook:deliver".to_string(),
        _ if template == crate::chat::PATH => "chat:command".to_string(),
        _ => format!("{method} {template}"),
    };
    // An accepted event is data, not a change of the platform: recording each would put a
    // state-store write on the ingress path and grow the log with the traffic. Refused ones
    // are recorded.
    let data_path = matches!(
        action.as_str(),
        "event:emit" | "hook:deliver" | "chat:command"
    );
    if data_path && outcome != AuditOutcome::Denied {
        return response;
    }
    let unauthenticated = principal == "anonymous" || action == "login";
    if unauthenticated && outcome == AuditOutcome::Denied && !state.audit.admit() {
        return response;
    }
    let resource = match (response.extensions().get::<AuditResource>(), requirement) {
        (Some(AuditResource(named)), _) => named.clone(),
        (None, Some(Requirement::Allowed(_, Target::Path(param)))) => {
            table::path_param(&template, &path, param).unwrap_or_else(|| path.clone())
        }
        _ => path.clone(),
    };
    let entry = AuditRecord {
        id: 0,
        at: Utc::now(),
        principal,
        action,
        resource,
        source,
        outcome,
        detail: clip_detail(&format!("{method} {path} → {}", status.as_u16())),
    };
    match state.backends.identity.append_audit(&entry).await {
        Ok(id) => {
            // Also to the operational sink (Elasticsearch: the audit index Kibana searches).
            let entry = AuditRecord { id, ..entry };
            if let Err(e) = state.backends.sink.write_audit(&[entry]).await {
                tracing::warn!(error = %e.chain(), "writing an audit entry to the sink failed");
            }
        }
        Err(e) => {
            tracing::error!(action = %entry.action, principal = %entry.principal, resource = %entry.resource, outcome = entry.outcome.name(), error = %e.chain(), "writing the audit log failed");
        }
    }
    response
}
