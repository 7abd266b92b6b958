//! What the execution pages and their live streams share: the row of an execution table and
//! the query of a live list.

use cloudevents::AttributesReader;
use fx_core::execution::{Execution, ExecutionSummary};
use serde::Deserialize;

use super::{show_duration, show_time};

/// One row of an execution table.
pub struct ExecutionRow {
    /// Execution id.
    pub id: String,
    /// Handler name.
    pub handler: String,
    /// Status name, also the badge's class.
    pub status: &'static str,
    /// The event's type.
    pub event_type: String,
    /// The event's source.
    pub event_source: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was created.
    pub created_at: String,
    /// Run time of the latest attempt, or empty.
    pub duration: String,
}

impl From<&ExecutionSummary> for ExecutionRow {
    fn from(e: &ExecutionSummary) -> Self {
        ExecutionRow {
            id: e.id.to_string(),
            handler: e.handler.clone(),
            status: e.status.as_str(),
            event_type: e.event_type.clone(),
            event_source: e.event_source.clone(),
            attempts: e.attempts,
            created_at: show_time(&e.created_at),
            duration: e.duration_us.map(show_duration).unwrap_or_default(),
        }
    }
}

impl From<&Execution> for ExecutionRow {
    fn from(e: &Execution) -> Self {
        ExecutionRow {
            id: e.id.to_string(),
            handler: e.handler.clone(),
            status: e.status.as_str(),
            event_type: e.event.ty().to_string(),
            event_source: e.event.source().to_string(),
            attempts: e.attempts,
            created_at: show_time(&e.created_at),
            duration: e.duration_us.map(show_duration).unwrap_or_default(),
        }
    }
}

/// Query parameters of `GET /live/executions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveListParams {
    /// Only this handler's executions.
    #[serde(default)]
    pub handler: Option<String>,
    /// Only this status.
    #[serde(default)]
    pub status: Option<String>,
    /// How many (the first page).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Comma-separated execution ids to follow instead of a query.
    #[serde(default)]
    pub ids: Option<String>,
    /// The empty-state text.
    #[serde(default)]
    pub empty: Option<String>,
}

/// The query string of a live list stream.
pub fn live_query(params: &LiveListParams) -> String {
    let pairs = [
        ("handler", params.handler.clone()),
        ("status", params.status.clone()),
        ("limit", params.limit.map(|l| l.to_string())),
        ("ids", params.ids.clone()),
        ("empty", params.empty.clone()),
    ];
    let present: Vec<(&str, String)> = pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    serde_urlencoded::to_string(present).unwrap_or_default()
}
