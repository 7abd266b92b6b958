//! Retention: executions (with their attempts and log lines) older than
//! `server.retention.executions_days` are deleted in the background, in bounded batches, so
//! that the state store and the log sink stop growing with the traffic.
//!
//! Only finished executions (`succeeded`, `failed`) go; their log lines are deleted first, so
//! that a crash between the two leaves an execution without lines (deleted on the next pass)
//! rather than lines nobody will ever delete. Several servers may run it at once: deletes are
//! idempotent.

use std::time::Duration;

use fx_core::backends::Backends;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How long executions are kept: the `[server.retention]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days a finished execution (and its attempts and log lines) is kept after it was
    /// created; 0 (the default) keeps them for ever. Elasticsearch ages its documents out by
    /// itself: give its indices a lifecycle policy.
    pub executions_days: u32,
    /// Seconds between two passes.
    pub interval_seconds: u64,
    /// Executions deleted per transaction; a pass repeats batches until nothing is left.
    pub batch: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            executions_days: 0,
            interval_seconds: 300,
            batch: 1000,
        }
    }
}

/// Deletes what retention lets go, every `interval_seconds`, until `shutdown`.
pub async fn run(backends: Backends, settings: RetentionSettings, shutdown: CancellationToken) {
    if settings.executions_days == 0 {
        return;
    }
    let mut every = tokio::time::interval(Duration::from_secs(settings.interval_seconds.max(1)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match pass(&backends, &settings, &shutdown).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                deleted,
                days = settings.executions_days,
                "expired executions deleted"
            ),
            Err(e) => {
                tracing::warn!(error = %e.chain(), "deleting expired executions failed; the next pass retries")
            }
        }
    }
}

/// One pass: batches until none is left; answers the executions deleted.
pub async fn pass(
    backends: &Backends,
    settings: &RetentionSettings,
    shutdown: &CancellationToken,
) -> fx_core::Result<u64> {
    let before = chrono::Utc::now() - chrono::Duration::days(i64::from(settings.executions_days));
    let batch = settings.batch.max(1);
    let mut deleted = 0;
    while !shutdown.is_cancelled() {
        let ids = backends.state.expired_executions(before, batch).await?;
        if ids.is_empty() {
            break;
        }
        let lines = backends.sink.delete_logs(&ids).await?;
        let executions = backends.state.delete_executions(&ids).await?;
        metrics::counter!("fx_retention_deleted_total", "what" => "executions")
            .increment(executions);
        metrics::counter!("fx_retention_deleted_total", "what" => "log_lines").increment(lines);
        deleted += executions;
        if ids.len() < batch as usize {
            break;
        }
        // Leave room for the traffic between batches.
        tokio::task::yield_now().await;
    }
    Ok(deleted)
}
