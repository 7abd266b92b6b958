//! `/api/v1/schedules`: create, read, change, pause, resume and delete schedules, with
//! revisions for check-and-set (`If-Match: <revision>`), each shown with its next ticks and the
//! last tick fired.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use fx_core::identity::{Action, Resource};
use fx_core::registry::Expect;
use fx_core::schedule::Schedule;
use fx_core::ErrorKind;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, JsonBody};
use crate::AppState;

/// Upcoming ticks shown with each schedule.
const NEXT_SHOWN: usize = 5;

/// `GET /api/v1/schedules`: every schedule the caller may read, with its revision, next ticks
/// and last tick, and the invalid entries among them.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let table = state.backends.schedules.table().await?;
    let last = last_ticks(&state).await;
    let now = Utc::now();
    let schedules: Vec<Value> = table
        .entries
        .iter()
        .filter(|s| caller.may(Action::ScheduleRead, &s.entry.name))
        .map(|s| view(&s.entry, s.revision, last.get(&s.entry.name).copied(), now))
        .collect();
    let invalid: Vec<_> = table
        .invalid
        .iter()
        .filter(|i| caller.may(Action::ScheduleRead, &i.name))
        .collect();
    Ok(Json(json!({
        "revision": table.revision,
        "schedules": schedules,
        "invalid": invalid,
    })))
}

/// The schedules `caller` may read, by name, with their last tick (for the web UI).
pub async fn visible(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<(Schedule, Option<DateTime<Utc>>)>, ApiError> {
    let table = state.backends.schedules.table().await?;
    let last = last_ticks(state).await;
    Ok(table
        .entries
        .into_iter()
        .filter(|s| caller.may(Action::ScheduleRead, &s.entry.name))
        .map(|s| {
            let tick = last.get(&s.entry.name).copied();
            (s.entry, tick)
        })
        .collect())
}

/// `POST /api/v1/schedules`: creates a schedule; 409 if the name exists.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(schedule): JsonBody<Schedule>,
) -> Result<Response, ApiError> {
    let revision = create_checked(&state, &caller, &schedule).await?;
    Ok(stored(StatusCode::CREATED, &schedule, revision, None))
}

/// Creates `schedule` once `caller` may (the API's and the web UI's checks); its revision.
pub async fn create_checked(
    state: &AppState,
    caller: &Caller,
    schedule: &Schedule,
) -> Result<u64, ApiError> {
    check(caller, schedule)?;
    if state
        .backends
        .schedules
        .get(&schedule.name)
        .await?
        .is_none()
    {
        // Before it is stored, so that no scheduler fires a tick from before its creation.
        skip_ticks_until_now(state, schedule).await;
    }
    let revision = state
        .backends
        .schedules
        .put(schedule, Expect::Absent)
        .await?;
    tracing::info!(schedule = %schedule.name, revision, "schedule created");
    Ok(revision)
}

/// `GET /api/v1/schedules/{name}`; the revision is also the `ETag`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let Some(found) = state.backends.schedules.get(&name).await? else {
        return Err(no_such_schedule(&name));
    };
    let last = last_ticks(&state).await.get(&name).copied();
    Ok(stored(StatusCode::OK, &found.entry, found.revision, last))
}

/// `PUT /api/v1/schedules/{name}`: creates or replaces a schedule; with `If-Match:
/// <revision>` only if it is still at that revision (409 otherwise).
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    JsonBody(schedule): JsonBody<Schedule>,
) -> Result<Response, ApiError> {
    if schedule.name != name {
        return Err(ApiError::invalid(format!(
            "schedule name in the path ({name:?}) differs from the one in the body ({:?})",
            schedule.name
        )));
    }
    let expect = expectation(&headers)?;
    check(&caller, &schedule)?;
    let before = state.backends.schedules.get(&name).await?;
    if before.is_none() {
        skip_ticks_until_now(&state, &schedule).await;
    }
    let revision = write(&state, &schedule, expect).await?;
    if before.is_some_and(|b| b.entry.paused) && !schedule.paused {
        skip_ticks_until_now(&state, &schedule).await;
    }
    tracing::info!(schedule = %name, revision, "schedule written");
    Ok(stored(StatusCode::OK, &schedule, revision, None))
}

/// `POST /api/v1/schedules/{name}/pause`: the schedule fires nothing until resumed.
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    set_paused(state, caller, name, true).await
}

/// `POST /api/v1/schedules/{name}/resume`: the schedule fires again from its next tick; what
/// it missed while paused is not caught up.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    set_paused(state, caller, name, false).await
}

/// `DELETE /api/v1/schedules/{name}`, with an optional `If-Match: <revision>`. The ticks it
/// fired are forgotten, so a schedule created again under the name starts afresh.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let expect = expectation(&headers)?;
    remove_expecting(&state, &caller, &name, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes schedule `name` once `caller` may (for the web UI).
pub async fn remove(state: &AppState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    remove_expecting(state, caller, name, Expect::Any).await
}

async fn remove_expecting(
    state: &AppState,
    caller: &Caller,
    name: &str,
    expect: Expect,
) -> Result<(), ApiError> {
    caller.check(Action::ScheduleWrite, Resource::Named(name))?;
    state
        .backends
        .schedules
        .delete(name, expect)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => no_such_schedule(name),
            _ => explain_revision(e, name),
        })?;
    if let Err(e) = state.backends.ticks.forget_ticks(name).await {
        tracing::warn!(schedule = %name, error = %e.chain(), "forgetting the ticks of a deleted schedule failed; a schedule created again under its name may skip its first ticks");
    }
    tracing::info!(schedule = %name, "schedule deleted");
    Ok(())
}

async fn set_paused(
    state: AppState,
    caller: Caller,
    name: String,
    paused: bool,
) -> Result<Response, ApiError> {
    let (schedule, revision) = set_paused_checked(&state, &caller, &name, paused).await?;
    let last = last_ticks(&state).await.get(&name).copied();
    Ok(stored(StatusCode::OK, &schedule, revision, last))
}

/// Pauses or resumes schedule `name` once `caller` may; the schedule and its revision.
pub async fn set_paused_checked(
    state: &AppState,
    caller: &Caller,
    name: &str,
    paused: bool,
) -> Result<(Schedule, u64), ApiError> {
    caller.check(Action::ScheduleWrite, Resource::Named(name))?;
    let Some(found) = state.backends.schedules.get(name).await? else {
        return Err(no_such_schedule(name));
    };
    let mut schedule = found.entry;
    let was_paused = schedule.paused;
    schedule.paused = paused;
    let revision = if was_paused == paused {
        found.revision
    } else {
        write(state, &schedule, Expect::Revision(found.revision)).await?
    };
    if was_paused && !paused {
        skip_ticks_until_now(state, &schedule).await;
    }
    tracing::info!(schedule = %name, paused, revision, "schedule paused or resumed");
    Ok((schedule, revision))
}

/// Records the schedule's ticks until now as fired, so that no scheduler fires them: for a
/// schedule just created (whose ticks before its creation are not owed) or resumed (whose
/// ticks missed while paused are not caught up).
async fn skip_ticks_until_now(state: &AppState, schedule: &Schedule) {
    let Some(latest) = schedule.latest_at_or_before(Utc::now()) else {
        return;
    };
    if let Err(e) = state
        .backends
        .ticks
        .claim_tick(&schedule.name, latest)
        .await
    {
        tracing::warn!(schedule = %schedule.name, error = %e.chain(), "recording the ticks before now as fired failed; the schedulers may fire the latest of them");
    }
}

async fn write(state: &AppState, schedule: &Schedule, expect: Expect) -> Result<u64, ApiError> {
    state
        .backends
        .schedules
        .put(schedule, expect)
        .await
        .map_err(|e| explain_revision(e, &schedule.name))
}

/// Validates a schedule and checks that `caller` may write it. A one-off schedule must be in
/// the future: a time already past would never fire.
fn check(caller: &Caller, schedule: &Schedule) -> Result<(), ApiError> {
    schedule.validate()?;
    caller.check(Action::ScheduleWrite, Resource::Named(&schedule.name))?;
    if let Some(at) = schedule.at {
        if at <= Utc::now() {
            return Err(ApiError::invalid(format!(
                "schedule {}: at {at} is in the past; a one-off schedule fires at a future time",
                schedule.name
            ))
            .on_field("at"));
        }
    }
    Ok(())
}

/// The last tick of every schedule; empty (logged) when the state store cannot say.
async fn last_ticks(state: &AppState) -> HashMap<String, DateTime<Utc>> {
    state.backends.ticks.last_ticks().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e.chain(), "reading the schedules' last ticks failed");
        HashMap::new()
    })
}

/// A schedule as the API shows it.
fn view(
    schedule: &Schedule,
    revision: u64,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Value {
    let next = if schedule.paused {
        Vec::new()
    } else {
        schedule.upcoming(now, NEXT_SHOWN)
    };
    json!({
        "schedule": schedule,
        "revision": revision,
        "next": next,
        "last_tick": last,
    })
}

fn stored(
    status: StatusCode,
    schedule: &Schedule,
    revision: u64,
    last: Option<DateTime<Utc>>,
) -> Response {
    let body = view(schedule, revision, last, Utc::now());
    let mut response = (status, Json(body)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// The write expectation from `If-Match`.
fn expectation(headers: &HeaderMap) -> Result<Expect, ApiError> {
    super::handlers::if_match(headers, "schedule")
}

fn explain_revision(err: fx_core::Error, name: &str) -> ApiError {
    match err.kind() {
        ErrorKind::Conflict => ApiError::conflict(format!(
            "schedule {name:?} changed since the revision in If-Match: reload it and retry ({})",
            err.chain()
        )),
        _ => err.into(),
    }
}

fn no_such_schedule(name: &str) -> ApiError {
    ApiError::not_found(format!("schedule {name:?} does not exist"))
}
