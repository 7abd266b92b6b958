//! `/executions` (filtered, paged by cursor) and `/executions/{id}` (one execution with its
//! event, output and logs).

use askama::Template;
use axum::extract::{Path, State};
use cloudevents::event::Data;
use cloudevents::AttributesReader;
use fx_core::event::{data_json, Event};
use fx_core::execution::{AttemptRecord, ExecutionId, ExecutionStatus};
use fx_core::notify::{DeliveryStatus, Notification};

use super::rows::{live_query, ExecutionRow};
use super::{show_duration, show_size, show_time, HtmlTemplate, PageError};
use crate::auth::Caller;
use crate::error::ApiQuery;
use crate::routes::executions::{check_listing, execution_detail, Again, ExecutionParams};
use crate::AppState;

/// One option of a `<select>`.
struct Choice {
    /// The value (and label).
    value: String,
    /// Whether it is selected.
    selected: bool,
}

/// The executions page.
#[derive(Template)]
#[template(path = "executions.html")]
struct ExecutionsPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// Handler filter choices.
    handlers: Vec<Choice>,
    /// Status filter choices.
    statuses: Vec<Choice>,
    /// The `since` filter as submitted.
    since: String,
    /// The `until` filter as submitted.
    until: String,
    /// The text filter as submitted.
    text: String,
    /// This page of executions.
    rows: Vec<ExecutionRow>,
    /// Whether a filter is applied.
    filtered: bool,
    /// Whether this is the newest page.
    first_page: bool,
    /// Link to the next page, if any.
    next: Option<String>,
    /// The live stream of this list (the first page only).
    live: Option<String>,
    /// What the list says when empty.
    empty: String,
}

/// `GET /executions?handler=&status=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(mut params): ApiQuery<ExecutionParams>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    params.limit = Some(params.limit.unwrap_or(state.settings.page_size));
    let query = params.to_query()?;
    check_listing(&caller, &query)?;
    let page = state.backends.state.list_executions(&query).await?;
    let table = state.backends.registry.table().await?;
    let selected_handler = query.handler.clone().unwrap_or_default();
    let mut handlers: Vec<Choice> = table
        .handlers
        .iter()
        .map(|h| Choice {
            selected: h.handler.name == selected_handler,
            value: h.handler.name.clone(),
        })
        .collect();
    if !selected_handler.is_empty() && !handlers.iter().any(|c| c.selected) {
        // A deleted handler's executions can still be listed.
        handlers.push(Choice {
            value: selected_handler,
            selected: true,
        });
    }
    let statuses = ExecutionStatus::ALL
        .into_iter()
        .map(|s| Choice {
            value: s.as_str().to_string(),
            selected: query.status == Some(s),
        })
        .collect();
    let next = page.next_cursor.as_ref().map(|cursor| {
        let next = ExecutionParams {
            cursor: Some(cursor.clone()),
            ..params.clone()
        };
        format!(
            "/executions?{}",
            serde_urlencoded::to_string(&next).unwrap_or_default()
        )
    });
    let narrowed = query.since.is_some() || query.until.is_some() || query.text.is_some();
    let filtered = query.handler.is_some() || query.status.is_some() || narrowed;
    let empty = match (query.cursor.is_none(), filtered) {
        (true, false) => {
            "No executions yet. Send an event from the Send event page to run a handler."
                .to_string()
        }
        (true, true) => "No executions match these filters.".to_string(),
        (false, _) => "No more executions.".to_string(),
    };
    // The live stream follows handler and status; a list narrowed by time or text is a
    // snapshot (reload to refresh).
    let live = (query.cursor.is_none() && !narrowed).then(|| {
        let live = super::rows::LiveListParams {
            handler: query.handler.clone(),
            status: query.status.map(|s| s.as_str().to_string()),
            limit: query.limit,
            ids: None,
            empty: Some(empty.clone()),
        };
        format!("/live/executions?{}", live_query(&live))
    });
    Ok(HtmlTemplate(ExecutionsPage {
        active: "executions",
        live,
        empty,
        handlers,
        statuses,
        since: params.since.clone().unwrap_or_default(),
        until: params.until.clone().unwrap_or_default(),
        text: params.text.clone().unwrap_or_default(),
        rows: page.items.iter().map(ExecutionRow::from).collect(),
        filtered,
        first_page: query.cursor.is_none(),
        next,
    }))
}

/// An event as shown: its attributes and its data.
struct EventView {
    /// Attribute name and value, required ones first, then extensions.
    attributes: Vec<(String, String)>,
    /// The data: pretty JSON, text, or a note on binary data.
    data: Option<String>,
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        let mut attributes = vec![
            ("id".to_string(), event.id().to_string()),
            ("source".to_string(), event.source().to_string()),
            ("type".to_string(), event.ty().to_string()),
            ("specversion".to_string(), event.specversion().to_string()),
        ];
        let optional = [
            ("subject", event.subject().map(str::to_string)),
            ("time", event.time().map(|t| t.to_rfc3339())),
            (
                "datacontenttype",
                event.datacontenttype().map(str::to_string),
            ),
            ("dataschema", event.dataschema().map(|u| u.to_string())),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                attributes.push((name.to_string(), value));
            }
        }
        for (name, value) in event.iter_extensions() {
            attributes.push((name.to_string(), value.to_string()));
        }
        let data = match (data_json(event), event.data()) {
            (Some(json), _) => Some(serde_json::to_string_pretty(&json).unwrap_or_default()),
            (None, Some(Data::String(text))) => Some(text.clone()),
            (None, Some(Data::Binary(bytes))) => Some(match std::str::from_utf8(bytes) {
                Ok(text) => text.to_string(),
                Err(_) => format!("({} bytes of binary data)", bytes.len()),
            }),
            (None, _) => None,
        };
        EventView { attributes, data }
    }
}

/// A log line as shown.
struct LogView {
    /// Attempt number.
    attempt: u32,
    /// When it was written.
    at: String,
    /// Severity.
    level: &'static str,
    /// The text.
    message: String,
    /// Structured fields.
    fields: Vec<(String, String)>,
}

/// A finished attempt as shown, with what the executor measured.
struct AttemptView {
    /// Attempt number.
    attempt: u32,
    /// `succeeded`, `retrying` or `failed`.
    status: &'static str,
    /// When it ended.
    finished_at: String,
    /// Run time.
    duration: String,
    /// Dispatch to start.
    queue_wait: String,
    /// `memory`, `disk` or `compiled`.
    compile_cache: String,
    /// Peak linear memory.
    peak_memory: String,
    /// Fuel used, when metered.
    fuel_used: String,
    /// Which executor ran it.
    executor: String,
    /// Why it failed.
    failure: String,
}

impl From<&AttemptRecord> for AttemptView {
    fn from(r: &AttemptRecord) -> Self {
        let m = r.measurements.as_ref();
        let unknown = || "–".to_string();
        AttemptView {
            attempt: r.attempt,
            status: r.status.as_str(),
            finished_at: show_time(&r.finished_at),
            duration: show_duration(r.duration_us),
            queue_wait: m.map_or_else(unknown, |m| show_duration(m.queue_wait_us)),
            compile_cache: m
                .and_then(|m| m.compile_cache)
                .map_or_else(unknown, |c| c.as_str().to_string()),
            peak_memory: m.map_or_else(unknown, |m| show_size(m.peak_memory_bytes)),
            fuel_used: m
                .and_then(|m| m.fuel_used)
                .map_or_else(unknown, |f| f.to_string()),
            executor: m
                .map(|m| m.executor.clone())
                .filter(|e| !e.is_empty())
                .unwrap_or_else(unknown),
            failure: r.failure.as_ref().map_or_else(String::new, |f| {
                format!("{}: {}", f.kind.as_str().replace('_', " "), f.message)
            }),
        }
    }
}

/// A notification about the execution as shown, with its attempts.
struct NotificationView {
    /// The rule that sent it.
    rule: String,
    /// `failed`, `dead_lettered` or `succeeded`.
    outcome: &'static str,
    /// `pending`, `delivered` or `failed`.
    status: &'static str,
    /// The badge's colour: the execution status that reads alike.
    badge: &'static str,
    /// While pending: when the next attempt is due.
    next_at: Option<String>,
    /// Its attempts, oldest first.
    attempts: Vec<DeliveryView>,
}

/// One attempt to deliver a notification as shown.
struct DeliveryView {
    /// When it was made.
    at: String,
    /// The target's HTTP status, when it answered.
    status_code: Option<u16>,
    /// What went wrong.
    error: Option<String>,
    /// How long it took.
    duration: String,
}

impl From<&Notification> for NotificationView {
    fn from(n: &Notification) -> Self {
        NotificationView {
            rule: n.rule.clone(),
            outcome: n.outcome.as_str(),
            status: n.status.as_str(),
            badge: match n.status {
                DeliveryStatus::Pending => "status-retrying",
                DeliveryStatus::Delivered => "status-succeeded",
                DeliveryStatus::Failed => "status-failed",
            },
            next_at: (n.status == DeliveryStatus::Pending).then(|| show_time(&n.next_at)),
            attempts: n
                .attempts
                .iter()
                .map(|a| DeliveryView {
                    at: show_time(&a.at),
                    status_code: a.status_code,
                    error: a.error.clone(),
                    duration: match a.duration_ms {
                        0 => "under 1 ms".to_string(),
                        ms => show_duration(ms.saturating_mul(1_000)),
                    },
                })
                .collect(),
        }
    }
}

/// The page of one execution.
#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// Execution id.
    id: String,
    /// Handler name.
    handler: String,
    /// Status name.
    status: &'static str,
    /// `name@version (digest)` once resolved.
    package: Option<String>,
    /// Attempts started.
    attempts: u32,
    /// Creation time.
    created_at: String,
    /// Start of the latest attempt.
    started_at: Option<String>,
    /// When it reached a terminal status.
    finished_at: Option<String>,
    /// Run time of the latest attempt.
    duration: Option<String>,
    /// Kind and message of the last failure.
    failure: Option<(String, String)>,
    /// The id of the trace it is part of (from its event's `traceparent`), and the link to it
    /// when `telemetry.trace_url` is set.
    trace: Option<(String, Option<String>)>,
    /// The triggering event.
    event: EventView,
    /// Events the function returned or emitted.
    output: Vec<EventView>,
    /// Log lines, by attempt then position.
    logs: Vec<LogView>,
    /// Finished attempts, oldest first.
    attempt_rows: Vec<AttemptView>,
    /// The live stream that tells the page to reload, while the execution is not finished.
    live: Option<String>,
    /// The notifications sent about it, by rule.
    notifications: Vec<NotificationView>,
    /// Why the notifications could not be read, when they could not.
    notifications_error: Option<String>,
}

/// `GET /executions/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let detail = execution_detail(&state, &caller, &id).await?;
    let e = detail.execution;
    let live = (!e.status.is_terminal()).then(|| {
        format!(
            "/live/executions/{}?status={}&attempts={}",
            e.id,
            e.status.as_str(),
            e.attempts
        )
    });
    let failure = e.error.as_ref().map(|f| {
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        (kind.replace('_', " "), f.message.clone())
    });
    let (notifications, notifications_error) = notifications_of(&state, &e.id).await;
    Ok(HtmlTemplate(ExecutionPage {
        active: "executions",
        notifications,
        notifications_error,
        live,
        id: e.id.to_string(),
        handler: e.handler.clone(),
        status: e.status.as_str(),
        package: e
            .package
            .as_ref()
            .map(|p| format!("{}@{} ({})", p.name, p.version, p.digest.short())),
        attempts: e.attempts,
        created_at: show_time(&e.created_at),
        started_at: e.started_at.as_ref().map(show_time),
        finished_at: e.finished_at.as_ref().map(show_time),
        duration: e.duration_us.map(show_duration),
        failure,
        trace: fx_core::trace::TraceContext::of_event(&e.event).map(|context| {
            let id = context.trace_id().to_string();
            let link = state.telemetry.trace_link(&id);
            (id, link)
        }),
        event: EventView::from(&e.event),
        output: e.output.iter().map(EventView::from).collect(),
        attempt_rows: e.attempt_history.iter().map(AttemptView::from).collect(),
        logs: detail
            .logs
            .into_iter()
            .map(|l| LogView {
                attempt: l.attempt,
                at: l.at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                level: l.level.as_str(),
                message: l.message,
                fields: l.fields.into_iter().collect(),
            })
            .collect(),
    }))
}

/// The notifications sent about execution `id`; when the ledger cannot be read, none and a
/// note saying so (the rest of the page shows anyway).
async fn notifications_of(
    state: &AppState,
    id: &ExecutionId,
) -> (Vec<NotificationView>, Option<String>) {
    match state.backends.notifications.notifications_of(id).await {
        Ok(sent) => (sent.iter().map(NotificationView::from).collect(), None),
        Err(err) => {
            tracing::warn!(execution = %id, error = %err.chain(), "reading the notifications of an execution failed");
            (
                Vec::new(),
                Some(
                    "The notifications sent about this execution could not be read just now; reload to try again."
                        .to_string(),
                ),
            )
        }
    }
}

/// `POST /executions/{id}/redrive` (the button on a failed execution): re-drives it with the
/// handler as it is now, then shows it again (it updates live as the new attempt runs).
pub async fn redrive(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Redirect, PageError> {
    crate::routes::executions::redrive_execution(&state, &caller, &id, Again::Redrive)
        .await
        .map_err(PageError)?;
    Ok(axum::response::Redirect::to(&format!("/executions/{id}")))
}

/// `POST /executions/{id}/rerun` (the button on a succeeded execution): runs it again.
pub async fn rerun(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Redirect, PageError> {
    crate::routes::executions::redrive_execution(&state, &caller, &id, Again::Rerun)
        .await
        .map_err(PageError)?;
    Ok(axum::response::Redirect::to(&format!("/executions/{id}")))
}
