//! Live updates of the UI as server-sent events (`text/event-stream`), read by `static/app.js`:
//!
//! - `GET /live/executions?handler=&status=&limit=` or `?ids=a,b`: the rendered execution rows
//!   (event `rows`, the HTML of the list) each time they change;
//! - `GET /live/executions/{id}?status=&attempts=`: event `changed` as soon as the execution is
//!   no longer at the status and attempt count the page shows; the page then reloads itself.
//!
//! The streams poll the state store every [`POLL_INTERVAL`]. The store is the one place that
//! sees every execution in both deployments: in `ferrisfx dev` the state router writes it in
//! this process, in the distributed deployment a gateway in another process does, so a
//! broadcast inside the management server would miss the distributed case. A poll of one page
//! of the list, or of a few executions by id, is cheap; the stream stops with the connection.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Extension;
use futures::{Stream, StreamExt};
use fx_core::execution::{ExecutionId, ExecutionQuery, ExecutionStatus};
use serde::Deserialize;

use super::rows::{ExecutionRow, LiveListParams};
use super::PageError;
use fx_core::identity::{Action, Resource};

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery};
use crate::{AppState, Shutdown};

/// How often a live stream reads the state store.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The most executions a stream by ids follows.
const MAX_IDS: usize = 20;

/// The rendered list of executions: a table of rows or the empty-state text.
#[derive(Template)]
#[template(path = "execution_list.html")]
pub struct ExecutionList {
    /// The rows.
    pub rows: Vec<ExecutionRow>,
    /// What to say when there are none.
    pub empty: String,
}

/// What a list stream follows.
enum Followed {
    /// The first page of a query.
    Query(ExecutionQuery),
    /// These executions (not yet created ones are left out).
    Ids(Vec<ExecutionId>),
}

/// `GET /live/executions`.
pub async fn executions(
    State(state): State<AppState>,
    caller: Caller,
    shutdown: Option<Extension<Shutdown>>,
    ApiQuery(params): ApiQuery<LiveListParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, PageError> {
    let followed = match params.ids.as_deref().filter(|s| !s.is_empty()) {
        Some(ids) => Followed::Ids(
            ids.split(',')
                .take(MAX_IDS)
                .map(ExecutionId::parse)
                .collect::<Result<_, _>>()?,
        ),
        None => {
            let list = crate::routes::executions::ExecutionParams {
                handler: params.handler.clone(),
                status: params.status.clone(),
                cursor: None,
                limit: Some(params.limit.unwrap_or(state.settings.page_size)),
                since: None,
                text: None,
                until: None,
            };
            let query = list.to_query()?;
            crate::routes::executions::check_listing(&caller, &query)?;
            Followed::Query(query)
        }
    };
    let empty = params
        .empty
        .unwrap_or_else(|| "No executions yet.".to_string());
    let start = (state, caller, followed, empty, None::<String>);
    let stream = futures::stream::unfold(
        start,
        |(state, caller, followed, empty, last)| async move {
            let mut last = last;
            loop {
                if last.is_some() {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                match render_list(&state, &caller, &followed, &empty).await {
                    Ok(html) if last.as_deref() != Some(html.as_str()) => {
                        let event = SseEvent::default().event("rows").data(html.clone());
                        return Some((Ok(event), (state, caller, followed, empty, Some(html))));
                    }
                    Ok(html) => last = Some(html),
                    Err(e) => {
                        tracing::warn!(error = %e.message, "live executions: reading the state store");
                        last = Some(last.unwrap_or_default());
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream.take_until(stopped(shutdown))).keep_alive(KeepAlive::default()))
}

/// Resolves when the server shuts down (never without a [`Shutdown`], as in router tests).
fn stopped(
    shutdown: Option<Extension<Shutdown>>,
) -> tokio_util::sync::WaitForCancellationFutureOwned {
    shutdown
        .map(|Extension(Shutdown(token))| token)
        .unwrap_or_default()
        .cancelled_owned()
}

async fn render_list(
    state: &AppState,
    caller: &Caller,
    followed: &Followed,
    empty: &str,
) -> Result<String, ApiError> {
    let rows = match followed {
        Followed::Query(query) => {
            let page = state.backends.state.list_executions(query).await?;
            page.items.iter().map(ExecutionRow::from).collect()
        }
        Followed::Ids(ids) => {
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                match state.backends.state.get_execution(id).await? {
                    Some(e) if caller.may(Action::ExecutionRead, &e.handler) => {
                        rows.push(ExecutionRow::from(&e));
                    }
                    _ => {}
                }
            }
            rows
        }
    };
    ExecutionList {
        rows,
        empty: empty.to_string(),
    }
    .render()
    .map_err(|e| ApiError::new(fx_core::ErrorKind::Internal, format!("rendering rows: {e}")))
}

/// Query parameters of `GET /live/executions/{id}`: what the page shows now.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveExecutionParams {
    /// The status shown.
    pub status: String,
    /// The attempts shown.
    #[serde(default)]
    pub attempts: u32,
}

/// `GET /live/executions/{id}`.
pub async fn execution(
    State(state): State<AppState>,
    caller: Caller,
    shutdown: Option<Extension<Shutdown>>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<LiveExecutionParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, PageError> {
    let id = ExecutionId::parse(&id)?;
    if let Some(e) = state.backends.state.get_execution(&id).await? {
        caller.check(Action::ExecutionRead, Resource::Named(&e.handler))?;
    }
    let shown = (ExecutionStatus::parse(&params.status)?, params.attempts);
    let stream = futures::stream::unfold(Some((state, id)), move |follow| async move {
        let (state, id) = follow?;
        loop {
            match state.backends.state.get_execution(&id).await {
                Ok(Some(e)) if (e.status, e.attempts) != shown => {
                    let event = SseEvent::default().event("changed").data(e.status.as_str());
                    // One event is all the page needs: it reloads and follows anew.
                    return Some((Ok(event), None));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(execution = %id, error = %e.chain(), "live execution: reading the state store");
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    });
    Ok(Sse::new(stream.take_until(stopped(shutdown))).keep_alive(KeepAlive::default()))
}
