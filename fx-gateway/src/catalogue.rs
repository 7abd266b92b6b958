//! The event catalogue's side in the gateway: the dispatcher counts every event it handles in
//! an [`Observer`] (in memory), and this module writes what was counted to the state store
//! every `flush_interval_ms` and once more when the dispatcher stops, merging with what other
//! gateways wrote ([`fx_core::catalogue`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fx_core::backends::Backends;
use fx_core::catalogue::observer::Observer;
use fx_core::catalogue::CatalogueLimits;
use fx_core::telemetry;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The event catalogue the dispatchers keep (docs/catalogue.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogueSettings {
    /// Whether the dispatchers keep the event catalogue.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often a gateway writes what it counted to the state store, in milliseconds (and
    /// once more at shutdown); between two writes it holds at most `max_entries` keys.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// The most (source, type) entries the catalogue keeps; events of further keys are counted
    /// in `fx_catalogue_dropped_events_total` and logged, not catalogued.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// An entry not seen for this many days is forgotten (which makes room for new keys).
    #[serde(default = "default_forget_after_days")]
    pub forget_after_days: u32,
}

fn yes() -> bool {
    true
}
fn default_flush_interval_ms() -> u64 {
    5_000
}
fn default_max_entries() -> u64 {
    10_000
}
fn default_forget_after_days() -> u32 {
    30
}

impl Default for CatalogueSettings {
    fn default() -> Self {
        CatalogueSettings {
            enabled: true,
            flush_interval_ms: default_flush_interval_ms(),
            max_entries: default_max_entries(),
            forget_after_days: default_forget_after_days(),
        }
    }
}

impl CatalogueSettings {
    /// The store's bounds.
    pub fn limits(&self) -> CatalogueLimits {
        CatalogueLimits {
            max_entries: self.max_entries.max(1),
            forget_after: chrono::Duration::days(i64::from(self.forget_after_days.max(1))),
        }
    }

    /// A gateway's tally, holding at most `max_entries` keys between flushes.
    pub fn observer(&self) -> Arc<Observer> {
        let keys = usize::try_from(self.max_entries.max(1)).unwrap_or(usize::MAX);
        Arc::new(Observer::new(keys))
    }
}

/// Writes `observer`'s counts to the catalogue every `flush_interval_ms` until `shutdown`.
/// The last flush is the dispatcher's, once it has stopped ([`flush`]).
pub async fn run(
    observer: Arc<Observer>,
    backends: Backends,
    settings: CatalogueSettings,
    shutdown: CancellationToken,
) -> fx_core::Result<()> {
    let period = Duration::from_millis(settings.flush_interval_ms.max(10));
    let limits = settings.limits();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = ticks.tick() => flush(&observer, &backends, &limits).await,
        }
    }
}

/// Writes what `observer` counted since the last flush; what the store refuses to take (it is
/// unavailable) is kept for the next one.
pub async fn flush(observer: &Observer, backends: &Backends, limits: &CatalogueLimits) {
    let observations = observer.take();
    if observations.is_empty() {
        return;
    }
    match backends
        .catalogue
        .record(&observations, limits, Utc::now())
        .await
    {
        Ok(recorded) => {
            tracing::debug!(
                entries = recorded.entries,
                forgotten = recorded.forgotten,
                "event catalogue recorded"
            );
            if recorded.dropped_keys > 0 {
                metrics::counter!(telemetry::CATALOGUE_DROPPED, "reason" => "catalogue_full")
                    .increment(recorded.dropped_events);
                tracing::warn!(
                    dropped_keys = recorded.dropped_keys,
                    dropped_events = recorded.dropped_events,
                    max_entries = limits.max_entries,
                    "the event catalogue is full: events of new (source, type) keys are not catalogued"
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %e.chain(), keys = observations.len(), "recording the event catalogue failed: kept for the next flush");
            observer.restore(observations);
        }
    }
}
