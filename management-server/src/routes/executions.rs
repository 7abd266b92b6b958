//! `/api/v1/executions`: executions newest first, and one with its log lines.

use axum::extract::State;
use axum::Json;
use fx_core::execution::{
    Execution, ExecutionId, ExecutionQuery, ExecutionStatus, ExecutionSummary, LogLine, Page,
};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::AppState;

/// Query parameters of the execution list; empty values (from an HTML form) mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionParams {
    /// Only this handler's executions.
    #[serde(default)]
    pub handler: Option<String>,
    /// Only this status: `queued`, `running`, `succeeded` or `failed`.
    #[serde(default)]
    pub status: Option<String>,
    /// Continue after this cursor (`next_cursor` of the previous page).
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size (1 to 500, 50 by default).
    #[serde(default)]
    pub limit: Option<u32>,
}

impl ExecutionParams {
    /// The store query these parameters ask for; 400 on an unknown status.
    pub fn to_query(&self) -> Result<ExecutionQuery, ApiError> {
        let non_empty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let status = non_empty(&self.status)
            .map(|s| ExecutionStatus::parse(&s))
            .transpose()?;
        Ok(ExecutionQuery {
            handler: non_empty(&self.handler),
            status,
            cursor: non_empty(&self.cursor),
            limit: self.limit,
        })
    }
}

/// The answer of `GET /api/v1/executions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionDetail {
    /// The execution.
    pub execution: Execution,
    /// Its log lines, by attempt then position.
    pub logs: Vec<LogLine>,
}

/// `GET /api/v1/executions?handler=&status=&cursor=&limit=`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ExecutionParams>,
) -> Result<Json<Page<ExecutionSummary>>, ApiError> {
    let query = params.to_query()?;
    Ok(Json(state.backends.state.list_executions(&query).await?))
}

/// `GET /api/v1/executions/{id}`: 400 on a malformed id, 404 if unknown.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ExecutionDetail>, ApiError> {
    Ok(Json(execution_detail(&state, &id).await?))
}

/// An execution with its logs.
pub async fn execution_detail(state: &AppState, id: &str) -> Result<ExecutionDetail, ApiError> {
    let id = ExecutionId::parse(id)?;
    let Some(execution) = state.backends.state.get_execution(&id).await? else {
        return Err(ApiError::not_found(format!(
            "execution {id} does not exist"
        )));
    };
    let logs = state.backends.sink.execution_logs(&id).await?;
    Ok(ExecutionDetail { execution, logs })
}
