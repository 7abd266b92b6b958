//! Readiness: whether the ports a process uses answer a cheap call.
//!
//! Each port answers for itself ([`EventBus::ready`](crate::bus::EventBus::ready),
//! [`HandlerRegistry::ready`](crate::registry::HandlerRegistry::ready), and so on); a
//! [`Readiness`] runs the checks of the ports one part of the platform uses, concurrently, each
//! bounded by [`CHECK_TIMEOUT`], and reports each outcome. A *soft* check that fails leaves the
//! process ready and reports `degraded: <reason>` (the gateway's sink: its log lines wait in the
//! bus while the sink is down, so a sink outage must not stop event ingestion).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backends::Backends;

/// How long one readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The start of a failed soft check's outcome.
const DEGRADED: &str = "degraded: ";

/// A port of the platform, as readiness names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    /// The event bus.
    Bus,
    /// The handler registry.
    Registry,
    /// The package store.
    Packages,
    /// The state store.
    State,
    /// The operational sink.
    Sink,
}

impl Port {
    /// Its name in a [`ReadyReport`].
    pub fn name(self) -> &'static str {
        match self {
            Port::Bus => "bus",
            Port::Registry => "registry",
            Port::Packages => "packages",
            Port::State => "state",
            Port::Sink => "sink",
        }
    }
}

/// The readiness checks of one process: which ports it needs, over which backends.
#[derive(Clone)]
pub struct Readiness {
    backends: Backends,
    ports: BTreeSet<Port>,
    soft: BTreeSet<Port>,
}

/// What `/readyz` answers: whether every check passed, and each check's outcome (`ok` or the
/// reason, which names the backend and never carries a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyReport {
    /// Every check passed (soft ones may be degraded).
    pub ready: bool,
    /// Outcome per port.
    pub checks: BTreeMap<String, String>,
}

impl ReadyReport {
    /// Not ready, for `reason` (e.g. still connecting to the backends).
    pub fn not_yet(what: &str, reason: &str) -> ReadyReport {
        ReadyReport {
            ready: false,
            checks: BTreeMap::from([(what.to_string(), reason.to_string())]),
        }
    }
}

impl Readiness {
    /// Checks `ports` of `backends`; the ones in `soft` only degrade the process.
    pub fn new(backends: &Backends, ports: &[Port], soft: &[Port]) -> Readiness {
        Readiness {
            backends: backends.clone(),
            ports: ports.iter().copied().collect(),
            soft: soft.iter().copied().collect(),
        }
    }

    /// The backends it checks.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Runs every check concurrently, each bounded by [`CHECK_TIMEOUT`].
    pub async fn report(&self) -> ReadyReport {
        let mut tasks = tokio::task::JoinSet::new();
        for &port in &self.ports {
            let backends = self.backends.clone();
            let soft = self.soft.contains(&port);
            tasks.spawn(async move {
                let check = async {
                    match port {
                        Port::Bus => backends.bus.ready().await,
                        Port::Registry => backends.registry.ready().await,
                        Port::Packages => backends.packages.ready().await,
                        Port::State => backends.state.ready().await,
                        Port::Sink => backends.sink.ready().await,
                    }
                };
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                    Ok(Ok(())) => "ok".to_string(),
                    Ok(Err(e)) => e.chain(),
                    Err(_) => format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
                };
                let outcome = if soft && outcome != "ok" {
                    format!("{DEGRADED}{outcome}")
                } else {
                    outcome
                };
                (port.name(), outcome)
            });
        }
        let mut checks = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, outcome)) => {
                    checks.insert(name.to_string(), outcome);
                }
                Err(e) => {
                    checks.insert("internal".into(), format!("a readiness check failed: {e}"));
                }
            }
        }
        ReadyReport {
            ready: checks
                .values()
                .all(|outcome| outcome == "ok" || outcome.starts_with(DEGRADED)),
            checks,
        }
    }
}
