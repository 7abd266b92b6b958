//! The workflows of the web UI:
//!
//! - `/workflows`: the workflows the viewer may read (steps, trigger, failure policy); for a
//!   viewer allowed `workflow:write`, a form taking a definition in YAML or JSON that creates
//!   one (or replaces the one of that name, when asked) and a delete button per workflow;
//! - `/workflows/{name}`: the definition and its graph, a form starting a run with an input,
//!   and its latest runs;
//! - `/runs`: runs newest first, filtered by workflow, status and time, paged by cursor;
//! - `/runs/{id}`: one run: its graph (reloaded every second while it is not finished, by a
//!   `<meta http-equiv="refresh">`: the pages' CSP allows no inline script), its steps with
//!   their executions, the outputs of the steps that succeeded, and the buttons that cancel
//!   or re-drive it.
//!
//! The checks and the writing are the API's ([`crate::routes::workflows`],
//! [`crate::routes::entries`]); the graphs are [`crate::graph`]'s.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use cloudevents::AttributesReader;
use fx_core::handler::Filter;
use fx_core::identity::{Action, Resource};
use fx_core::validate::validate_name;
use fx_core::workflow::ledger::RunQuery;
use fx_core::workflow::run::{Run, RunStatus, RunSummary, StepStatus};
use fx_core::workflow::{FailurePolicy, Trigger, Workflow};
use fx_core::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{show_duration, show_time, HtmlTemplate, PageError};
use crate::auth::audit::AuditResource;
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, JsonBody};
use crate::routes::entries::{create_checked, put, remove, visible};
use crate::routes::workflows::{
    act, check_listing, outputs, readable, start_run, RunAction, StartRun,
};
use crate::AppState;

/// How often the page of a run that is not finished reloads itself, in seconds.
pub const REFRESH_SECONDS: u32 = 1;
/// How many runs a workflow's page lists.
const LATEST_RUNS: u32 = 10;

/// The query of a page that may say what just happened.
#[derive(Debug, Default, Deserialize)]
pub struct DoneParams {
    /// What just happened (`created workflow diamond`, …).
    #[serde(default)]
    pub done: Option<String>,
}

fn notice(params: Result<Query<DoneParams>, QueryRejection>) -> Option<String> {
    params.ok().and_then(|Query(p)| p.done)
}

fn with_done(path: &str, done: &str) -> Response {
    let query = serde_urlencoded::to_string([("done", done)]).unwrap_or_default();
    Redirect::to(&format!("{path}?{query}")).into_response()
}

/// The badge class of a run or step status (the stylesheet colours the execution statuses).
fn badge(status: &str) -> &'static str {
    match status {
        "running" => "status-running",
        "succeeded" => "status-succeeded",
        "failed" => "status-failed",
        "cancelled" => "status-retrying",
        _ => "status-queued",
    }
}

/// A filter in words: `type = com.example.order and source starts with /shop`.
fn filter_text(filter: &Filter) -> String {
    let group = |filters: &[Filter], joint: &str, empty: &str| {
        if filters.is_empty() {
            return empty.to_string();
        }
        let parts: Vec<String> = filters.iter().map(filter_text).collect();
        if parts.len() == 1 {
            parts.into_iter().next().unwrap_or_default()
        } else {
            format!("({})", parts.join(joint))
        }
    };
    match filter {
        Filter::All(filters) => group(filters, " and ", "every event"),
        Filter::Any(filters) => group(filters, " or ", "no event"),
        Filter::Not(inner) => format!("not {}", filter_text(inner)),
        Filter::Exact(m) => format!("{} = {}", m.attribute, m.value),
        Filter::Prefix(m) => format!("{} starts with {}", m.attribute, m.value),
        Filter::Suffix(m) => format!("{} ends with {}", m.attribute, m.value),
    }
}

/// What starts a run of a workflow besides an API call, in words.
fn trigger_text(trigger: &Trigger) -> String {
    let mut parts = Vec::new();
    if let Some(filter) = &trigger.event {
        parts.push(format!("events where {}", filter_text(filter)));
    }
    if let Some(schedule) = &trigger.schedule {
        parts.push(format!("ticks of schedule {schedule}"));
    }
    if parts.is_empty() {
        "API calls and this page only".to_string()
    } else {
        parts.join("; ")
    }
}

fn policy_text(policy: FailurePolicy) -> &'static str {
    match policy {
        FailurePolicy::Stop => "stop",
        FailurePolicy::Continue => "continue",
    }
}

// ----- /workflows -----

/// The workflows page.
#[derive(Template)]
#[template(path = "workflows.html")]
struct WorkflowsPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// The workflows the viewer may read, by name.
    workflows: Vec<WorkflowView>,
    /// Whether the viewer may write some workflow (the form shows).
    may_write: bool,
    /// The form as last submitted.
    form: WorkflowForm,
    /// What just happened.
    notice: Option<String>,
    /// Why the last change was refused.
    error: Option<String>,
    /// The form field the error is about, if one.
    error_field: Option<&'static str>,
}

impl WorkflowsPage {
    /// The error, when it is about form field `field`.
    fn error_for(&self, field: &str) -> Option<&str> {
        match (&self.error, self.error_field) {
            (Some(error), Some(f)) if f == field => Some(error),
            _ => None,
        }
    }
}

/// A workflow as listed.
struct WorkflowView {
    name: String,
    description: String,
    /// How many steps it has.
    steps: usize,
    /// What starts a run, in words.
    trigger: String,
    /// `stop` or `continue`.
    on_failure: &'static str,
    /// The runs list filtered on it.
    runs_href: String,
    writable: bool,
}

/// The form of `POST /workflows`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WorkflowForm {
    /// The definition, YAML or JSON.
    #[serde(default)]
    pub definition: String,
    /// Present (any value) when the workflow of that name may be replaced.
    #[serde(default)]
    pub replace: Option<String>,
}

async fn workflows_page(
    state: &AppState,
    caller: &Caller,
    notice: Option<String>,
    refill: Option<(WorkflowForm, ApiError)>,
) -> Result<WorkflowsPage, PageError> {
    let mut listed = visible::<Workflow>(state, caller).await?;
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let workflows = listed
        .into_iter()
        .map(|w| WorkflowView {
            steps: w.steps.len(),
            trigger: trigger_text(&w.trigger),
            on_failure: policy_text(w.on_failure),
            runs_href: format!(
                "/runs?{}",
                serde_urlencoded::to_string([("workflow", &w.name)]).unwrap_or_default()
            ),
            writable: caller.may(Action::WorkflowWrite, &w.name),
            description: w.description,
            name: w.name,
        })
        .collect();
    let (form, error, error_field) = match refill {
        // Every refusal is about the definition: the form has no other text.
        Some((form, error)) => (form, Some(error.message), Some("definition")),
        None => (WorkflowForm::default(), None, None),
    };
    Ok(WorkflowsPage {
        active: "workflows",
        workflows,
        may_write: caller.check(Action::WorkflowWrite, Resource::Any).is_ok(),
        form,
        notice,
        error,
        error_field,
    })
}

/// `GET /workflows`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<DoneParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    Ok(HtmlTemplate(
        workflows_page(&state, &caller, notice(params), None).await?,
    ))
}

/// Stores `workflow` as the API does: created (409 when its name is taken), or with `replace`
/// created or replaced (`PUT /api/v1/workflows/{name}` without `If-Match`).
async fn save(
    state: &AppState,
    caller: &Caller,
    workflow: &Workflow,
    replace: bool,
) -> Result<(), ApiError> {
    if replace {
        put::<Workflow>(
            State(state.clone()),
            caller.clone(),
            ApiPath(workflow.name.clone()),
            HeaderMap::new(),
            JsonBody(workflow.clone()),
        )
        .await
        .map(|_| ())
    } else {
        create_checked(state, caller, workflow).await.map(|_| ())
    }
}

/// `POST /workflows`: creates (or with `replace` replaces) a workflow from its definition in
/// YAML or JSON; refused, the page again with the reason under the definition, as submitted.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Form(form): Form<WorkflowForm>,
) -> Result<Response, PageError> {
    let replace = form.replace.is_some();
    let (name, saved) = match Workflow::parse(&form.definition) {
        Ok(workflow) => (
            workflow.name.clone(),
            save(&state, &caller, &workflow, replace).await,
        ),
        Err(e) => (String::new(), Err(ApiError::from(e))),
    };
    let audited = validate_name("workflow name", &name)
        .is_ok()
        .then(|| AuditResource(format!("workflow {name}")));
    let mut response = match saved {
        Ok(()) => {
            let done = if replace {
                format!("saved workflow {name}")
            } else {
                format!("created workflow {name}")
            };
            with_done("/workflows", &done)
        }
        Err(mut error) => {
            if error.kind == ErrorKind::Conflict && !replace {
                error.message = format!(
                    "a workflow named {name:?} already exists: check \u{201c}replace\u{201d} to replace it"
                );
            }
            let status = error.status;
            let page = workflows_page(&state, &caller, None, Some((form, error))).await?;
            (status, HtmlTemplate(page)).into_response()
        }
    };
    if let Some(audited) = audited {
        response.extensions_mut().insert(audited);
    }
    Ok(response)
}

/// `POST /workflows/{name}/delete` (the page asks for confirmation). Its runs stay.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    match remove::<Workflow>(&state, &caller, &name).await {
        Ok(()) => with_done("/workflows", &format!("deleted workflow {name}")),
        Err(e) => PageError(e).into_response(),
    }
}

// ----- /workflows/{name} -----

/// A run as listed.
struct RunRow {
    id: String,
    workflow: String,
    status: &'static str,
    badge: &'static str,
    /// Steps by status: `3 succeeded, 1 running`.
    steps: String,
    started: String,
    finished: Option<String>,
}

impl From<&RunSummary> for RunRow {
    fn from(run: &RunSummary) -> Self {
        let status = run.status.as_str();
        RunRow {
            id: run.id.to_string(),
            workflow: run.workflow.clone(),
            status,
            badge: badge(status),
            steps: run
                .steps
                .iter()
                .map(|(status, n)| format!("{n} {status}"))
                .collect::<Vec<_>>()
                .join(", "),
            started: show_time(&run.created_at),
            finished: run.finished_at.as_ref().map(show_time),
        }
    }
}

/// The page of one workflow.
#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    /// The highlighted navigation entry.
    active: &'static str,
    name: String,
    description: String,
    /// The registry revision of the definition.
    revision: u64,
    steps: usize,
    trigger: String,
    on_failure: &'static str,
    /// The definition as pretty JSON.
    definition: String,
    /// Its graph, an SVG document.
    graph: String,
    /// Whether the viewer may start a run (the form shows).
    may_run: bool,
    /// The run form's input as last submitted.
    input: String,
    /// Why the last run was refused.
    error: Option<String>,
    /// Its latest runs, newest first.
    runs: Vec<RunRow>,
    /// The runs list filtered on it.
    runs_href: String,
    /// What just happened.
    notice: Option<String>,
}

/// What the run form holds before anything is typed.
const DEFAULT_INPUT: &str = "{}";

async fn workflow_page(
    state: &AppState,
    caller: &Caller,
    name: &str,
    notice: Option<String>,
    refill: Option<(String, ApiError)>,
) -> Result<WorkflowPage, PageError> {
    caller.check(Action::WorkflowRead, Resource::Named(name))?;
    let Some(stored) = state.backends.workflows.get(name).await? else {
        return Err(ApiError::not_found(format!("workflow {name:?} does not exist")).into());
    };
    let workflow = stored.entry;
    let runs = state
        .backends
        .runs
        .list_runs(&RunQuery {
            workflow: Some(name.to_string()),
            limit: Some(LATEST_RUNS),
            ..RunQuery::default()
        })
        .await?;
    let (input, error) = match refill {
        Some((input, error)) => (input, Some(error.message)),
        None => (DEFAULT_INPUT.to_string(), None),
    };
    Ok(WorkflowPage {
        active: "workflows",
        revision: stored.revision,
        steps: workflow.steps.len(),
        trigger: trigger_text(&workflow.trigger),
        on_failure: policy_text(workflow.on_failure),
        definition: serde_json::to_string_pretty(&workflow).unwrap_or_default(),
        graph: crate::graph::render_definition(&workflow),
        may_run: caller.may(Action::WorkflowRun, name),
        input,
        error,
        runs: runs.items.iter().map(RunRow::from).collect(),
        runs_href: format!(
            "/runs?{}",
            serde_urlencoded::to_string([("workflow", name)]).unwrap_or_default()
        ),
        notice,
        description: workflow.description,
        name: workflow.name,
    })
}

/// `GET /workflows/{name}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    params: Result<Query<DoneParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    Ok(HtmlTemplate(
        workflow_page(&state, &caller, &name, notice(params), None).await?,
    ))
}

/// The form of `POST /workflows/{name}/runs`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunForm {
    /// The run's input, JSON; blank for none (null).
    #[serde(default)]
    pub input: String,
}

/// `POST /workflows/{name}/runs`: starts a run with the input as `POST
/// /api/v1/workflows/{name}/runs` does, then shows it; refused, the workflow's page again with
/// the reason under the input.
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<RunForm>,
) -> Result<Response, PageError> {
    let input = match form.input.trim() {
        "" => Ok(Value::Null),
        text => serde_json::from_str::<Value>(text)
            .map_err(|e| ApiError::invalid(format!("the input is not JSON: {e}"))),
    };
    let started = match input {
        Ok(input) => start_run(&state, &caller, &name, StartRun { input, key: None }).await,
        Err(e) => Err(e),
    };
    let mut response = match started {
        Ok((id, _)) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(error) => {
            let status = error.status;
            let page =
                workflow_page(&state, &caller, &name, None, Some((form.input, error))).await?;
            (status, HtmlTemplate(page)).into_response()
        }
    };
    if validate_name("workflow name", &name).is_ok() {
        response
            .extensions_mut()
            .insert(AuditResource(format!("workflow {name}")));
    }
    Ok(response)
}

// ----- /runs -----

/// One option of a `<select>`.
struct Choice {
    /// The value (and label).
    value: String,
    /// Whether it is selected.
    selected: bool,
}

/// Query parameters of `/runs`: what the filter form sends (times as a `datetime-local`
/// field does, in UTC), and the cursor of the next page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunsParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A time filter: RFC 3339, or a date and time without zone taken as UTC.
fn parse_time(name: &'static str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc());
        }
    }
    Err(ApiError::invalid(format!(
        "{name} {text:?} is not a time: use RFC 3339 (2026-12-01T04:00:00Z) or YYYY-MM-DDTHH:MM in UTC"
    ))
    .on_field(name))
}

impl RunsParams {
    /// The store query these parameters ask for, `limit` runs a page.
    fn to_query(&self, limit: u32) -> Result<RunQuery, ApiError> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Ok(RunQuery {
            workflow: given(&self.workflow),
            status: given(&self.status)
                .map(|s| RunStatus::parse(&s).map_err(|e| ApiError::from(e).on_field("status")))
                .transpose()?,
            cursor: given(&self.cursor),
            limit: Some(limit),
            since: given(&self.since)
                .map(|t| parse_time("since", &t))
                .transpose()?,
            until: given(&self.until)
                .map(|t| parse_time("until", &t))
                .transpose()?,
        })
    }
}

/// The runs page.
#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// Workflow filter choices.
    workflows: Vec<Choice>,
    /// Status filter choices.
    statuses: Vec<Choice>,
    /// The `since` filter as submitted.
    since: String,
    /// The `until` filter as submitted.
    until: String,
    /// This page of runs.
    rows: Vec<RunRow>,
    /// Whether a filter is applied.
    filtered: bool,
    /// Whether this is the newest page.
    first_page: bool,
    /// Link to the next page, if any.
    next: Option<String>,
    /// What the list says when empty.
    empty: &'static str,
}

/// `GET /runs?workflow=&status=&since=&until=&cursor=`.
pub async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<RunsParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let Query(params) = params.map_err(ApiError::from)?;
    let query = params.to_query(state.settings.page_size)?;
    check_listing(&caller, &query)?;
    let page = state.backends.runs.list_runs(&query).await?;
    let selected = query.workflow.clone().unwrap_or_default();
    let mut names: Vec<String> = visible::<Workflow>(&state, &caller)
        .await?
        .into_iter()
        .map(|w| w.name)
        .collect();
    names.sort();
    if !selected.is_empty() && !names.contains(&selected) {
        // A deleted workflow's runs can still be listed.
        names.push(selected.clone());
    }
    let workflows = names
        .into_iter()
        .map(|value| Choice {
            selected: value == selected,
            value,
        })
        .collect();
    let statuses = RunStatus::ALL
        .into_iter()
        .map(|s| Choice {
            value: s.as_str().to_string(),
            selected: query.status == Some(s),
        })
        .collect();
    let next = page.next_cursor.as_ref().map(|cursor| {
        let next = RunsParams {
            cursor: Some(cursor.clone()),
            ..params.clone()
        };
        format!(
            "/runs?{}",
            serde_urlencoded::to_string(&next).unwrap_or_default()
        )
    });
    let filtered = query.workflow.is_some()
        || query.status.is_some()
        || query.since.is_some()
        || query.until.is_some();
    let empty = match (query.cursor.is_none(), filtered) {
        (true, false) => "No runs yet. Open a workflow and start one.",
        (true, true) => "No runs match these filters.",
        (false, _) => "No more runs.",
    };
    Ok(HtmlTemplate(RunsPage {
        active: "workflows",
        workflows,
        statuses,
        since: params.since.clone().unwrap_or_default(),
        until: params.until.clone().unwrap_or_default(),
        rows: page.items.iter().map(RunRow::from).collect(),
        filtered,
        first_page: query.cursor.is_none(),
        next,
        empty,
    }))
}

// ----- /runs/{id} -----

/// A step of a run as shown.
struct StepView {
    name: String,
    /// What it runs: `package workflow-step@latest` or `handler orders`.
    runs: String,
    /// The JSON pointer of a map step.
    map: Option<String>,
    status: &'static str,
    badge: &'static str,
    /// The run generation it last started in.
    generation: u32,
    started: Option<String>,
    finished: Option<String>,
    reason: Option<String>,
    /// Its executions: one, or one per item of a map.
    executions: Vec<String>,
}

/// The output of a step that succeeded.
struct OutputView {
    step: String,
    /// Pretty JSON.
    json: String,
}

/// The page of one run.
#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    /// The highlighted navigation entry.
    active: &'static str,
    id: String,
    workflow: String,
    /// The registry revision of the definition it runs.
    revision: u64,
    status: &'static str,
    badge: &'static str,
    /// 0, then one more per re-drive.
    generation: u32,
    /// The trigger event: type, source and id.
    trigger_type: String,
    trigger_source: String,
    trigger_id: String,
    /// The trigger's data (the input of an API call), pretty JSON.
    input: Option<String>,
    created_at: String,
    updated_at: String,
    finished_at: Option<String>,
    duration: Option<String>,
    /// The graph, an SVG document.
    graph: String,
    /// Whether the page reloads itself (the run is not finished).
    live: bool,
    /// Seconds between reloads.
    refresh: u32,
    steps: Vec<StepView>,
    outputs: Vec<OutputView>,
    /// Whether the Cancel button shows.
    may_cancel: bool,
    /// Whether the Re-drive button shows.
    may_redrive: bool,
    /// What just happened.
    notice: Option<String>,
}

fn step_views(run: &Run) -> Vec<StepView> {
    run.steps
        .iter()
        .map(|step| {
            let def = run.definition.step(&step.name);
            let runs = match def {
                Some(d) => match (&d.package, &d.handler) {
                    (Some(package), _) => format!("package {package}"),
                    (None, Some(handler)) => format!("handler {handler}"),
                    (None, None) => String::new(),
                },
                None => String::new(),
            };
            let status = step.status.as_str();
            StepView {
                name: step.name.clone(),
                runs,
                map: def.and_then(|d| d.map.clone()),
                status,
                badge: badge(status),
                generation: step.generation,
                started: step.started_at.as_ref().map(show_time),
                finished: step.finished_at.as_ref().map(show_time),
                reason: step.reason.clone(),
                executions: step.executions.iter().map(|e| e.to_string()).collect(),
            }
        })
        .collect()
}

/// `GET /runs/{id}`.
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<DoneParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let run = readable(&state, &caller, &id).await?;
    let produced = outputs(&state, &run).await?;
    // In the definition's order.
    let outputs = run
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Succeeded)
        .filter_map(|s| {
            produced.get(&s.name).map(|v| OutputView {
                step: s.name.clone(),
                json: serde_json::to_string_pretty(v).unwrap_or_default(),
            })
        })
        .collect();
    let may_run = caller.may(Action::WorkflowRun, &run.workflow);
    let status = run.status.as_str();
    Ok(HtmlTemplate(RunPage {
        active: "workflows",
        id: run.id.to_string(),
        workflow: run.workflow.clone(),
        revision: run.revision,
        status,
        badge: badge(status),
        generation: run.generation,
        trigger_type: run.trigger.ty().to_string(),
        trigger_source: run.trigger.source().to_string(),
        trigger_id: run.trigger.id().to_string(),
        input: fx_core::event::data_json(&run.trigger)
            .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default()),
        created_at: show_time(&run.created_at),
        updated_at: show_time(&run.updated_at),
        finished_at: run.finished_at.as_ref().map(show_time),
        duration: run.finished_at.map(|end| {
            show_duration(
                (end - run.created_at)
                    .num_microseconds()
                    .unwrap_or(0)
                    .max(0) as u64,
            )
        }),
        graph: crate::graph::render(&run),
        // Steps may still run after a cancel: the run is finished once none does.
        live: run.finished_at.is_none(),
        refresh: REFRESH_SECONDS,
        steps: step_views(&run),
        outputs,
        may_cancel: may_run && run.status == RunStatus::Running,
        may_redrive: may_run && matches!(run.status, RunStatus::Failed | RunStatus::Cancelled),
        notice: notice(params),
    }))
}

async fn change(state: &AppState, caller: &Caller, id: &str, action: RunAction) -> Response {
    match act(state, caller, id, action).await {
        Ok(run) => {
            let done = match action {
                RunAction::Cancel => "cancelled the run",
                RunAction::Redrive => "re-drove the run from the steps that did not succeed",
            };
            let mut response = with_done(&format!("/runs/{}", run.id), done);
            response.extensions_mut().insert(AuditResource(format!(
                "workflow {} run {}",
                run.workflow, run.id
            )));
            response
        }
        Err(e) => PageError(e).into_response(),
    }
}

/// `POST /runs/{id}/cancel`: no step starts any more; running ones finish.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    change(&state, &caller, &id, RunAction::Cancel).await
}

/// `POST /runs/{id}/redrive`: runs the steps that did not succeed again.
pub async fn redrive(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    change(&state, &caller, &id, RunAction::Redrive).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use fx_core::handler::AttributeMatch;

    #[test]
    fn triggers_read_as_words() {
        assert_eq!(
            trigger_text(&Trigger::default()),
            "API calls and this page only"
        );
        let m = |attribute: &str, value: &str| AttributeMatch {
            attribute: attribute.into(),
            value: value.into(),
        };
        let trigger = Trigger {
            event: Some(Filter::All(vec![
                Filter::type_is("com.example.order"),
                Filter::Not(Box::new(Filter::Prefix(m("source", "/test")))),
            ])),
            schedule: Some("nightly".into()),
        };
        assert_eq!(
            trigger_text(&trigger),
            "events where (type = com.example.order and not source starts with /test); ticks of schedule nightly"
        );
    }

    #[test]
    fn run_filters_read_form_times_as_utc() {
        let params = RunsParams {
            workflow: Some(" ".into()),
            status: Some("failed".into()),
            since: Some("2026-01-02T03:04".into()),
            until: Some("2026-01-02T05:00:00Z".into()),
            cursor: None,
        };
        let query = params.to_query(20).unwrap();
        assert_eq!(query.workflow, None);
        assert_eq!(query.status, Some(RunStatus::Failed));
        assert_eq!(query.limit, Some(20));
        assert_eq!(
            query.since.unwrap().to_rfc3339(),
            "2026-01-02T03:04:00+00:00"
        );
        assert_eq!(
            query.until.unwrap().to_rfc3339(),
            "2026-01-02T05:00:00+00:00"
        );
        let bad = RunsParams {
            status: Some("done".into()),
            ..RunsParams::default()
        };
        assert_eq!(bad.to_query(20).unwrap_err().field, Some("status"));
        let bad = RunsParams {
            since: Some("yesterday".into()),
            ..RunsParams::default()
        };
        assert_eq!(bad.to_query(20).unwrap_err().field, Some("since"));
    }

    mod over_the_router {
        use axum::body::Body;
        use axum::http::{header, Request, StatusCode};

        use crate::tests::{TestApp, TestResponse};

        async fn post(app: &TestApp, uri: &str, form: &[(&str, &str)]) -> TestResponse {
            app.call(
                Request::post(uri)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
                    .unwrap(),
            )
            .await
        }

        fn location(response: &TestResponse) -> String {
            response.assert_status(StatusCode::SEE_OTHER);
            response.headers[header::LOCATION]
                .to_str()
                .unwrap()
                .to_string()
        }

        const CYCLE: &str = "name: loop
steps:
  - name: a
    package: {name: hello}
    after: [{step: c}]
  - name: b
    package: {name: hello}
    after: [{step: a}]
  - name: c
    package: {name: hello}
    after: [{step: b}]
";

        const DIAMOND: &str = "name: diamond
description: fan out and join
steps:
  - name: a
    package: {name: hello}
  - name: b
    package: {name: hello}
    after: [{step: a}]
  - name: c
    package: {name: hello}
    after: [{step: a}]
  - name: d
    package: {name: hello}
    after: [{step: b}, {step: c}]
";

        #[tokio::test]
        async fn the_form_refuses_a_cycle_naming_it_under_the_definition() {
            let app = TestApp::new().await;
            let empty = app.get("/workflows").await;
            empty.assert_status(StatusCode::OK);
            assert!(
                empty.text().contains("No workflows yet"),
                "{}",
                empty.text()
            );
            assert!(
                empty.text().contains(
                    r#"<a href="/workflows" class="active" aria-current="page">Workflows</a>"#
                ),
                "the nav marks the page"
            );

            let refused = post(&app, "/workflows", &[("definition", CYCLE)]).await;
            refused.assert_status(StatusCode::BAD_REQUEST);
            let html = refused.text();
            assert!(html.contains(r#"id="workflow-definition-error""#), "{html}");
            // The cycle is named with every step on it, whichever it starts from.
            assert!(
                ["a → b → c → a", "b → c → a → b", "c → a → b → c"]
                    .iter()
                    .any(|cycle| html.contains(&format!("workflow loop has a cycle: {cycle}"))),
                "the cycle is named: {html}"
            );
            assert!(
                html.contains(
                    r#"aria-invalid="true" aria-describedby="workflow-definition-error""#
                ),
                "{html}"
            );
            assert!(
                html.contains("after: [{step: c}]"),
                "the definition is kept: {html}"
            );
            app.get("/api/v1/workflows/loop")
                .await
                .assert_status(StatusCode::NOT_FOUND);

            let not_yaml = post(&app, "/workflows", &[("definition", "{ not json")]).await;
            not_yaml.assert_status(StatusCode::BAD_REQUEST);
            assert!(not_yaml.text().contains("is not valid JSON"));
        }

        #[tokio::test]
        async fn workflows_are_created_replaced_run_cancelled_and_deleted_from_the_pages() {
            let app = TestApp::new().await;
            // A step's package must exist.
            let refused = post(&app, "/workflows", &[("definition", DIAMOND)]).await;
            refused.assert_status(StatusCode::BAD_REQUEST);
            assert!(refused.text().contains("does not exist: upload it first"));
            app.upload_ok("hello", "1.0.0").await;

            let done = location(&post(&app, "/workflows", &[("definition", DIAMOND)]).await);
            assert_eq!(done, "/workflows?done=created+workflow+diamond");
            let listed = app.get(&done).await.text();
            assert!(listed.contains("created workflow diamond"));
            assert!(
                listed.contains(r#"<tr data-workflow="diamond">"#),
                "{listed}"
            );
            assert!(listed.contains("fan out and join"));
            assert!(
                listed.contains(r#"<td class="steps num">4</td>"#),
                "{listed}"
            );

            // Taken without `replace`; replaced with it.
            let again = post(&app, "/workflows", &[("definition", DIAMOND)]).await;
            again.assert_status(StatusCode::CONFLICT);
            assert!(again.text().contains("already exists"));
            assert!(again.text().contains(r#"id="workflow-definition-error""#));
            let json = serde_json::json!({
                "name": "diamond",
                "description": "fan out and join, continuing",
                "on_failure": "continue",
                "steps": [
                    {"name": "a", "package": {"name": "hello"}},
                    {"name": "b", "package": {"name": "hello"}, "after": [{"step": "a"}]},
                    {"name": "c", "package": {"name": "hello"}, "after": [{"step": "a"}]},
                    {"name": "d", "package": {"name": "hello"}, "after": [{"step": "b"}, {"step": "c"}]},
                ],
            })
            .to_string();
            let done = location(
                &post(
                    &app,
                    "/workflows",
                    &[("definition", &json), ("replace", "on")],
                )
                .await,
            );
            assert_eq!(done, "/workflows?done=saved+workflow+diamond");
            let stored = app.get("/api/v1/workflows/diamond").await.json();
            assert_eq!(stored["workflow"]["on_failure"], "continue", "{stored}");

            // Its page: the definition, its graph, the run form.
            let page = app.get("/workflows/diamond").await;
            page.assert_status(StatusCode::OK);
            let html = page.text();
            assert!(
                html.contains(r#"<svg xmlns="http://www.w3.org/2000/svg""#),
                "{html}"
            );
            assert_eq!(html.matches(r#"<g class="step""#).count(), 4);
            assert!(
                html.contains("&#34;on_failure&#34;: &#34;continue&#34;"),
                "{html}"
            );
            assert!(html.contains("No runs yet"));
            app.get("/workflows/nope")
                .await
                .assert_status(StatusCode::NOT_FOUND);

            // A run with an input that is not JSON is refused under the input.
            let refused = post(&app, "/workflows/diamond/runs", &[("input", "{oops")]).await;
            refused.assert_status(StatusCode::BAD_REQUEST);
            assert!(refused.text().contains(r#"id="run-input-error""#));
            assert!(refused.text().contains("{oops"), "the input is kept");

            let started = location(
                &post(
                    &app,
                    "/workflows/diamond/runs",
                    &[("input", r#"{"sleep_ms": {"b": 10}}"#)],
                )
                .await,
            );
            let id = started.strip_prefix("/runs/").expect("the run's page");
            let html = app.get(&started).await.text();
            assert!(
                html.contains(r#"<meta http-equiv="refresh" content="1; url=/runs/"#),
                "{html}"
            );
            assert!(html.contains(r#"data-run-status="running""#), "{html}");
            assert!(
                html.contains(r#"data-step="a" data-status="running""#),
                "{html}"
            );
            assert!(
                html.contains(r#"<tr data-step="d" data-status="pending">"#),
                "{html}"
            );
            assert!(html.contains("com.ferrisfx.workflow.requested"));
            assert!(
                html.contains("&#34;sleep_ms&#34;"),
                "the input shows: {html}"
            );
            assert!(html.contains(r#"action="/runs/"#) && html.contains("Cancel run"));
            assert!(!html.contains("Re-drive"));

            // Listed, on the workflow's page and filtered.
            let listed = app.get("/workflows/diamond").await.text();
            assert!(
                listed.contains(&format!(r#"href="/runs/{id}""#)),
                "{listed}"
            );
            let runs = app.get("/runs?workflow=diamond&status=running").await;
            runs.assert_status(StatusCode::OK);
            assert!(
                runs.text().contains(&format!(r#"<tr data-run="{id}""#)),
                "{}",
                runs.text()
            );
            let none = app.get("/runs?workflow=diamond&status=failed").await.text();
            assert!(none.contains("No runs match these filters."));
            app.get("/runs?status=done")
                .await
                .assert_status(StatusCode::BAD_REQUEST);

            // Cancelled: no Cancel button any more, a Re-drive one.
            let done = location(&post(&app, &format!("/runs/{id}/cancel"), &[]).await);
            assert!(
                done.starts_with(&format!("/runs/{id}?done=cancelled")),
                "{done}"
            );
            let html = app.get(&done).await.text();
            assert!(html.contains("cancelled the run"));
            assert!(html.contains(r#"data-run-status="cancelled""#), "{html}");
            assert!(!html.contains("Cancel run"));
            assert!(html.contains("Re-drive"));
            app.get("/runs/not-an-id")
                .await
                .assert_status(StatusCode::BAD_REQUEST);

            // Deleted; its runs stay.
            let done = location(&post(&app, "/workflows/diamond/delete", &[]).await);
            assert!(app.get(&done).await.text().contains("No workflows yet"));
            app.get(&format!("/runs/{id}"))
                .await
                .assert_status(StatusCode::OK);
        }
    }
}
