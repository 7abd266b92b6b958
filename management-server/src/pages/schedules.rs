//! `/schedules`: the schedules the viewer may read, each with its next ticks, the last tick
//! fired and a link to the executions its ticks ran; for a viewer allowed `schedule:write`, a
//! form to create one (`POST /schedules`) and pause, resume and delete buttons. The checks and
//! the writing are the API's ([`crate::routes::schedules`]).

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use fx_core::identity::{Action, Resource};
use fx_core::schedule::{Schedule, FIRED_TYPE};
use serde::Deserialize;

use super::{show_time, HtmlTemplate, PageError};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::schedules::{create_checked, remove, set_paused_checked, visible};
use crate::AppState;

/// The schedules page.
#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// The schedules the viewer may read, by name.
    schedules: Vec<ScheduleView>,
    /// Whether the viewer may write some schedule (the form shows).
    may_write: bool,
    /// The event type of a tick, for the handler hint.
    fired_type: &'static str,
    /// The form as last submitted.
    form: ScheduleForm,
    /// What just happened.
    notice: Option<String>,
    /// Why the last change was refused.
    error: Option<String>,
}

/// A schedule as shown.
struct ScheduleView {
    name: String,
    /// `every 60 s`, `cron "0 3 * * *" (Europe/Paris)`, `once at …`.
    when: String,
    paused: bool,
    /// The next ticks, formatted.
    next: Vec<String>,
    /// The last tick fired, formatted, or `never`.
    last: String,
    missed: &'static str,
    /// The executions list filtered on the ticks' source.
    executions_href: String,
    writable: bool,
}

/// Query parameters of the schedules page.
#[derive(Debug, Default, Deserialize)]
pub struct SchedulesParams {
    /// What just happened (`created tick`, `paused tick`, …).
    #[serde(default)]
    pub done: Option<String>,
}

/// The form of `POST /schedules`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScheduleForm {
    #[serde(default)]
    pub name: String,
    /// `every`, `cron` or `at`.
    #[serde(default)]
    pub kind: String,
    /// Seconds (every), the expression (cron) or the time (at, RFC 3339).
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub timezone: String,
    /// JSON, may be empty.
    #[serde(default)]
    pub data: String,
    #[serde(default)]
    pub missed: String,
}

impl ScheduleForm {
    /// The schedule the form describes.
    fn schedule(&self) -> Result<Schedule, ApiError> {
        let mut body = serde_json::json!({ "name": self.name.trim() });
        let value = self.value.trim();
        match self.kind.as_str() {
            "cron" => body["cron"] = value.into(),
            "at" => body["at"] = value.into(),
            _ => {
                let seconds: u64 = value.parse().map_err(|_| {
                    ApiError::invalid(format!("every: {value:?} is not a number of seconds"))
                })?;
                body["every_seconds"] = seconds.into();
            }
        }
        if !self.timezone.trim().is_empty() {
            body["timezone"] = self.timezone.trim().into();
        }
        if !self.data.trim().is_empty() {
            body["data"] = serde_json::from_str(&self.data)
                .map_err(|e| ApiError::invalid(format!("data is not JSON: {e}")))?;
        }
        if !self.missed.is_empty() {
            body["missed"] = self.missed.as_str().into();
        }
        serde_json::from_value(body).map_err(|e| ApiError::invalid(e.to_string()))
    }
}

fn when(s: &Schedule) -> String {
    if let Some(cron) = &s.cron {
        format!("cron \"{cron}\" ({})", s.timezone)
    } else if let Some(every) = s.every_seconds {
        format!("every {every} s")
    } else if let Some(at) = s.at {
        format!("once at {}", show_time(&at))
    } else {
        "?".into()
    }
}

async fn page(
    state: &AppState,
    caller: &Caller,
    notice: Option<String>,
    refill: Option<(ScheduleForm, ApiError)>,
) -> Result<SchedulesPage, PageError> {
    let now = chrono::Utc::now();
    let schedules = visible(state, caller)
        .await?
        .into_iter()
        .map(|(s, last)| ScheduleView {
            when: when(&s),
            next: if s.paused {
                Vec::new()
            } else {
                s.upcoming(now, 3).iter().map(show_time).collect()
            },
            last: last.as_ref().map_or_else(|| "never".into(), show_time),
            missed: s.missed.as_str(),
            executions_href: format!(
                "/executions?{}",
                serde_urlencoded::to_string([("text", s.source())]).unwrap_or_default()
            ),
            writable: caller.may(Action::ScheduleWrite, &s.name),
            paused: s.paused,
            name: s.name,
        })
        .collect();
    let (form, error) = match refill {
        Some((form, error)) => (form, Some(error.message)),
        None => (
            ScheduleForm {
                kind: "every".into(),
                value: "60".into(),
                ..ScheduleForm::default()
            },
            None,
        ),
    };
    Ok(SchedulesPage {
        active: "schedules",
        schedules,
        may_write: caller.check(Action::ScheduleWrite, Resource::Any).is_ok(),
        fired_type: FIRED_TYPE,
        form,
        notice,
        error,
    })
}

/// `GET /schedules`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<SchedulesParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let notice = params.ok().and_then(|Query(p)| p.done);
    Ok(HtmlTemplate(page(&state, &caller, notice, None).await?))
}

fn back(done: String) -> Response {
    let query = serde_urlencoded::to_string([("done", done)]).unwrap_or_default();
    Redirect::to(&format!("/schedules?{query}")).into_response()
}

/// `POST /schedules`: creates a schedule as `POST /api/v1/schedules` does; refused, the page
/// again with the reason and the form as submitted.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Form(form): Form<ScheduleForm>,
) -> Result<Response, PageError> {
    let created = match form.schedule() {
        Ok(schedule) => create_checked(&state, &caller, &schedule).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(_) => Ok(back(format!("created schedule {}", form.name.trim()))),
        Err(error) => {
            let status = error.status;
            let page = page(&state, &caller, None, Some((form, error))).await?;
            Ok((status, HtmlTemplate(page)).into_response())
        }
    }
}

/// `POST /schedules/{name}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    match set_paused_checked(&state, &caller, &name, true).await {
        Ok(_) => back(format!("paused schedule {name}")),
        Err(e) => PageError(e).into_response(),
    }
}

/// `POST /schedules/{name}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    match set_paused_checked(&state, &caller, &name, false).await {
        Ok(_) => back(format!("resumed schedule {name}")),
        Err(e) => PageError(e).into_response(),
    }
}

/// `POST /schedules/{name}/delete` (the page asks for confirmation).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    match remove(&state, &caller, &name).await {
        Ok(()) => back(format!("deleted schedule {name}")),
        Err(e) => PageError(e).into_response(),
    }
}
