//! `/audit`: the audit log, newest first, filtered by principal, action and outcome
//! (`audit:read`).

use askama::Template;
use axum::extract::State;
use fx_core::identity::{AuditOutcome, AuditQuery};
use serde::{Deserialize, Serialize};

use super::{HtmlTemplate, PageError};
use crate::error::ApiQuery;
use crate::AppState;

/// One entry as shown.
struct EntryView {
    at: String,
    principal: String,
    action: String,
    resource: String,
    outcome: &'static str,
    source: String,
    detail: String,
}

/// The audit page.
#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    /// The highlighted navigation entry (none).
    active: &'static str,
    principal: String,
    action: String,
    /// Each outcome and whether it is the one filtered by.
    outcomes: Vec<(&'static str, bool)>,
    entries: Vec<EntryView>,
    filtered: bool,
    /// The next (older) page.
    next: Option<String>,
}

/// Query parameters of `/audit`; empty values mean "any".
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// `GET /audit`.
pub async fn show(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let outcome = given(&params.outcome)
        .map(|o| AuditOutcome::parse(&o))
        .transpose()?;
    let query = AuditQuery {
        principal: given(&params.principal),
        action: given(&params.action),
        outcome,
        cursor: given(&params.cursor),
        limit: Some(state.settings.page_size),
        ..AuditQuery::default()
    };
    let page = state.backends.identity.audit(&query).await?;
    let next = page.next_cursor.map(|cursor| {
        let next = AuditParams {
            cursor: Some(cursor),
            ..params.clone()
        };
        format!(
            "/audit?{}",
            serde_urlencoded::to_string(&next).unwrap_or_default()
        )
    });
    Ok(HtmlTemplate(AuditPage {
        active: "audit",
        filtered: query.principal.is_some() || query.action.is_some() || outcome.is_some(),
        principal: query.principal.clone().unwrap_or_default(),
        action: query.action.clone().unwrap_or_default(),
        outcomes: ["ok", "denied", "failed"]
            .into_iter()
            .map(|o| (o, outcome.map(AuditOutcome::name) == Some(o)))
            .collect(),
        entries: page
            .items
            .into_iter()
            .map(|e| EntryView {
                at: e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                principal: e.principal,
                action: e.action,
                resource: e.resource,
                outcome: e.outcome.name(),
                source: e.source,
                detail: e.detail,
            })
            .collect(),
        next,
    }))
}
