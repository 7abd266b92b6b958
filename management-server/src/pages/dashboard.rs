//! The overview's dashboard: events per second, executions of the last hour by status, per
//! handler the count, error rate and p50 / p99 duration, and per executor pool its load and
//! health. Served as a fragment at `/dashboard` that the
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
    /// Distinct events that ran a handler, per second, over the last minute.
    pub events_per_second: String,
    /// The same over the hour.
    pub events_per_second_hour: String,
    /// One row per executor pool.
    pub pools: Vec<PoolStats>,
}

/// How long an execution may wait queued before its pool counts as backed up.
pub const BACKLOG_AFTER: Duration = Duration::seconds(30);

/// One executor pool: its handlers' executions now, and whether executors keep up.
pub struct PoolStats {
    /// Pool name.
    pub name: String,
    /// Handlers that run in it.
    pub handlers: usize,
    /// Executions running now.
    pub running: usize,
    /// Executions waiting (queued, or retrying after a backoff).
    pub waiting: usize,
    /// Age of the oldest queued execution, or empty.
    pub oldest_queued: String,
    /// `ok`, `backlog` (an execution queued longer than [`BACKLOG_AFTER`]: no executor of the
    /// pool is consuming, or they are saturated) or `idle` (nothing in the last hour).
    pub health: &'static str,
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
        let statuses = ExecutionStatus::ALL;
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
        let now = Utc::now();
        let events_since = |since: chrono::DateTime<Utc>| {
            executions
                .iter()
                .filter(|e| e.created_at >= since)
                .map(|e| (e.event_source.as_str(), e.event_id.as_str()))
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        let per_second = |events: usize, seconds: f64| format!("{:.2}", events as f64 / seconds);
        Dashboard {
            total: executions.len(),
            truncated,
            by_status,
            error_rate: rate(failed_of(&all), finished(&all)),
            handlers,
            events_per_second: per_second(events_since(now - Duration::minutes(1)), 60.0),
            events_per_second_hour: per_second(events_since(now - Duration::hours(1)), 3600.0),
            pools: Vec::new(),
        }
    }

    /// Adds the pools of `table`'s handlers, from the same executions.
    pub fn with_pools(
        mut self,
        executions: &[ExecutionSummary],
        table: &fx_core::registry::HandlerTable,
    ) -> Self {
        let now = Utc::now();
        let mut pools: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for stored in &table.handlers {
            pools
                .entry(stored.handler.pool.as_str())
                .or_default()
                .push(stored.handler.name.as_str());
        }
        self.pools = pools
            .into_iter()
            .map(|(pool, handlers)| {
                let mine: Vec<&ExecutionSummary> = executions
                    .iter()
                    .filter(|e| handlers.contains(&e.handler.as_str()))
                    .collect();
                let count = |status| mine.iter().filter(|e| e.status == status).count();
                let oldest = mine
                    .iter()
                    .filter(|e| e.status == ExecutionStatus::Queued)
                    .map(|e| e.created_at)
                    .min();
                let health = match oldest {
                    _ if mine.is_empty() => "idle",
                    Some(at) if now - at > BACKLOG_AFTER => "backlog",
                    _ => "ok",
                };
                PoolStats {
                    name: pool.to_string(),
                    handlers: handlers.len(),
                    running: count(ExecutionStatus::Running),
                    waiting: count(ExecutionStatus::Queued) + count(ExecutionStatus::Retrying),
                    oldest_queued: oldest
                        .map(|at| format!("{} s", (now - at).num_seconds().max(0)))
                        .unwrap_or_default(),
                    health,
                }
            })
            .collect();
        self
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
            let table = state.backends.registry.table().await?;
            return Ok(Dashboard::of(&recent, truncated).with_pools(&recent, &table));
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

    fn summary(
        handler: &str,
        event: &str,
        status: ExecutionStatus,
        age_s: i64,
    ) -> ExecutionSummary {
        ExecutionSummary {
            id: fx_core::execution::ExecutionId::derive("/t", event, handler),
            handler: handler.into(),
            status,
            event_id: event.into(),
            event_source: "/t".into(),
            event_type: "t".into(),
            attempts: 1,
            created_at: Utc::now() - Duration::seconds(age_s),
            duration_us: None,
        }
    }

    #[test]
    fn events_per_second_count_distinct_events_and_pools_show_a_backlog() {
        use fx_core::registry::HandlerTable;
        use fx_core::testsupport::HandlerBuilder;
        let handler = |name: &str, pool: &str| {
            HandlerBuilder::new(name)
                .event_type("t")
                .package("p")
                .pool(pool)
                .stored(1)
        };
        let table = HandlerTable {
            handlers: vec![
                handler("a", "fast"),
                handler("b", "slow"),
                handler("c", "spare"),
            ],
            ..HandlerTable::default()
        };
        let executions = vec![
            // One event ran two handlers: it counts once.
            summary("a", "e1", ExecutionStatus::Succeeded, 10),
            summary("b", "e1", ExecutionStatus::Running, 10),
            summary("a", "e2", ExecutionStatus::Queued, 5),
            summary("b", "e3", ExecutionStatus::Queued, 120),
            summary("b", "e4", ExecutionStatus::Retrying, 600),
        ];
        let d = Dashboard::of(&executions, false).with_pools(&executions, &table);
        assert_eq!(d.events_per_second, format!("{:.2}", 2.0 / 60.0));
        assert_eq!(d.events_per_second_hour, format!("{:.2}", 4.0 / 3600.0));
        let pools: Vec<(&str, usize, usize, &str)> = d
            .pools
            .iter()
            .map(|p| (p.name.as_str(), p.running, p.waiting, p.health))
            .collect();
        assert_eq!(
            pools,
            [
                ("fast", 0, 1, "ok"),
                ("slow", 1, 2, "backlog"),
                ("spare", 0, 0, "idle")
            ]
        );
        assert!(d.by_status.contains(&("retrying", 1)));
    }
}
