//! The log router: consumes `fx.state` as a consumer group of its own and stores the log lines
//! in the operational sink, committing a batch only once the sink has stored them for good
//! ([`OperationalSink::store_logs`](fx_core::sink::OperationalSink::store_logs)).
//!
//! Kafka is the spool: while Elasticsearch is down the log router waits and its group's lag
//! grows, and a gateway killed meanwhile loses no line Kafka acknowledged (the next owner of
//! the partition reads it again). The state router, in its own group, goes on recording
//! execution state in the state store whatever the sink does; it also writes each line at once,
//! best effort, so that an execution shown finished shows its lines. Both writes carry the
//! line's identity (execution, attempt, seq), so the second changes nothing.

use fx_core::backends::Backends;
use fx_core::bus::{topics, Delivery};
use fx_core::execution::{LogLine, StateEvent};
use fx_core::Result;
use tokio_util::sync::CancellationToken;

use crate::retry::until_available;

/// How long storing a batch may take before the router says it is waiting.
const SLOW_STORE: std::time::Duration = std::time::Duration::from_secs(1);

/// Log lines taken from `fx.state` at once.
const BATCH: usize = 1024;

/// Stores log lines in the sink, at least once.
pub struct LogRouter {
    backends: Backends,
}

impl LogRouter {
    /// A log router over `backends`.
    pub fn new(backends: Backends) -> Self {
        LogRouter { backends }
    }

    /// Consumes `fx.state` as group `group` until `shutdown`.
    pub async fn run(&self, group: &str, shutdown: CancellationToken) -> Result<()> {
        crate::consume::batches(
            &self.backends.bus,
            topics::STATE,
            group,
            "log router",
            BATCH,
            &shutdown,
            self,
        )
        .await
    }
}

/// The log lines of `batch` (other state events, and messages that are not state events, are
/// the state router's).
fn log_lines(batch: &[Delivery]) -> Vec<LogLine> {
    batch
        .iter()
        .filter(|d| {
            d.message
                .header(topics::STATE_KIND_HEADER)
                .is_none_or(|kind| kind == "log")
        })
        .filter_map(|d| match d.message.decode_json::<StateEvent>() {
            Ok(StateEvent::Log(line)) => Some(line),
            _ => None,
        })
        .collect()
}

#[async_trait::async_trait]
impl crate::consume::BatchHandler for LogRouter {
    async fn handle(&self, batch: &[Delivery], shutdown: &CancellationToken) -> Result<()> {
        if !self.backends.routing.logs_to_sink() {
            return Ok(());
        }
        let lines = log_lines(batch);
        if lines.is_empty() {
            return Ok(());
        }
        let sink = &self.backends.sink;
        let store = until_available("storing log lines", shutdown, || sink.store_logs(&lines));
        tokio::pin!(store);
        let mut waited = false;
        loop {
            tokio::select! {
                // Waiting for the sink has no bound of its own: shutdown leaves the batch
                // uncommitted, for the next owner.
                _ = shutdown.cancelled() => {
                    return Err(fx_core::Error::unavailable(
                        "shutting down before the sink stored the log lines",
                    ))
                }
                stored = &mut store => {
                    stored?;
                    if waited {
                        tracing::info!(lines = lines.len(), "the sink stored the log lines it was waiting for; committing");
                    }
                    return Ok(());
                }
                _ = tokio::time::sleep(SLOW_STORE), if !waited => {
                    waited = true;
                    tracing::warn!(
                        lines = lines.len(),
                        after_s = SLOW_STORE.as_secs(),
                        "the sink has not stored these log lines yet; waiting, their offsets stay uncommitted"
                    );
                }
            }
        }
    }
}
