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
pub(crate) fn parse_time(name: &str, text: &str) -> Result<chrono::DateTime<Utc>, ApiError> {
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
    /// The package version that will run: the handler's reference resolved now, or, pinned,
    /// the one the execution recorded.
    pub package: ResolvedPackage,
    /// Whether it runs the package the execution recorded rather than the handler's current
    /// one (a pinned re-run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
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

/// The query of `POST /api/v1/executions/{id}/rerun`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunParams {
    /// Run the package digest the execution recorded, not the handler's current package.
    #[serde(default)]
    pub pin: Option<bool>,
}

/// The optional JSON body of `POST /api/v1/executions/{id}/rerun`: `{"pin": true}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    /// As [`RerunParams::pin`].
    #[serde(default)]
    pub pin: Option<bool>,
}

/// `POST /api/v1/executions/{id}/rerun`: runs a finished execution (succeeded or failed)
/// again, as [`redrive`] does; 409 while it is still queued, running or retrying. Pinned
/// (`{"pin": true}` or `?pin=true`) it runs exactly the package digest the execution recorded
/// instead of the handler's current package: 409 when that digest is no longer stored.
pub async fn rerun(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<RerunParams>,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Redriven>), ApiError> {
    let body = body?;
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<RerunBody>(&body)
            .map_err(|e| ApiError::invalid(format!("request body is not valid json: {e}")))?
            .pin
    };
    let pin = match (params.pin, from_body) {
        (Some(query), Some(body)) if query != body => {
            return Err(ApiError::invalid(format!(
                "pin is {query} in the query but {body} in the body: give it once"
            )));
        }
        (query, body) => query.or(body).unwrap_or(false),
    };
    let package = if pin { Which::Recorded } else { Which::Current };
    Ok((
        StatusCode::ACCEPTED,
        Json(run_again(&state, &caller, &id, Again::Rerun, package).await?),
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

/// Which package an execution runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The handler's package reference resolved now.
    Current,
    /// Exactly the package (name, version, digest) the execution recorded: a pinned re-run.
    Recorded,
}

/// Runs execution `id` again (see [`redrive`] and [`rerun`]) with the handler's current
/// package; shared by the API and the UI.
pub async fn redrive_execution(
    state: &AppState,
    caller: &Caller,
    id: &str,
    again: Again,
) -> Result<Redriven, ApiError> {
    run_again(state, caller, id, again, Which::Current).await
}

/// Runs execution `id` again with the handler as it is now and the package `which` says.
pub async fn run_again(
    state: &AppState,
    caller: &Caller,
    id: &str,
    again: Again,
    which: Which,
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
    let version = match which {
        Which::Current => match state.backends.state.resolve_package(&handler.package).await {
            Ok(version) => version,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(ApiError::conflict(format!(
                    "package {} of handler {} does not exist: upload it or point the handler at another version",
                    handler.package, handler.name
                )));
            }
            Err(e) => return Err(e.into()),
        },
        Which::Recorded => recorded_version(state, &execution).await?,
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
        // A re-drive continues the trace of the execution's event.
        trace: fx_core::trace::TraceContext::of_event(&execution.event),
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
    tracing::info!(execution_id = %id, handler = %invocation.handler.name, attempt = invocation.attempt, ?again, pinned = (which == Which::Recorded), "execution runs again");
    Ok(Redriven {
        execution_id: id,
        attempt: invocation.attempt,
        handler: invocation.handler.name,
        package,
        pinned: which == Which::Recorded,
    })
}

/// The package version execution `execution` recorded, with its manifest, if that exact
/// digest is still stored: 409 otherwise (a pinned re-run cannot run anything else).
async fn recorded_version(
    state: &AppState,
    execution: &Execution,
) -> Result<fx_core::package::PackageVersion, ApiError> {
    let id = &execution.id;
    let Some(recorded) = &execution.package else {
        return Err(ApiError::conflict(format!(
            "execution {id} never resolved a package (it failed before running): there is no package to pin; re-run it without pin"
        )));
    };
    let gone = || {
        ApiError::conflict(format!(
            "package {}@{} (sha256 {}) that execution {id} ran is no longer stored: re-run it without pin to run the handler's current package",
            recorded.name, recorded.version, recorded.digest
        ))
    };
    let version = state
        .backends
        .state
        .get_package_version(&recorded.name, &recorded.version)
        .await?
        .filter(|version| version.digest == recorded.digest)
        .ok_or_else(gone)?;
    if !state.backends.packages.exists(&recorded.digest).await? {
        return Err(gone());
    }
    Ok(version)
}
