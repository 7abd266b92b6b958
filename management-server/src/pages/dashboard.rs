//! The overview's dashboard: executions of the last hour by status, and per handler the
//! count, error rate and p50 / p99 duration. Served as a fragment at `/dashboard` that the
//! overview reloads every few seconds (htmx), computed from the state store's execution list
//! (newest first, read until an hour back or [`MAX_EXECUTIONS`]).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use chrono::{Duration, Utc};
use fx_core::execution::{ExecutionQuery, ExecutionStatus, ExecutionSummary};

use super::{show_duration, HtmlTemplate, PageError};
use crate::AppState;

/// The most executions the dashboard reads (beyond, it says it is a sample).
pub const MAX_EXECUTIONS: usize = 5_000;
/// The page size it reads with.
const PAGE: u32 = 500;

/// The dashboard fragment.
#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct Dashboard {
    /// Executions counted.
    pub total: usize,
    /// Whether the hour held more than [`MAX_EXECUTIONS`].
    pub truncated: bool,
    /// Count by status: queued, running, succeeded, failed.
    pub by_status: Vec<(&'static str, usize)>,
    /// Failed among finished, in percent, or empty.
    pub error_rate: String,
    /// One row per handler.
    pub handlers: Vec<HandlerStats>,
}

/// One handler's figures over the hour.
pub struct HandlerStats {
    /// Handler name.
    pub name: String,
    /// Executions.
    pub total: usize,
    /// Failed ones.
    pub failed: usize,
    /// Failed among finished, in percent.
    pub error_rate: String,
    /// Median duration of finished ones.
    pub p50: String,
    /// 99th percentile duration.
    pub p99: String,
}

/// The `q`-quantile of sorted `values` (nearest rank).
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn rate(failed: usize, finished: usize) -> String {
    if finished == 0 {
        String::new()
    } else {
        format!("{:.1} %", failed as f64 * 100.0 / finished as f64)
    }
}

impl Dashboard {
    /// The figures of `executions` (those of the last hour).
    pub fn of(executions: &[ExecutionSummary], truncated: bool) -> Self {
        let statuses = [
            ExecutionStatus::Queued,
            ExecutionStatus::Running,
            ExecutionStatus::Succeeded,
            ExecutionStatus::Failed,
        ];
        let by_status = statuses
            .iter()
            .map(|s| {
                (
                    s.as_str(),
                    executions.iter().filter(|e| e.status == *s).count(),
                )
            })
            .collect();
        let mut per_handler: BTreeMap<&str, Vec<&ExecutionSummary>> = BTreeMap::new();
        for e in executions {
            per_handler.entry(e.handler.as_str()).or_default().push(e);
        }
        let finished =
            |list: &[&ExecutionSummary]| list.iter().filter(|e| e.status.is_terminal()).count();
        let failed_of = |list: &[&ExecutionSummary]| {
            list.iter()
                .filter(|e| e.status == ExecutionStatus::Failed)
                .count()
        };
        let all: Vec<&ExecutionSummary> = executions.iter().collect();
        let handlers = per_handler
            .into_iter()
            .map(|(name, list)| {
                let mut durations: Vec<u64> = list
                    .iter()
                    .filter(|e| e.status.is_terminal())
                    .filter_map(|e| e.duration_us)
                    .collect();
                durations.sort_unstable();
                let show = |q| {
                    quantile(&durations, q)
                        .map(show_duration)
                        .unwrap_or_default()
                };
                HandlerStats {
                    name: name.to_string(),
                    total: list.len(),
                    failed: failed_of(&list),
                    error_rate: rate(failed_of(&list), finished(&list)),
                    p50: show(0.5),
                    p99: show(0.99),
                }
            })
            .collect();
        Dashboard {
            total: executions.len(),
            truncated,
            by_status,
            error_rate: rate(failed_of(&all), finished(&all)),
            handlers,
        }
    }
}

/// Reads the executions of the last hour and computes the dashboard.
pub async fn compute(state: &AppState) -> Result<Dashboard, PageError> {
    let since = Utc::now() - Duration::hours(1);
    let mut query = ExecutionQuery {
        limit: Some(PAGE),
        ..ExecutionQuery::default()
    };
    let mut recent = Vec::new();
    loop {
        let page = state.backends.state.list_executions(&query).await?;
        let before = recent.len();
        recent.extend(page.items.into_iter().filter(|e| e.created_at >= since));
        let reached_older = recent.len() - before < PAGE as usize;
        if reached_older || recent.len() >= MAX_EXECUTIONS || page.next_cursor.is_none() {
            let truncated = recent.len() >= MAX_EXECUTIONS && !reached_older;
            recent.truncate(MAX_EXECUTIONS);
            return Ok(Dashboard::of(&recent, truncated));
        }
        query.cursor = page.next_cursor;
    }
}

/// `GET /dashboard`: the fragment, for the overview's periodic refresh.
pub async fn show(State(state): State<AppState>) -> Result<HtmlTemplate<Dashboard>, PageError> {
    Ok(HtmlTemplate(compute(&state).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&values, 0.5), Some(50));
        assert_eq!(quantile(&values, 0.99), Some(99));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
