//! `/api/v1/handlers/{name}/logs`: a handler's function log lines in order (time, execution,
//! attempt, seq), paged by cursor, for `ferrisfx logs` and anyone following a handler.

use axum::extract::State;
use axum::Json;
use fx_core::execution::LogLine;
use fx_core::identity::{Action, Resource};
use fx_core::sink::{LogCursor, LogQuery};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::routes::executions::parse_time;
use crate::AppState;

/// Lines per page when the query names no limit.
pub const DEFAULT_LIMIT: usize = 100;

/// Query parameters of a handler's log; empty values mean "none".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Only lines written at or after this time: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` in UTC.
    #[serde(default)]
    pub since: Option<String>,
    /// Only lines after this cursor (`next` of the previous page).
    #[serde(default)]
    pub after: Option<String>,
    /// Page size (1 to 1,000, 100 by default).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The answer of `GET /api/v1/handlers/{name}/logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    /// The lines, in order.
    pub lines: Vec<LogLine>,
    /// The cursor to ask the next page with (`after`) when this one is full; `null` when it
    /// holds every line there is now (to follow, ask again later after the last line).
    pub next: Option<String>,
}

impl LogParams {
    /// The sink query for `handler`; 400 on a bad time, cursor or limit.
    pub fn to_query(&self, handler: &str) -> Result<LogQuery, ApiError> {
        let non_empty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let since = non_empty(&self.since)
            .map(|t| parse_time("since", &t))
            .transpose()?;
        let after = non_empty(&self.after)
            .map(|c| c.parse::<LogCursor>())
            .transpose()
            .map_err(|e| ApiError::from(e).on_field("after"))?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=fx_core::sink::MAX_LOG_LINES).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit {limit} is out of range: 1 to {}",
                fx_core::sink::MAX_LOG_LINES
            ))
            .on_field("limit"));
        }
        Ok(LogQuery {
            handler: handler.to_string(),
            since,
            after,
            limit,
        })
    }
}

/// `GET /api/v1/handlers/{name}/logs?since=&after=&limit=`: 404 for a handler that does not
/// exist, 403 for one whose executions the caller may not read.
pub async fn handler_logs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> Result<Json<LogPage>, ApiError> {
    caller.check(Action::ExecutionRead, Resource::Named(&name))?;
    let query = params.to_query(&name)?;
    if state.backends.registry.get(&name).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "handler {name:?} does not exist"
        )));
    }
    let lines = state.backends.sink.handler_logs(&query).await?;
    let next = match lines.last() {
        Some(last) if lines.len() == query.page_size() => Some(LogCursor::of(last).to_string()),
        _ => None,
    };
    Ok(Json(LogPage { lines, next }))
}
