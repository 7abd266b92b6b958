//! `/`: counts, the latest executions, and how to get started on an empty platform.

use askama::Template;
use axum::extract::State;
use fx_core::execution::{ExecutionQuery, ExecutionStatus};

use super::rows::ExecutionRow;
use super::{HtmlTemplate, PageError};
use crate::AppState;

/// How many executions the overview shows.
const LATEST: u32 = 10;

/// The overview page.
#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// Distinct packages.
    packages: usize,
    /// Package versions.
    versions: usize,
    /// Valid handlers.
    handlers: usize,
    /// Invalid registry entries.
    invalid_handlers: usize,
    /// The latest executions.
    rows: Vec<ExecutionRow>,
    /// How many of them failed.
    failed: usize,
    /// Whether to show how to get started (no packages or no handlers yet).
    getting_started: bool,
    /// The live stream of the latest executions.
    live: Option<String>,
    /// What the list says when empty.
    empty: String,
    /// The last hour's figures, rendered (refreshed by the page).
    dashboard: String,
}

/// `GET /`.
pub async fn show(State(state): State<AppState>) -> Result<HtmlTemplate<impl Template>, PageError> {
    let versions = state.backends.state.list_package_versions(None).await?;
    let mut names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let table = state.backends.registry.table().await?;
    let query = ExecutionQuery {
        limit: Some(LATEST),
        ..ExecutionQuery::default()
    };
    let latest = state.backends.state.list_executions(&query).await?;
    let empty = "No executions yet.".to_string();
    let live = Some(format!(
        "/live/executions?{}",
        super::rows::live_query(&super::rows::LiveListParams {
            limit: Some(LATEST),
            empty: Some(empty.clone()),
            ..Default::default()
        })
    ));
    let dashboard = super::dashboard::compute(&state)
        .await?
        .render()
        .unwrap_or_default();
    Ok(HtmlTemplate(OverviewPage {
        active: "overview",
        dashboard,
        live,
        empty,
        packages: names.len(),
        versions: versions.len(),
        handlers: table.handlers.len(),
        invalid_handlers: table.invalid.len(),
        failed: latest
            .items
            .iter()
            .filter(|e| e.status == ExecutionStatus::Failed)
            .count(),
        rows: latest.items.iter().map(ExecutionRow::from).collect(),
        getting_started: versions.is_empty() || table.handlers.is_empty(),
    }))
}
