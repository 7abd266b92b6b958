//! `/handlers`: every handler with its filter and package, and the invalid entries with why.

use askama::Template;
use axum::extract::State;
use fx_core::registry::StoredHandler;
use fx_core::ErrorKind;

use super::{HtmlTemplate, PageError};
use crate::AppState;

/// The handlers page.
#[derive(Template)]
#[template(path = "handlers.html")]
struct HandlersPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// The registry revision shown.
    revision: u64,
    /// Valid handlers, by name.
    handlers: Vec<HandlerView>,
    /// Invalid entries: name and reason.
    invalid: Vec<(String, String)>,
    /// What just happened (a save or a delete).
    notice: Option<String>,
}

/// Query parameters of the handlers page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct HandlersParams {
    /// The handler just saved.
    #[serde(default)]
    pub saved: Option<String>,
    /// The handler just deleted.
    #[serde(default)]
    pub deleted: Option<String>,
}

/// A handler as shown.
struct HandlerView {
    /// Handler name.
    name: String,
    /// Free text.
    description: String,
    /// The filter as pretty JSON.
    filter: String,
    /// The package reference.
    package: String,
    /// The version the package reference resolves to now, or why it does not.
    resolved: Result<String, String>,
    /// Executor pool.
    pool: String,
    /// Whether it matches events.
    enabled: bool,
    /// Revision of its last write.
    revision: u64,
    /// Limit overrides, or "package defaults".
    limits: String,
    /// The retry policy, readable.
    retry: String,
}

/// `GET /handlers`.
pub async fn show(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    params: Result<axum::extract::Query<HandlersParams>, axum::extract::rejection::QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let notice = params.ok().and_then(|axum::extract::Query(p)| {
        p.saved
            .map(|name| format!("saved handler {name}"))
            .or(p.deleted.map(|name| format!("deleted handler {name}")))
    });
    let table = state.backends.registry.table().await?;
    let read = |name: &str| caller.may(fx_core::identity::Action::HandlerRead, name);
    let mut handlers = Vec::with_capacity(table.handlers.len());
    for stored in table.handlers {
        if read(&stored.handler.name) {
            handlers.push(view(&state, stored).await?);
        }
    }
    Ok(HtmlTemplate(HandlersPage {
        active: "handlers",
        notice,
        revision: table.revision,
        handlers,
        invalid: table
            .invalid
            .into_iter()
            .filter(|i| read(&i.name))
            .map(|i| (i.name, i.reason))
            .collect(),
    }))
}

async fn view(state: &AppState, stored: StoredHandler) -> Result<HandlerView, PageError> {
    let h = stored.handler;
    let resolved = match state.backends.state.resolve_package(&h.package).await {
        Ok(version) => Ok(version.version),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(e.chain()),
        Err(e) => return Err(e.into()),
    };
    let retry = if h.retry.max_attempts <= 1 {
        "no retry".to_string()
    } else {
        format!(
            "{} attempts, backoff {} ms (max {} ms)",
            h.retry.max_attempts, h.retry.backoff_ms, h.retry.max_backoff_ms
        )
    };
    let limits = if h.limits.is_empty() {
        "package defaults".to_string()
    } else {
        serde_json::to_string(&h.limits).unwrap_or_default()
    };
    Ok(HandlerView {
        filter: serde_json::to_string_pretty(&h.filter).unwrap_or_default(),
        package: h.package.to_string(),
        resolved,
        name: h.name,
        description: h.description,
        pool: h.pool,
        enabled: h.enabled,
        revision: stored.revision,
        limits,
        retry,
    })
}
