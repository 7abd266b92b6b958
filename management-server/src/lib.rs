//! FerrisFX management server: the REST API and the web UI over the platform's ports.
//!
//! Layout:
//!
//! - [`router`] builds the whole application from an [`AppState`] (the backends and the
//!   [`ServerSettings`]); [`serve`] runs it on a bound listener until a shutdown token fires, so
//!   that tests and `ferrisfx dev` bind whatever port they like.
//! - [`error`]: the API's one error type ([`ApiError`]), mapping each `fx_core::ErrorKind` to an
//!   HTTP status with the body `{"error": {"kind", "message"}}`, and the extractors whose
//!   rejections use it.
//! - [`routes`]: the REST API under `/api/v1`, one module per resource: `packages` (upload,
//!   list, aliases), `handlers` (CRUD with revisions), `executions` (list and detail with logs)
//!   and `events` (CloudEvents over HTTP, published to `fx.events`; also at `POST /events`).
//! - [`pages`]: the server-rendered web UI (askama templates in `templates/`, one stylesheet in
//!   `static/` compiled into the binary): overview, packages, handlers, executions.
//! - `GET /healthz` answers `ok`; `GET /readyz` answers 200 when the stores answer, else 503,
//!   with the outcome of each port's check ([`fx_core::ready`]; the `ferrisfx` crate serves both
//!   on `ops.listen` too).

pub mod auth;
pub mod chat;
pub mod error;
pub mod graph;
pub mod hooks;
pub mod limits;
pub mod metrics;
pub mod notifier;
pub mod openapi;
pub mod pages;
pub mod retention;
pub mod routes;
pub mod settings;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use fx_core::backends::Backends;
use fx_core::registry::RevisionReads;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use settings::ServerSettings;

/// What every request handler gets: the backends and the settings. Cheap to clone (the
/// backends are `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// The platform's ports.
    pub backends: Backends,
    /// The server's settings (shared: the state is cloned for every request and layer).
    pub settings: Arc<ServerSettings>,
    /// Reads of the handler registry's revision, shared by concurrent ingress requests.
    pub revisions: Arc<RevisionReads>,
    /// What the server does at most at once.
    pub limits: Arc<limits::ServerLimits>,
    /// Checks an uploaded package with the executors' engine (compiles and links it), when
    /// set: a component that cannot run is refused at upload, with the reason.
    pub check: Option<Arc<dyn fx_core::package::PackageCheck>>,
    /// Who is asking and what they may do ([`auth`]).
    pub auth: Arc<auth::Auth>,
    /// How many refused unauthenticated requests the audit log takes a minute.
    pub audit: Arc<auth::audit::Throttle>,
    /// The platform's secrets; without a keyring ([`AppState::with_keyring`]) they can be
    /// listed and deleted but not written or delivered.
    pub vault: fx_core::secrets::Vault,
    /// The webhooks as last read and their rate limits ([`hooks`]).
    pub hooks: Arc<hooks::HookGate>,
    /// The command bundles as last read and the chat replies waited for ([`chat`]).
    pub chat: Arc<chat::ChatGate>,
    /// Traces: where an execution's page links its trace id to.
    pub telemetry: Arc<fx_core::trace::TelemetrySettings>,
}

/// How long the ingress waits for the registry's revision before stamping an event with the
/// last one it read.
const REVISION_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl AppState {
    /// The state of a server over `backends` with `settings`.
    pub fn new(backends: Backends, settings: ServerSettings) -> Self {
        let revisions = Arc::new(RevisionReads::new(
            backends.registry.clone(),
            REVISION_READ_TIMEOUT,
        ));
        let limits = Arc::new(limits::ServerLimits::new(&settings));
        let auth = Arc::new(auth::Auth::new(
            settings.auth.clone(),
            backends.identity.clone(),
        ));
        AppState {
            vault: fx_core::secrets::Vault::new(backends.secrets.clone(), None),
            backends,
            settings: Arc::new(settings),
            revisions,
            limits,
            check: None,
            auth,
            audit: Arc::default(),
            hooks: Arc::default(),
            chat: Arc::default(),
            telemetry: Arc::default(),
        }
    }

    /// This state, linking executions to their traces as `telemetry.trace_url` says.
    pub fn with_telemetry(mut self, telemetry: fx_core::trace::TelemetrySettings) -> Self {
        self.telemetry = Arc::new(telemetry);
        self
    }

    /// This state, sealing and opening platform secrets with `keyring` (the settings'
    /// [`fx_core::secrets::SecretsSettings::keyring`]).
    pub fn with_keyring(mut self, keyring: Option<fx_core::secrets::Keyring>) -> Self {
        self.vault = fx_core::secrets::Vault::new(self.backends.secrets.clone(), keyring);
        self
    }

    /// This state, with `vault` for the platform's secrets (shared with an in-process
    /// executor).
    pub fn with_vault(mut self, vault: fx_core::secrets::Vault) -> Self {
        self.vault = vault;
        self
    }

    /// This state, checking uploads with `check`.
    pub fn with_check(mut self, check: Arc<dyn fx_core::package::PackageCheck>) -> Self {
        self.check = Some(check);
        self
    }
}

/// The server's shutdown signal, given to the handlers that hold a response open (the UI's
/// live streams end with it, so that a graceful shutdown does not wait for open browser tabs).
#[derive(Clone, Debug, Default)]
pub struct Shutdown(pub CancellationToken);

/// The whole application: REST API, CloudEvents ingress, web UI and health check.
pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/api/v1", routes::api(&state))
        .route("/events", routes::events::ingress(&state.settings))
        .route("/hooks/{name}", axum::routing::post(hooks::deliver))
        .route("/chat/slack/{bundle}", axum::routing::post(chat::slack))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/docs", get(openapi::viewer))
        .route("/api/docs/rapidoc.js", get(openapi::rapidoc))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_route))
        .merge(pages::routes(&state))
        // After routing (it reads the matched route), before every handler.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        // Around the guard, so that refusals are recorded too.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::audit::record,
        ))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::requests,
        ))
        .layer(axum::middleware::from_fn(log_request))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// The Content-Security-Policy of every page: scripts and styles of this site only (inline
/// styles for htmx's indicators), no framing, forms posted here only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Headers every answer carries: no framing, no content sniffing, no referrer to other
/// sites, and the CSP (the API viewer, a third-party bundle, keeps only `frame-ancestors`).
async fn security_headers(request: Request, next: Next) -> Response {
    use axum::http::{header, HeaderValue};
    let viewer = request.uri().path().starts_with("/api/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    let policy = if viewer {
        "frame-ancestors 'none'"
    } else {
        CONTENT_SECURITY_POLICY
    };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    response
}

/// `GET /metrics`: this process's Prometheus metrics ([`metrics`]).
async fn metrics_route(State(state): State<AppState>) -> Response {
    metrics::render(Some(state.backends.sink.as_ref()))
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled, then finishes the requests
/// in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    state
        .settings
        .validate()
        .map_err(|e| anyhow::anyhow!(e.chain()))
        .context("checking the management server settings")?;
    let local = listener
        .local_addr()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(false);
    if !state.settings.auth.enabled && !local {
        anyhow::bail!(
            "authentication is off (server.auth.enabled = false) and the server listens beyond \
             this machine: turn authentication on, or listen on 127.0.0.1 (docs/security.md)"
        );
    }
    if !state.settings.auth.enabled {
        tracing::warn!(
            "authentication is off: every request acts as the local operator (loopback only)"
        );
    }
    auth::bootstrap(&state.settings.auth, state.backends.identity.as_ref())
        .await
        .context("setting up authentication")?;
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    tracing::info!(%addr, "management server listening");
    tokio::spawn(auth::purge_tokens(
        state.backends.identity.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(retention::run(
        state.backends.clone(),
        state.settings.retention.clone(),
        shutdown.clone(),
    ));
    let ui = state
        .settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    tokio::spawn(notifier::run(state.clone(), ui, shutdown.clone()));
    let app = router(state).layer(axum::Extension(Shutdown(shutdown.clone())));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    .context("serving http")?;
    tracing::info!(%addr, "management server stopped");
    Ok(())
}

/// Logs every request with its status and how long it took.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "http request"
    );
    response
}

async fn healthz() -> &'static str {
    "ok"
}

/// Every port this server uses answers. The outcome of each port's check (which names the
/// backends' addresses) only for a caller allowed `ops:read`; others get `{"ready": …}`.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: auth::Caller,
) -> Response {
    use fx_core::ready::Port::{Bus, Packages, Registry, Sink, State};
    let readiness = fx_core::ready::Readiness::new(
        &state.backends,
        &[Bus, Registry, Packages, State, Sink],
        &[],
    );
    let report = readiness.report().await;
    let detailed = caller
        .check(
            fx_core::identity::Action::OpsRead,
            fx_core::identity::Resource::Any,
        )
        .is_ok();
    if detailed {
        return ready_response(report);
    }
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({"ready": report.ready})),
    )
        .into_response()
}

/// `/readyz`'s answer: 200 with the report when ready, else 503 with it.
pub fn ready_response(report: fx_core::ready::ReadyReport) -> Response {
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

/// Unknown paths: a JSON error under `/api/`, a page elsewhere.
async fn not_found(uri: Uri) -> Response {
    let message = format!("no such path {}", uri.path());
    if uri.path().starts_with("/api/") {
        ApiError::not_found(message).into_response()
    } else {
        pages::error_page(StatusCode::NOT_FOUND, message)
    }
}
