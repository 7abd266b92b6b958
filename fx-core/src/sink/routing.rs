//! Which port each kind of state event goes to: the state store (PostgreSQL or the embedded
//! SQLite file) or the operational sink (Elasticsearch, or its PostgreSQL and embedded
//! stand-ins). Read by the state router; set under `[backends.routing]`.
//!
//! The default is the design's: execution state (`started`, `succeeded`, `failed`) to the
//! state store; log lines and the metrics derived from finished attempts to the sink.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::execution::StateEvent;

/// A port a state event can be written to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// The state store: the execution record the API, the UI and retries read.
    StateStore,
    /// The operational sink: log lines, metrics and execution documents for dashboards.
    Sink,
}

/// Where the state router writes each kind of state event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateRouting {
    /// Where `started` events go. Must include `state_store`; adding `sink` also writes the
    /// execution's latest state to the sink (index `fx-executions-*`).
    #[serde(default = "state_store")]
    pub started: BTreeSet<Destination>,
    /// Where `succeeded` events go (as `started`).
    #[serde(default = "state_store")]
    pub succeeded: BTreeSet<Destination>,
    /// Where `failed` events go (as `started`).
    #[serde(default = "state_store")]
    pub failed: BTreeSet<Destination>,
    /// Where log lines go: `["sink"]` (default) or `[]` to discard them.
    #[serde(default = "sink")]
    pub log: BTreeSet<Destination>,
    /// Where the metric of each finished attempt (derived from `succeeded` and `failed`)
    /// goes: `["sink"]` (default, index `fx-metrics-*`) or `[]` to write none.
    #[serde(default = "sink")]
    pub metric: BTreeSet<Destination>,
}

fn state_store() -> BTreeSet<Destination> {
    BTreeSet::from([Destination::StateStore])
}

fn sink() -> BTreeSet<Destination> {
    BTreeSet::from([Destination::Sink])
}

impl Default for StateRouting {
    fn default() -> Self {
        StateRouting {
            started: state_store(),
            succeeded: state_store(),
            failed: state_store(),
            log: sink(),
            metric: sink(),
        }
    }
}

impl StateRouting {
    /// Checks that every kind goes somewhere that can hold it: execution state always reaches
    /// the state store (the API and retries read it there), and log lines and metrics only the
    /// sink (the state store has no place for them).
    pub fn validate(&self) -> Result<()> {
        for (name, set) in [
            ("started", &self.started),
            ("succeeded", &self.succeeded),
            ("failed", &self.failed),
        ] {
            if !set.contains(&Destination::StateStore) {
                return Err(Error::invalid(format!(
                    "routing.{name} must include \"state_store\": the executions API and retries read execution state there (add \"sink\" to also index it)"
                )));
            }
        }
        for (name, set) in [("log", &self.log), ("metric", &self.metric)] {
            if set.contains(&Destination::StateStore) {
                return Err(Error::invalid(format!(
                    "routing.{name} can only be [\"sink\"] or []: the state store has no place for {name} documents"
                )));
            }
        }
        Ok(())
    }

    /// Where `event` goes. For `succeeded` and `failed`, [`StateRouting::metric_to_sink`] says
    /// in addition whether its metric goes to the sink.
    pub fn destinations(&self, event: &StateEvent) -> &BTreeSet<Destination> {
        match event {
            StateEvent::Started { .. } => &self.started,
            StateEvent::Succeeded { .. } => &self.succeeded,
            StateEvent::Failed { .. } => &self.failed,
            StateEvent::Log(_) => &self.log,
        }
    }

    /// Whether `event` is written to the state store.
    pub fn to_state_store(&self, event: &StateEvent) -> bool {
        self.destinations(event).contains(&Destination::StateStore)
    }

    /// Whether `event` (a log line, or an execution's state as an execution document) is
    /// written to the sink.
    pub fn to_sink(&self, event: &StateEvent) -> bool {
        self.destinations(event).contains(&Destination::Sink)
    }

    /// Whether log lines go to the sink (otherwise they are discarded).
    pub fn logs_to_sink(&self) -> bool {
        self.log.contains(&Destination::Sink)
    }

    /// Whether the metric of a finished attempt goes to the sink.
    pub fn metric_to_sink(&self) -> bool {
        self.metric.contains(&Destination::Sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sends_state_to_the_store_and_logs_and_metrics_to_the_sink() {
        let routing: StateRouting = toml::from_str("").unwrap();
        assert_eq!(routing, StateRouting::default());
        routing.validate().unwrap();
        assert_eq!(routing.started, state_store());
        assert_eq!(routing.log, sink());
        assert!(routing.metric_to_sink());
    }

    #[test]
    fn execution_state_may_also_go_to_the_sink_but_never_skip_the_store() {
        let routing: StateRouting =
            toml::from_str(r#"succeeded = ["state_store", "sink"]"#).unwrap();
        routing.validate().unwrap();
        assert!(routing.succeeded.contains(&Destination::Sink));

        let without_store: StateRouting = toml::from_str(r#"failed = ["sink"]"#).unwrap();
        let err = without_store.validate().unwrap_err();
        assert!(err.message().contains("routing.failed"), "{}", err.chain());

        let logs_in_store: StateRouting = toml::from_str(r#"log = ["state_store"]"#).unwrap();
        assert!(logs_in_store.validate().is_err());
        let no_metrics: StateRouting = toml::from_str("metric = []").unwrap();
        no_metrics.validate().unwrap();
        assert!(!no_metrics.metric_to_sink());

        assert!(toml::from_str::<StateRouting>("logs = []").is_err());
        assert!(toml::from_str::<StateRouting>(r#"log = ["kibana"]"#).is_err());
    }
}
