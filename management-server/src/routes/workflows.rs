//! `/api/v1/workflows`: workflows through the generic registry API ([`super::entries`]),
//! checked against the packages and handlers their steps run; their runs
//! (`POST /api/v1/workflows/{name}/runs` starts one with an input) and `/api/v1/runs`: list,
//! read (steps with their outputs), cancel, re-drive, and the graph as SVG.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fx_core::backends::Backends;
use fx_core::identity::{Action, Resource};
use fx_core::registry::Registry;
use fx_core::workflow::conductor::{output_value, Conductor};
use fx_core::workflow::ledger::RunQuery;
use fx_core::workflow::run::{Run, RunId, RunStatus, StepStatus};
use fx_core::workflow::Workflow;
use fx_core::ErrorKind;
use serde::Deserialize;
use serde_json::{json, Value};

use super::entries::ApiEntry;
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiQuery, JsonBody};
use crate::AppState;

#[async_trait::async_trait]
impl ApiEntry for Workflow {
    const READ: Action = Action::WorkflowRead;
    const WRITE: Action = Action::WorkflowWrite;

    fn registry(backends: &Backends) -> &Arc<dyn Registry<Self>> {
        &backends.workflows
    }

    fn extra(&self) -> Option<(&'static str, Value)> {
        Some(("layers", json!(self.layers())))
    }

    /// Every package a step names exists, every handler too; the writer may read those
    /// packages, use the pools and write those handlers (a workflow runs code as a handler
    /// does).
    async fn check(&self, state: &AppState, caller: &Caller) -> Result<(), ApiError> {
        check_steps(state, caller, self).await
    }
}

/// The checks of a workflow's steps against what exists (the API's and the web UI's).
pub async fn check_steps(
    state: &AppState,
    caller: &Caller,
    workflow: &Workflow,
) -> Result<(), ApiError> {
    for step in &workflow.steps {
        if let Some(package) = &step.package {
            caller
                .check(Action::PackageRead, Resource::Named(&package.name))
                .map_err(|e| e.on_field("steps"))?;
            match state.backends.state.resolve_package(package).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(ApiError::invalid(format!(
                        "step {}: package {package} does not exist: upload it first",
                        step.name
                    ))
                    .on_field("steps"))
                }
                Err(e) => return Err(e.into()),
            }
            let pool = step
                .pool
                .as_deref()
                .unwrap_or(fx_core::handler::DEFAULT_POOL);
            caller
                .check(Action::PoolUse, Resource::Named(pool))
                .map_err(|e| e.on_field("steps"))?;
        }
        if let Some(handler) = &step.handler {
            // The step runs the handler's function with its secrets and configuration on an
            // input the workflow chooses: as much as changing the handler.
            caller
                .check(Action::HandlerWrite, Resource::Named(handler))
                .map_err(|e| e.on_field("steps"))?;
            if state.backends.registry.get(handler).await?.is_none() {
                return Err(ApiError::invalid(format!(
                    "step {}: handler {handler} does not exist: create it first",
                    step.name
                ))
                .on_field("steps"));
            }
        }
    }
    Ok(())
}

/// The body of `POST /api/v1/workflows/{name}/runs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The run's input: the trigger event's data, `input` in every step's input.
    #[serde(default)]
    pub input: Value,
    /// An idempotency key: a second call with the same key answers the first run (200).
    #[serde(default)]
    pub key: Option<String>,
}

/// `POST /api/v1/workflows/{name}/runs`: starts a run with an input; 201 with its id (200
/// when `key` names a run already started).
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    JsonBody(body): JsonBody<StartRun>,
) -> Result<Response, ApiError> {
    let (id, created) = start_run(&state, &caller, &name, body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/runs/{id}");
    Ok((
        status,
        [(header::LOCATION, location.clone())],
        Json(json!({"run": id, "created": created, "url": location})),
    )
        .into_response())
}

/// Starts a run of workflow `name` once `caller` may (the API's and the web UI's).
pub async fn start_run(
    state: &AppState,
    caller: &Caller,
    name: &str,
    body: StartRun,
) -> Result<(RunId, bool), ApiError> {
    caller.check(Action::WorkflowRun, Resource::Named(name))?;
    let Some(stored) = state.backends.workflows.get(name).await? else {
        return Err(ApiError::not_found(format!(
            "workflow {name:?} does not exist"
        )));
    };
    let key = match body.key {
        Some(key) if key.is_empty() || key.len() > 200 => {
            return Err(ApiError::invalid("key: 1 to 200 characters").on_field("key"))
        }
        Some(key) => key,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let conductor = Conductor::new(state.backends.clone());
    let (id, created) = conductor
        .request(&stored.entry, stored.revision, body.input, &key)
        .await?;
    if created {
        tracing::info!(run = %id, workflow = %name, author = ?caller.author(), "workflow run requested");
    }
    Ok((id, created))
}

/// Query parameters of the run lists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// Only this workflow's runs.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Only this status: `running`, `succeeded`, `failed` or `cancelled`.
    #[serde(default)]
    pub status: Option<String>,
    /// Continue after this cursor.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size (1 to 500, 50 by default).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only runs started at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only runs started before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

impl RunParams {
    /// The store query these parameters ask for.
    pub fn to_query(&self) -> Result<RunQuery, ApiError> {
        Ok(RunQuery {
            workflow: self.workflow.clone().filter(|w| !w.is_empty()),
            status: match self.status.as_deref() {
                None | Some("") => None,
                Some(s) => {
                    Some(RunStatus::parse(s).map_err(|e| ApiError::from(e).on_field("status"))?)
                }
            },
            cursor: self.cursor.clone(),
            limit: self.limit,
            since: self.since,
            until: self.until,
        })
    }
}

/// `GET /api/v1/runs`: runs newest first; without `workflow`, `workflow:read` on `*`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<RunParams>,
) -> Result<Json<Value>, ApiError> {
    let query = params.to_query()?;
    check_listing(&caller, &query)?;
    let page = state.backends.runs.list_runs(&query).await?;
    Ok(Json(
        json!({"runs": page.items, "next_cursor": page.next_cursor}),
    ))
}

/// `GET /api/v1/workflows/{name}/runs`: the runs of one workflow.
pub async fn list_of(
    state: State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(mut params): ApiQuery<RunParams>,
) -> Result<Json<Value>, ApiError> {
    params.workflow = Some(name);
    list(state, caller, ApiQuery(params)).await
}

/// Whether `caller` may list the runs `query` asks for.
pub fn check_listing(caller: &Caller, query: &RunQuery) -> Result<(), ApiError> {
    match &query.workflow {
        Some(workflow) => caller.check(Action::WorkflowRead, Resource::Named(workflow)),
        None => caller.check(Action::WorkflowRead, Resource::All).map_err(|e| {
            ApiError::new(
                e.kind,
                format!(
                    "{}; to list the runs of the workflows you may read, filter by one (?workflow=)",
                    e.message
                ),
            )
        }),
    }
}

/// Run `id` once `caller` may read it.
pub async fn readable(state: &AppState, caller: &Caller, id: &str) -> Result<Run, ApiError> {
    let id = RunId::parse(id)?;
    let Some(run) = state.backends.runs.get_run(&id).await? else {
        return Err(ApiError::not_found(format!(
            "workflow run {id} does not exist"
        )));
    };
    caller.check(Action::WorkflowRead, Resource::Named(&run.workflow))?;
    Ok(run)
}

/// The outputs of the succeeded steps of `run`, by step (a map step's as a list).
pub async fn outputs(
    state: &AppState,
    run: &Run,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let mut outputs = serde_json::Map::new();
    for step in &run.steps {
        if step.status != StepStatus::Succeeded {
            continue;
        }
        let mapped = run
            .definition
            .step(&step.name)
            .is_some_and(|d| d.map.is_some());
        let mut values = Vec::with_capacity(step.executions.len());
        for id in &step.executions {
            if let Some(execution) = state.backends.state.get_execution(id).await? {
                values.push(output_value(&execution.output));
            }
        }
        let value = if mapped {
            Value::Array(values)
        } else {
            values.pop().unwrap_or(Value::Null)
        };
        outputs.insert(step.name.clone(), value);
    }
    Ok(outputs)
}

/// `GET /api/v1/runs/{id}`: the run (definition, trigger, steps) and its steps' outputs.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let run = readable(&state, &caller, &id).await?;
    let outputs = outputs(&state, &run).await?;
    Ok(Json(json!({"run": run, "outputs": outputs})))
}

/// `GET /api/v1/runs/{id}/graph.svg`: the run's graph, each step coloured by its status.
pub async fn graph(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let run = readable(&state, &caller, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::graph::render(&run),
    )
        .into_response())
}

/// What a user may do to a run.
#[derive(Debug, Clone, Copy)]
pub enum RunAction {
    /// Stop starting steps.
    Cancel,
    /// Run the steps that did not succeed again.
    Redrive,
}

/// Cancels or re-drives run `id` once `caller` may (the API's and the web UI's).
pub async fn act(
    state: &AppState,
    caller: &Caller,
    id: &str,
    action: RunAction,
) -> Result<Run, ApiError> {
    let run = readable(state, caller, id).await?;
    caller.check(Action::WorkflowRun, Resource::Named(&run.workflow))?;
    let conductor = Conductor::new(state.backends.clone());
    let run = match action {
        RunAction::Cancel => conductor.cancel(&run.id).await?,
        RunAction::Redrive => conductor.redrive(&run.id).await?,
    };
    tracing::info!(run = %run.id, workflow = %run.workflow, ?action, author = ?caller.author(), "workflow run changed");
    Ok(run)
}

/// `POST /api/v1/runs/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let run = act(&state, &caller, &id, RunAction::Cancel).await?;
    Ok(Json(json!({ "run": run })))
}

/// `POST /api/v1/runs/{id}/redrive`.
pub async fn redrive(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let run = act(&state, &caller, &id, RunAction::Redrive).await?;
    Ok(Json(json!({ "run": run })))
}
