//! `/api/v1/executions`: executions newest first, one with its log lines, and re-driving a
//! failed one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use fx_core::bus::topics;
use fx_core::event::Message;
use fx_core::execution::{
    Execution, ExecutionId, ExecutionQuery, ExecutionStatus, ExecutionSummary, Invocation, LogLine,
    Page, ResolvedPackage,
};
use fx_core::grants::Grants;
use fx_core::limits::Limits;
use fx_core::ErrorKind;
use serde::{Deserialize, Serialize};

use fx_core::identity::{Action, Resource};

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::AppState;

/// Query parameters of the execution list; empty values (from an HTML form) mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionParams {
    /// Only this handler's executions.
    #[serde(default)]
    pub handler: Option<String>,
    /// Only this status: `queued`, `running`, `retrying`, `succeeded` or `failed`.
    #[serde(default)]
    pub status: Option<String>,
    /// Continue after this cursor (`next_cursor` of the previous page).
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size (1 to 500, 50 by default).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only those created at or after this time: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` in UTC
    /// (what an HTML `datetime-local` field sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only those created before this time (as `since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Only those whose event id or source contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A time filter: RFC 3339, or a date and time without zone taken as UTC.
fn parse_time(name: &str, text: &str) -> Result<chrono::DateTime<Utc>, ApiError> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc());
        }
    }
    Err(ApiError::invalid(format!(
        "{name} {text:?} is not a time: use RFC 3339 (2026-12-01T04:00:00Z) or YYYY-MM-DDTHH:MM in UTC"
    )))
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
        let since = non_empty(&self.since)
            .map(|t| parse_time("since", &t))
            .transpose()?;
        let until = non_empty(&self.until)
            .map(|t| parse_time("until", &t))
            .transpose()?;
        Ok(ExecutionQuery {
            handler: non_empty(&self.handler),
            status,
            cursor: non_empty(&self.cursor),
            limit: self.limit,
            since,
            until,
            text: non_empty(&self.text),
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
    caller: Caller,
    ApiQuery(params): ApiQuery<ExecutionParams>,
) -> Result<Json<Page<ExecutionSummary>>, ApiError> {
    let query = params.to_query()?;
    check_listing(&caller, &query)?;
    Ok(Json(state.backends.state.list_executions(&query).await?))
}

/// Whether `caller` may list what `query` asks for: the executions of the handler it names,
/// or, without one, of every handler (`execution:read` on `*`); a caller allowed only some
/// handlers filters by one of them.
pub fn check_listing(caller: &Caller, query: &ExecutionQuery) -> Result<(), ApiError> {
    match &query.handler {
        Some(handler) => caller.check(Action::ExecutionRead, Resource::Named(handler)),
        None => caller
            .check(Action::ExecutionRead, Resource::All)
            .map_err(|mut e| {
                e.message
                    .push_str(": filter by a handler you may read (?handler=<name>)");
                e
            }),
    }
}

/// `GET /api/v1/executions/{id}`: 400 on a malformed id, 404 if unknown, 403 for an execution
/// of a handler the caller may not read.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ExecutionDetail>, ApiError> {
    Ok(Json(execution_detail(&state, &caller, &id).await?))
}

/// An execution with its logs, if `caller` may read its handler's executions.
pub async fn execution_detail(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<ExecutionDetail, ApiError> {
    let id = ExecutionId::parse(id)?;
    let Some(execution) = state.backends.state.get_execution(&id).await? else {
        return Err(ApiError::not_found(format!(
            "execution {id} does not exist"
        )));
    };
    caller.check(Action::ExecutionRead, Resource::Named(&execution.handler))?;
    let logs = state.backends.sink.execution_logs(&id).await?;
    Ok(ExecutionDetail { execution, logs })
}

/// The answer of `POST /api/v1/executions/{id}/redrive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redriven {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The attempt that will run.
    pub attempt: u32,
    /// The handler, as it is now.
    pub handler: String,
    /// The package version that will run (the handler's reference resolved now).
    pub package: ResolvedPackage,
}

/// `POST /api/v1/executions/{id}/redrive`: runs a failed execution (typically one in the
/// dead-letter topic) again, with the handler and package as they are now and a fresh retry
/// budget. 202 once the invocation is published; 404 if unknown; 409 unless it failed, or
/// when its handler or package no longer exists.
pub async fn redrive(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Redriven>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(redrive_execution(&state, &caller, &id, Again::Redrive).await?),
    ))
}

/// `POST /api/v1/executions/{id}/rerun`: runs a finished execution (succeeded or failed)
/// again, as [`redrive`] does; 409 while it is still queued, running or retrying.
pub async fn rerun(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Redriven>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(redrive_execution(&state, &caller, &id, Again::Rerun).await?),
    ))
}

/// Which executions may run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// Failed ones only (re-drive from the dead-letter topic).
    Redrive,
    /// Any finished one.
    Rerun,
}

/// Runs execution `id` again (see [`redrive`] and [`rerun`]); shared by the API and the UI.
pub async fn redrive_execution(
    state: &AppState,
    caller: &Caller,
    id: &str,
    again: Again,
) -> Result<Redriven, ApiError> {
    let id = ExecutionId::parse(id)?;
    let Some(execution) = state.backends.state.get_execution(&id).await? else {
        return Err(ApiError::not_found(format!(
            "execution {id} does not exist"
        )));
    };
    caller.check(
        Action::ExecutionRedrive,
        Resource::Named(&execution.handler),
    )?;
    {
        use cloudevents::AttributesReader;
        if execution.event.ty() == fx_core::workflow::conductor::STEP_EVENT_TYPE {
            return Err(ApiError::conflict(format!(
                "execution {id} is a step of workflow run {}: re-drive the run (POST /api/v1/runs/<run>/redrive) rather than the step",
                execution.event.source()
            )));
        }
    }
    match (again, execution.status) {
        (Again::Redrive, ExecutionStatus::Failed) => {}
        (Again::Redrive, status) => {
            return Err(ApiError::conflict(format!(
                "execution {id} is {status}: only a failed execution can be re-driven (re-run a succeeded one)"
            )));
        }
        (Again::Rerun, status) if status.is_terminal() => {}
        (Again::Rerun, status) => {
            return Err(ApiError::conflict(format!(
                "execution {id} is {status}: only a finished execution can be re-run"
            )));
        }
    }
    let Some(stored) = state.backends.registry.get(&execution.handler).await? else {
        return Err(ApiError::conflict(format!(
            "handler {} of execution {id} no longer exists: create it again to re-drive",
            execution.handler
        )));
    };
    let handler = stored.handler;
    let version = match state.backends.state.resolve_package(&handler.package).await {
        Ok(version) => version,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ApiError::conflict(format!(
                "package {} of handler {} does not exist: upload it or point the handler at another version",
                handler.package, handler.name
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let package = ResolvedPackage {
        name: version.name.clone(),
        version: version.version.clone(),
        digest: version.digest.clone(),
    };
    let invocation = Invocation {
        execution_id: id.clone(),
        limits: Limits::resolve(&version.manifest.limits, &handler.limits),
        grants: Grants::resolve(&version.manifest, &handler),
        handler,
        package: package.clone(),
        event: execution.event.clone(),
        attempt: execution.attempts + 1,
        dispatched_at: Utc::now(),
        not_before: None,
        attempt_base: execution.attempts,
        publish_output: true,
    };
    let message = Message::json(
        Some(fx_core::event::partition_key(&invocation.event)),
        &invocation,
    )?;
    // Claim the execution first: of two re-drives at once (a double click), one runs.
    let store = &state.backends.state;
    let (attempts, status) = (execution.attempts, execution.status);
    if !store
        .transition(&id, attempts, status, ExecutionStatus::Queued)
        .await?
    {
        return Err(ApiError::conflict(format!(
            "execution {id} changed meanwhile (another re-drive or re-run?): reload it"
        )));
    }
    let published = state
        .backends
        .bus
        .publish(&topics::invocations(&invocation.handler.pool), message)
        .await;
    if let Err(e) = published {
        // Nothing will run it: give it back its status, so that it can be re-driven later.
        if let Err(undo) = store
            .transition(&id, attempts, ExecutionStatus::Queued, status)
            .await
        {
            tracing::error!(execution_id = %id, error = %undo.chain(), "the execution stays queued although its re-drive was not published");
        }
        return Err(e.into());
    }
    tracing::info!(execution_id = %id, handler = %invocation.handler.name, attempt = invocation.attempt, ?again, "execution runs again");
    Ok(Redriven {
        execution_id: id,
        attempt: invocation.attempt,
        handler: invocation.handler.name,
        package,
    })
}
